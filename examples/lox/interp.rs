//! A Lox interpreter in the manner of the book's C VM (clox): a scanner, a single-pass Pratt
//! compiler to bytecode, and a stack VM. Every Lox value lives in the lowpause heap:
//! - values are `Value<Obj>` words (NaN-boxed numbers, nil, booleans, object references);
//! - strings are interned through a `WeakTable`, each one's hash computed once and kept in its
//!   table entry, so an unused string is collected and `==` on strings is identity, as in clox;
//! - the value stack is a `LocalStack` (the thread's own unbarriered roots), and the call frames
//!   are plain Rust data (an instruction pointer and a stack base each) beside a second local
//!   stack holding each frame's closure;
//! - globals, fields and methods are `GcTable`s keyed by interned strings (identity);
//! - a script runs in one `Session`: each batch of instructions is an inner scope, whose entry is
//!   a safepoint, so a cycle never waits longer than one batch and no batch pays a scope entry.
//!
//! Shared by `examples/lox/main.rs` and `tests/lox_suite.rs` (which runs the book's test suite in
//! process, in a normal and a stress mode).

#![allow(dead_code)]

use lowpause::{
    Gc, GcTable, GcVec, Heap, LocalStack, Member, Root, Scope, StackView, Trace, Value, ValueRef, WeakTable,
};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

const FRAMES_MAX: usize = 64;
const STACK_MAX: usize = FRAMES_MAX * 256;
/// Backward jumps and calls per inner scope in normal runs (a few thousand instructions: a loop
/// body or a call is rarely shorter than a few).
pub const BATCH: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Heap objects
// ---------------------------------------------------------------------------------------------

type V<'s> = ValueRef<'s, Obj>;

/// Every Lox object.
#[derive(Trace)]
pub enum Obj {
    Str(LoxStr),
    Function(Function),
    Native(Native),
    Closure(Closure),
    Upvalue(Upvalue),
    Class(Class),
    Instance(Instance),
    Bound(BoundMethod),
}

// No Lox object has drop glue: dead ones are freed by the sweep's bitmaps alone.
const _: () = assert!(!std::mem::needs_drop::<Obj>());
const _: () = assert!(std::mem::size_of::<Obj>() <= 48);

/// A string: its bytes in a GC array of their own (so no Lox object has drop glue, and the
/// sweep frees dead ones by their mark bits alone). Its hash is kept once, in its entry of the
/// interning table.
#[derive(Trace)]
pub struct LoxStr {
    bytes: Member<[u8]>,
}

#[derive(Trace)]
pub struct Function {
    name: Member<Obj>,
    /// The constants while the function is compiled (a separate object, dropped when the
    /// compilation ends: it keeps every Lox object small), and as an array once it is.
    building: Member<Constants>,
    consts: Member<[Value<Obj>]>,
    /// The bytecode, set when the compilation ends.
    code: Member<[u8]>,
    /// Arity, upvalue count, then the source line of every instruction.
    info: Member<[u32]>,
}

/// A function's constants while it is compiled.
#[derive(Trace)]
pub struct Constants {
    list: GcVec<Value<Obj>>,
}

#[derive(Trace)]
#[trace(leaf)]
pub struct Native {
    name: &'static str,
}

#[derive(Trace)]
pub struct Closure {
    function: Member<Obj>,
    upvalues: Member<[Member<Obj>]>,
}

/// An upvalue: open (pointing at a stack slot) until its variable leaves the stack.
#[derive(Trace)]
pub struct Upvalue {
    /// The stack slot while open; `CLOSED` after.
    slot: AtomicUsize,
    closed: Value<Obj>,
    next: Member<Obj>,
}
const CLOSED: usize = usize::MAX;

#[derive(Trace)]
pub struct Class {
    name: Member<Obj>,
    methods: Table,
}

#[derive(Trace)]
pub struct Instance {
    class: Member<Obj>,
    fields: Table,
}

#[derive(Trace)]
pub struct BoundMethod {
    receiver: Value<Obj>,
    method: Member<Obj>,
}

/// A table keyed by interned strings (by identity: interning makes equal strings one object).
type Table = GcTable<Obj, Value<Obj>>;

/// Copies every entry of `from` into `to` (inheritance).
fn add_all<'s>(s: &Scope<'s>, from: &Table, to: &Table) {
    from.for_each(s, |k, v| {
        to.insert(s, k, v);
    });
}

/// Accessors for the variant an instruction knows an object to be.
macro_rules! accessors {
    ($($name:ident: $variant:ident => $t:ty, $what:literal;)*) => {$(
        fn $name(o: &Obj) -> &$t {
            match o {
                Obj::$variant(x) => x,
                _ => unreachable!(concat!("not ", $what)),
            }
        }
    )*};
}
accessors! {
    as_fn: Function => Function, "a function";
    as_closure: Closure => Closure, "a closure";
    as_class: Class => Class, "a class";
    as_upvalue: Upvalue => Upvalue, "an upvalue";
}

fn as_bytes<'s>(s: &Scope<'s>, o: &Obj) -> &'s [u8] {
    match o {
        Obj::Str(x) => Gc::as_scoped(x.bytes.get(s).unwrap()),
        _ => unreachable!("not a string"),
    }
}

/// A string's text (its bytes are UTF-8: source text and concatenations of it).
fn as_str<'s>(s: &Scope<'s>, o: &Obj) -> &'s str {
    std::str::from_utf8(as_bytes(s, o)).unwrap_or("<invalid UTF-8>")
}

/// A function's arity, upvalue count and instruction lines.
fn fn_info<'s>(s: &Scope<'s>, f: &Function) -> &'s [u32] {
    Gc::as_scoped(f.info.get(s).unwrap())
}

fn hash_str(text: &[u8]) -> u32 {
    hash_continue(2166136261, text)
}

/// FNV-1a over `text`, continuing from `h`.
fn hash_continue(mut h: u32, text: &[u8]) -> u32 {
    for &b in text {
        h ^= b as u32;
        h = h.wrapping_mul(16777619);
    }
    h
}

/// `printf("%g")`, as clox prints numbers.
pub fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "nan".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{:.5e}", n);
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..6).contains(&exp) {
        format!("{}e{}{:02}", trim(mant), if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        trim(&format!("{:.*}", (5 - exp) as usize, n))
    }
}

fn fmt_value(s: &Scope<'_>, v: V<'_>, out: &mut String) {
    match v {
        ValueRef::Nil => out.push_str("nil"),
        ValueRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        ValueRef::Number(n) => out.push_str(&format_number(n)),
        ValueRef::Object(o) => fmt_obj(s, o, out),
    }
}

fn fmt_obj(s: &Scope<'_>, o: Gc<'_, Obj>, out: &mut String) {
    let fn_name = |f: &Function, out: &mut String| match f.name.get(s) {
        Some(n) => {
            let _ = write!(out, "<fn {}>", as_str(s, &n));
        }
        None => out.push_str("<script>"),
    };
    match &*o {
        Obj::Str(_) => out.push_str(as_str(s, &o)),
        Obj::Function(f) => fn_name(f, out),
        Obj::Native(_) => out.push_str("<native fn>"),
        Obj::Closure(c) => fn_name(as_fn(&c.function.get(s).unwrap()), out),
        Obj::Upvalue(_) => out.push_str("upvalue"),
        Obj::Class(c) => out.push_str(as_str(s, &c.name.get(s).unwrap())),
        Obj::Instance(i) => {
            let _ = write!(out, "{} instance", as_str(s, &as_class(&i.class.get(s).unwrap()).name.get(s).unwrap()));
        }
        Obj::Bound(b) => {
            let m = b.method.get(s).unwrap();
            fn_name(as_fn(&as_closure(&m).function.get(s).unwrap()), out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The VM's state in the heap
// ---------------------------------------------------------------------------------------------

#[derive(Trace)]
struct VmState {
    globals: Table,
    strings: Member<WeakTable<Obj, Obj>>,
    open_upvalues: Member<Obj>,
    init_string: Member<Obj>,
}

fn intern<'s>(s: &Scope<'s>, st: &VmState, text: &str) -> Gc<'s, Obj> {
    intern_concat(s, st, text.as_bytes(), &[])
}

/// Interns the concatenation of `x` and `y`, without building it first: hashed and compared in
/// two parts, copied once into the new string's array.
fn intern_concat<'s>(s: &Scope<'s>, st: &VmState, x: &[u8], y: &[u8]) -> Gc<'s, Obj> {
    let h = hash_continue(hash_str(x), y);
    let table = st.strings.get(s).unwrap();
    let len = x.len() + y.len();
    let found = table.find(s, h as u64, |k| {
        let b = as_bytes(s, &k);
        b.len() == len && b.starts_with(x) && b.ends_with(y)
    });
    if let Some((k, _)) = found {
        return k;
    }
    let bytes = s.alloc_slice(len, |i| if i < x.len() { x[i] } else { y[i - x.len()] });
    let k = s.alloc(Obj::Str(LoxStr { bytes: Member::null() }));
    if let Obj::Str(x) = &*k {
        x.bytes.set(s, Some(bytes));
    }
    table.insert_hashed(s, h as u64, k, ValueRef::Nil);
    k
}

// ---------------------------------------------------------------------------------------------
// Scanner
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum T {
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    Comma,
    Dot,
    Minus,
    Plus,
    Semicolon,
    Slash,
    Star,
    Bang,
    BangEqual,
    Equal,
    EqualEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Identifier,
    String,
    Number,
    And,
    Class,
    Else,
    False,
    For,
    Fun,
    If,
    Nil,
    Or,
    Print,
    Return,
    Super,
    This,
    True,
    Var,
    While,
    Error,
    Eof,
}

#[derive(Clone, Copy)]
struct Token<'src> {
    kind: T,
    text: &'src str,
    line: u32,
}

struct Scanner<'src> {
    src: &'src str,
    start: usize,
    current: usize,
    line: u32,
}

impl<'src> Scanner<'src> {
    fn new(src: &'src str) -> Self {
        Scanner { src, start: 0, current: 0, line: 1 }
    }
    fn peek(&self) -> u8 {
        *self.src.as_bytes().get(self.current).unwrap_or(&0)
    }
    fn peek_next(&self) -> u8 {
        *self.src.as_bytes().get(self.current + 1).unwrap_or(&0)
    }
    fn advance(&mut self) -> u8 {
        let c = self.peek();
        self.current += 1;
        c
    }
    fn matches(&mut self, c: u8) -> bool {
        if self.current < self.src.len() && self.peek() == c {
            self.current += 1;
            true
        } else {
            false
        }
    }
    fn make(&self, kind: T) -> Token<'src> {
        Token { kind, text: &self.src[self.start..self.current], line: self.line }
    }
    fn error(&self, msg: &'static str) -> Token<'src> {
        Token { kind: T::Error, text: msg, line: self.line }
    }
    fn skip_space(&mut self) {
        loop {
            match self.peek() {
                b' ' | b'\r' | b'\t' => {
                    self.current += 1;
                }
                b'\n' => {
                    self.line += 1;
                    self.current += 1;
                }
                b'/' if self.peek_next() == b'/' => {
                    while self.peek() != b'\n' && self.current < self.src.len() {
                        self.current += 1;
                    }
                }
                _ => return,
            }
        }
    }
    fn scan(&mut self) -> Token<'src> {
        self.skip_space();
        self.start = self.current;
        if self.current >= self.src.len() {
            return self.make(T::Eof);
        }
        let c = self.advance();
        if c.is_ascii_alphabetic() || c == b'_' {
            while self.peek().is_ascii_alphanumeric() || self.peek() == b'_' {
                self.current += 1;
            }
            return self.make(keyword(&self.src[self.start..self.current]));
        }
        if c.is_ascii_digit() {
            while self.peek().is_ascii_digit() {
                self.current += 1;
            }
            if self.peek() == b'.' && self.peek_next().is_ascii_digit() {
                self.current += 1;
                while self.peek().is_ascii_digit() {
                    self.current += 1;
                }
            }
            return self.make(T::Number);
        }
        match c {
            b'(' => self.make(T::LeftParen),
            b')' => self.make(T::RightParen),
            b'{' => self.make(T::LeftBrace),
            b'}' => self.make(T::RightBrace),
            b';' => self.make(T::Semicolon),
            b',' => self.make(T::Comma),
            b'.' => self.make(T::Dot),
            b'-' => self.make(T::Minus),
            b'+' => self.make(T::Plus),
            b'/' => self.make(T::Slash),
            b'*' => self.make(T::Star),
            b'!' => {
                let k = if self.matches(b'=') { T::BangEqual } else { T::Bang };
                self.make(k)
            }
            b'=' => {
                let k = if self.matches(b'=') { T::EqualEqual } else { T::Equal };
                self.make(k)
            }
            b'<' => {
                let k = if self.matches(b'=') { T::LessEqual } else { T::Less };
                self.make(k)
            }
            b'>' => {
                let k = if self.matches(b'=') { T::GreaterEqual } else { T::Greater };
                self.make(k)
            }
            b'"' => {
                while self.peek() != b'"' && self.current < self.src.len() {
                    if self.peek() == b'\n' {
                        self.line += 1;
                    }
                    self.current += 1;
                }
                if self.current >= self.src.len() {
                    return self.error("Unterminated string.");
                }
                self.current += 1;
                self.make(T::String)
            }
            _ => {
                // Keep the scanner on a character boundary for non-ASCII input.
                while !self.src.is_char_boundary(self.current) {
                    self.current += 1;
                }
                self.error("Unexpected character.")
            }
        }
    }
}

fn keyword(w: &str) -> T {
    match w {
        "and" => T::And,
        "class" => T::Class,
        "else" => T::Else,
        "false" => T::False,
        "for" => T::For,
        "fun" => T::Fun,
        "if" => T::If,
        "nil" => T::Nil,
        "or" => T::Or,
        "print" => T::Print,
        "return" => T::Return,
        "super" => T::Super,
        "this" => T::This,
        "true" => T::True,
        "var" => T::Var,
        "while" => T::While,
        _ => T::Identifier,
    }
}

// ---------------------------------------------------------------------------------------------
// Compiler
// ---------------------------------------------------------------------------------------------

mod op {
    pub const CONSTANT: u8 = 0;
    pub const NIL: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const FALSE: u8 = 3;
    pub const POP: u8 = 4;
    pub const GET_LOCAL: u8 = 5;
    pub const SET_LOCAL: u8 = 6;
    pub const GET_GLOBAL: u8 = 7;
    pub const DEFINE_GLOBAL: u8 = 8;
    pub const SET_GLOBAL: u8 = 9;
    pub const GET_UPVALUE: u8 = 10;
    pub const SET_UPVALUE: u8 = 11;
    pub const GET_PROPERTY: u8 = 12;
    pub const SET_PROPERTY: u8 = 13;
    pub const GET_SUPER: u8 = 14;
    pub const EQUAL: u8 = 15;
    pub const GREATER: u8 = 16;
    pub const LESS: u8 = 17;
    pub const ADD: u8 = 18;
    pub const SUBTRACT: u8 = 19;
    pub const MULTIPLY: u8 = 20;
    pub const DIVIDE: u8 = 21;
    pub const NOT: u8 = 22;
    pub const NEGATE: u8 = 23;
    pub const PRINT: u8 = 24;
    pub const JUMP: u8 = 25;
    pub const JUMP_IF_FALSE: u8 = 26;
    pub const LOOP: u8 = 27;
    pub const CALL: u8 = 28;
    pub const INVOKE: u8 = 29;
    pub const SUPER_INVOKE: u8 = 30;
    pub const CLOSURE: u8 = 31;
    pub const CLOSE_UPVALUE: u8 = 32;
    pub const RETURN: u8 = 33;
    pub const CLASS: u8 = 34;
    pub const INHERIT: u8 = 35;
    pub const METHOD: u8 = 36;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FnKind {
    Function,
    Initializer,
    Method,
    Script,
}

struct Local<'src> {
    name: &'src str,
    depth: i32,
    captured: bool,
}

struct FnState<'src, 's> {
    function: Gc<'s, Obj>,
    kind: FnKind,
    arity: usize,
    code: Vec<u8>,
    lines: Vec<u32>,
    locals: Vec<Local<'src>>,
    upvalues: Vec<(u8, bool)>,
    depth: i32,
}

struct ClassState {
    has_super: bool,
}

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Prec {
    None,
    Assignment,
    Or,
    And,
    Equality,
    Comparison,
    Term,
    Factor,
    Unary,
    Call,
    Primary,
}

impl Prec {
    fn next(self) -> Prec {
        match self {
            Prec::None => Prec::Assignment,
            Prec::Assignment => Prec::Or,
            Prec::Or => Prec::And,
            Prec::And => Prec::Equality,
            Prec::Equality => Prec::Comparison,
            Prec::Comparison => Prec::Term,
            Prec::Term => Prec::Factor,
            Prec::Factor => Prec::Unary,
            Prec::Unary => Prec::Call,
            Prec::Call | Prec::Primary => Prec::Primary,
        }
    }
}

fn infix_prec(t: T) -> Prec {
    match t {
        T::LeftParen | T::Dot => Prec::Call,
        T::Minus | T::Plus => Prec::Term,
        T::Slash | T::Star => Prec::Factor,
        T::BangEqual | T::EqualEqual => Prec::Equality,
        T::Greater | T::GreaterEqual | T::Less | T::LessEqual => Prec::Comparison,
        T::And => Prec::And,
        T::Or => Prec::Or,
        _ => Prec::None,
    }
}

struct Compiler<'src, 's, 'a> {
    s: &'a Scope<'s>,
    st: &'a VmState,
    scanner: Scanner<'src>,
    current: Token<'src>,
    previous: Token<'src>,
    had_error: bool,
    panic_mode: bool,
    errors: String,
    fns: Vec<FnState<'src, 's>>,
    classes: Vec<ClassState>,
}

impl<'src, 's, 'a> Compiler<'src, 's, 'a> {
    fn error_at(&mut self, tok: Token<'src>, msg: &str) {
        if self.panic_mode {
            return;
        }
        self.panic_mode = true;
        self.had_error = true;
        let _ = write!(self.errors, "[line {}] Error", tok.line);
        match tok.kind {
            T::Eof => self.errors.push_str(" at end"),
            T::Error => {}
            _ => {
                let _ = write!(self.errors, " at '{}'", tok.text);
            }
        }
        let _ = writeln!(self.errors, ": {msg}");
    }
    fn error(&mut self, msg: &str) {
        self.error_at(self.previous, msg);
    }
    fn error_current(&mut self, msg: &str) {
        self.error_at(self.current, msg);
    }
    fn advance(&mut self) {
        self.previous = self.current;
        loop {
            self.current = self.scanner.scan();
            if self.current.kind != T::Error {
                break;
            }
            let msg = self.current.text;
            self.error_current(msg);
        }
    }
    fn consume(&mut self, kind: T, msg: &str) {
        if self.current.kind == kind {
            self.advance();
        } else {
            self.error_current(msg);
        }
    }
    fn check(&self, kind: T) -> bool {
        self.current.kind == kind
    }
    fn matches(&mut self, kind: T) -> bool {
        if !self.check(kind) {
            return false;
        }
        self.advance();
        true
    }

    fn f(&mut self) -> &mut FnState<'src, 's> {
        self.fns.last_mut().unwrap()
    }
    fn emit(&mut self, b: u8) {
        let line = self.previous.line;
        let f = self.f();
        f.code.push(b);
        f.lines.push(line);
    }
    fn emit2(&mut self, a: u8, b: u8) {
        self.emit(a);
        self.emit(b);
    }
    fn emit_loop(&mut self, start: usize) {
        self.emit(op::LOOP);
        let off = self.f().code.len() - start + 2;
        if off > u16::MAX as usize {
            self.error("Loop body too large.");
        }
        self.emit2((off >> 8) as u8, off as u8);
    }
    fn emit_jump(&mut self, instr: u8) -> usize {
        self.emit(instr);
        self.emit2(0xff, 0xff);
        self.f().code.len() - 2
    }
    fn patch_jump(&mut self, at: usize) {
        let jump = self.f().code.len() - at - 2;
        if jump > u16::MAX as usize {
            self.error("Too much code to jump over.");
        }
        let code = &mut self.f().code;
        code[at] = (jump >> 8) as u8;
        code[at + 1] = jump as u8;
    }
    fn emit_return(&mut self) {
        if self.f().kind == FnKind::Initializer {
            self.emit2(op::GET_LOCAL, 0);
        } else {
            self.emit(op::NIL);
        }
        self.emit(op::RETURN);
    }
    fn make_constant(&mut self, v: V<'s>) -> u8 {
        let building = as_fn(Gc::as_scoped(self.f().function)).building.get(self.s).unwrap();
        let consts = &Gc::as_scoped(building).list;
        if consts.len() >= 256 {
            self.error("Too many constants in one chunk.");
            return 0;
        }
        consts.push(self.s, v);
        (consts.len() - 1) as u8
    }
    fn emit_constant(&mut self, v: V<'s>) {
        let c = self.make_constant(v);
        self.emit2(op::CONSTANT, c);
    }
    fn identifier_constant(&mut self, name: &str) -> u8 {
        let str = intern(self.s, self.st, name);
        self.make_constant(ValueRef::Object(str))
    }

    fn begin_fn(&mut self, kind: FnKind) {
        let s = self.s;
        let function = s.alloc(Obj::Function(Function {
            name: Member::null(),
            building: Member::null(),
            consts: Member::null(),
            code: Member::null(),
            info: Member::null(),
        }));
        as_fn(&function).building.set(s, Some(s.alloc(Constants { list: GcVec::new() })));
        if kind != FnKind::Script {
            let name = intern(s, self.st, self.previous.text);
            as_fn(&function).name.set(s, Some(name));
        }
        let slot0 = if kind != FnKind::Function { "this" } else { "" };
        self.fns.push(FnState {
            function,
            kind,
            arity: 0,
            code: Vec::new(),
            lines: Vec::new(),
            locals: vec![Local { name: slot0, depth: 0, captured: false }],
            upvalues: Vec::new(),
            depth: 0,
        });
    }
    fn end_fn(&mut self) -> (Gc<'s, Obj>, Vec<(u8, bool)>) {
        self.emit_return();
        let f = self.fns.pop().unwrap();
        let fun = as_fn(Gc::as_scoped(f.function));
        let building = Gc::as_scoped(fun.building.get(self.s).unwrap());
        let n = building.list.len();
        let consts = self.s.alloc_slice(n, |_| Value::nil());
        for (i, c) in consts.iter().enumerate() {
            c.set(self.s, building.list.get(self.s, i).unwrap());
        }
        fun.consts.set(self.s, Some(consts));
        fun.building.set(self.s, None);
        let info =
            [f.arity as u32, f.upvalues.len() as u32].into_iter().chain(f.lines.iter().copied()).collect::<Vec<_>>();
        fun.info.set(self.s, Some(self.s.alloc_slice(info.len(), |i| info[i])));
        fun.code.set(self.s, Some(self.s.alloc_slice(f.code.len(), |i| f.code[i])));
        (f.function, f.upvalues)
    }

    fn begin_scope(&mut self) {
        self.f().depth += 1;
    }
    fn end_scope(&mut self) {
        self.f().depth -= 1;
        loop {
            let f = self.f();
            match f.locals.last() {
                Some(l) if l.depth > f.depth => {
                    let captured = l.captured;
                    f.locals.pop();
                    self.emit(if captured { op::CLOSE_UPVALUE } else { op::POP });
                }
                _ => break,
            }
        }
    }

    fn resolve_local(&mut self, fi: usize, name: &str) -> Option<u8> {
        let f = &self.fns[fi];
        for (i, l) in f.locals.iter().enumerate().rev() {
            if l.name == name {
                if l.depth == -1 {
                    self.error("Can't read local variable in its own initializer.");
                }
                return Some(i as u8);
            }
        }
        None
    }
    fn add_upvalue(&mut self, fi: usize, index: u8, local: bool) -> u8 {
        if let Some(i) = self.fns[fi].upvalues.iter().position(|&u| u == (index, local)) {
            return i as u8;
        }
        if self.fns[fi].upvalues.len() == 256 {
            self.error("Too many closure variables in function.");
            return 0;
        }
        self.fns[fi].upvalues.push((index, local));
        (self.fns[fi].upvalues.len() - 1) as u8
    }
    fn resolve_upvalue(&mut self, fi: usize, name: &str) -> Option<u8> {
        if fi == 0 {
            return None;
        }
        if let Some(local) = self.resolve_local(fi - 1, name) {
            self.fns[fi - 1].locals[local as usize].captured = true;
            return Some(self.add_upvalue(fi, local, true));
        }
        let up = self.resolve_upvalue(fi - 1, name)?;
        Some(self.add_upvalue(fi, up, false))
    }
    fn add_local(&mut self, name: &'src str) {
        if self.f().locals.len() == 256 {
            self.error("Too many local variables in function.");
            return;
        }
        self.f().locals.push(Local { name, depth: -1, captured: false });
    }
    fn declare_variable(&mut self) {
        if self.f().depth == 0 {
            return;
        }
        let name = self.previous.text;
        let depth = self.f().depth;
        let dup =
            self.f().locals.iter().rev().take_while(|l| l.depth == -1 || l.depth >= depth).any(|l| l.name == name);
        if dup {
            self.error("Already a variable with this name in this scope.");
        }
        self.add_local(name);
    }
    fn parse_variable(&mut self, msg: &str) -> u8 {
        self.consume(T::Identifier, msg);
        self.declare_variable();
        if self.f().depth > 0 {
            return 0;
        }
        let name = self.previous.text;
        self.identifier_constant(name)
    }
    fn mark_initialized(&mut self) {
        let f = self.f();
        if f.depth == 0 {
            return;
        }
        let d = f.depth;
        f.locals.last_mut().unwrap().depth = d;
    }
    fn define_variable(&mut self, global: u8) {
        if self.f().depth > 0 {
            self.mark_initialized();
            return;
        }
        self.emit2(op::DEFINE_GLOBAL, global);
    }

    // Expressions.
    fn expression(&mut self) {
        self.parse_precedence(Prec::Assignment);
    }
    fn parse_precedence(&mut self, prec: Prec) {
        self.advance();
        let can_assign = prec <= Prec::Assignment;
        if !self.prefix(self.previous.kind, can_assign) {
            self.error("Expect expression.");
            return;
        }
        while prec <= infix_prec(self.current.kind) {
            self.advance();
            self.infix(self.previous.kind, can_assign);
        }
        if can_assign && self.matches(T::Equal) {
            self.error("Invalid assignment target.");
        }
    }
    fn prefix(&mut self, kind: T, can_assign: bool) -> bool {
        match kind {
            T::LeftParen => {
                self.expression();
                self.consume(T::RightParen, "Expect ')' after expression.");
            }
            T::Minus | T::Bang => {
                self.parse_precedence(Prec::Unary);
                self.emit(if kind == T::Minus { op::NEGATE } else { op::NOT });
            }
            T::Number => {
                let n: f64 = self.previous.text.parse().unwrap();
                self.emit_constant(ValueRef::Number(n));
            }
            T::String => {
                let t = self.previous.text;
                let str = intern(self.s, self.st, &t[1..t.len() - 1]);
                self.emit_constant(ValueRef::Object(str));
            }
            T::Nil => self.emit(op::NIL),
            T::True => self.emit(op::TRUE),
            T::False => self.emit(op::FALSE),
            T::Identifier => self.named_variable(self.previous.text, can_assign),
            T::This => {
                if self.classes.is_empty() {
                    self.error("Can't use 'this' outside of a class.");
                    return true;
                }
                self.named_variable("this", false);
            }
            T::Super => self.super_(),
            _ => return false,
        }
        true
    }
    fn infix(&mut self, kind: T, can_assign: bool) {
        match kind {
            T::LeftParen => {
                let argc = self.arguments();
                self.emit2(op::CALL, argc);
            }
            T::Dot => {
                self.consume(T::Identifier, "Expect property name after '.'.");
                let name = self.previous.text;
                let c = self.identifier_constant(name);
                if can_assign && self.matches(T::Equal) {
                    self.expression();
                    self.emit2(op::SET_PROPERTY, c);
                } else if self.matches(T::LeftParen) {
                    let argc = self.arguments();
                    self.emit2(op::INVOKE, c);
                    self.emit(argc);
                } else {
                    self.emit2(op::GET_PROPERTY, c);
                }
            }
            T::And => {
                let end = self.emit_jump(op::JUMP_IF_FALSE);
                self.emit(op::POP);
                self.parse_precedence(Prec::And);
                self.patch_jump(end);
            }
            T::Or => {
                let else_jump = self.emit_jump(op::JUMP_IF_FALSE);
                let end = self.emit_jump(op::JUMP);
                self.patch_jump(else_jump);
                self.emit(op::POP);
                self.parse_precedence(Prec::Or);
                self.patch_jump(end);
            }
            _ => {
                self.parse_precedence(infix_prec(kind).next());
                match kind {
                    T::BangEqual => self.emit2(op::EQUAL, op::NOT),
                    T::EqualEqual => self.emit(op::EQUAL),
                    T::Greater => self.emit(op::GREATER),
                    T::GreaterEqual => self.emit2(op::LESS, op::NOT),
                    T::Less => self.emit(op::LESS),
                    T::LessEqual => self.emit2(op::GREATER, op::NOT),
                    T::Plus => self.emit(op::ADD),
                    T::Minus => self.emit(op::SUBTRACT),
                    T::Star => self.emit(op::MULTIPLY),
                    T::Slash => self.emit(op::DIVIDE),
                    _ => unreachable!(),
                }
            }
        }
    }
    fn arguments(&mut self) -> u8 {
        let mut argc = 0usize;
        if !self.check(T::RightParen) {
            loop {
                self.expression();
                if argc == 255 {
                    self.error("Can't have more than 255 arguments.");
                }
                argc += 1;
                if !self.matches(T::Comma) {
                    break;
                }
            }
        }
        self.consume(T::RightParen, "Expect ')' after arguments.");
        argc.min(255) as u8
    }
    fn named_variable(&mut self, name: &str, can_assign: bool) {
        let top = self.fns.len() - 1;
        let (get, set, arg) = if let Some(i) = self.resolve_local(top, name) {
            (op::GET_LOCAL, op::SET_LOCAL, i)
        } else if let Some(i) = self.resolve_upvalue(top, name) {
            (op::GET_UPVALUE, op::SET_UPVALUE, i)
        } else {
            let c = self.identifier_constant(name);
            (op::GET_GLOBAL, op::SET_GLOBAL, c)
        };
        if can_assign && self.matches(T::Equal) {
            self.expression();
            self.emit2(set, arg);
        } else {
            self.emit2(get, arg);
        }
    }
    fn super_(&mut self) {
        match self.classes.last() {
            None => self.error("Can't use 'super' outside of a class."),
            Some(c) if !c.has_super => self.error("Can't use 'super' in a class with no superclass."),
            _ => {}
        }
        self.consume(T::Dot, "Expect '.' after 'super'.");
        self.consume(T::Identifier, "Expect superclass method name.");
        let name = self.previous.text;
        let c = self.identifier_constant(name);
        self.named_variable("this", false);
        if self.matches(T::LeftParen) {
            let argc = self.arguments();
            self.named_variable("super", false);
            self.emit2(op::SUPER_INVOKE, c);
            self.emit(argc);
        } else {
            self.named_variable("super", false);
            self.emit2(op::GET_SUPER, c);
        }
    }

    // Statements.
    fn declaration(&mut self) {
        if self.matches(T::Class) {
            self.class_declaration();
        } else if self.matches(T::Fun) {
            let global = self.parse_variable("Expect function name.");
            self.mark_initialized();
            self.function(FnKind::Function);
            self.define_variable(global);
        } else if self.matches(T::Var) {
            self.var_declaration();
        } else {
            self.statement();
        }
        if self.panic_mode {
            self.synchronize();
        }
    }
    fn synchronize(&mut self) {
        self.panic_mode = false;
        while self.current.kind != T::Eof {
            if self.previous.kind == T::Semicolon {
                return;
            }
            match self.current.kind {
                T::Class | T::Fun | T::Var | T::For | T::If | T::While | T::Print | T::Return => return,
                _ => self.advance(),
            }
        }
    }
    fn function(&mut self, kind: FnKind) {
        self.begin_fn(kind);
        self.begin_scope();
        self.consume(T::LeftParen, "Expect '(' after function name.");
        if !self.check(T::RightParen) {
            loop {
                self.f().arity += 1;
                if self.f().arity > 255 {
                    self.error_current("Can't have more than 255 parameters.");
                }
                let c = self.parse_variable("Expect parameter name.");
                self.define_variable(c);
                if !self.matches(T::Comma) {
                    break;
                }
            }
        }
        self.consume(T::RightParen, "Expect ')' after parameters.");
        self.consume(T::LeftBrace, "Expect '{' before function body.");
        self.block();
        let (function, upvalues) = self.end_fn();
        let c = self.make_constant(ValueRef::Object(function));
        self.emit2(op::CLOSURE, c);
        for (index, local) in upvalues {
            self.emit2(local as u8, index);
        }
    }
    fn class_declaration(&mut self) {
        self.consume(T::Identifier, "Expect class name.");
        let class_name = self.previous;
        let name = self.identifier_constant(class_name.text);
        self.declare_variable();
        self.emit2(op::CLASS, name);
        self.define_variable(name);
        self.classes.push(ClassState { has_super: false });
        if self.matches(T::Less) {
            self.consume(T::Identifier, "Expect superclass name.");
            self.named_variable(self.previous.text, false);
            if class_name.text == self.previous.text {
                self.error("A class can't inherit from itself.");
            }
            self.begin_scope();
            self.add_local("super");
            self.define_variable(0);
            self.named_variable(class_name.text, false);
            self.emit(op::INHERIT);
            self.classes.last_mut().unwrap().has_super = true;
        }
        self.named_variable(class_name.text, false);
        self.consume(T::LeftBrace, "Expect '{' before class body.");
        while !self.check(T::RightBrace) && !self.check(T::Eof) {
            self.consume(T::Identifier, "Expect method name.");
            let name = self.previous.text;
            let c = self.identifier_constant(name);
            let kind = if name == "init" { FnKind::Initializer } else { FnKind::Method };
            self.function(kind);
            self.emit2(op::METHOD, c);
        }
        self.consume(T::RightBrace, "Expect '}' after class body.");
        self.emit(op::POP);
        if self.classes.pop().unwrap().has_super {
            self.end_scope();
        }
    }
    fn block(&mut self) {
        while !self.check(T::RightBrace) && !self.check(T::Eof) {
            self.declaration();
        }
        self.consume(T::RightBrace, "Expect '}' after block.");
    }
    fn statement(&mut self) {
        if self.matches(T::Print) {
            self.expression();
            self.consume(T::Semicolon, "Expect ';' after value.");
            self.emit(op::PRINT);
        } else if self.matches(T::For) {
            self.for_statement();
        } else if self.matches(T::If) {
            self.consume(T::LeftParen, "Expect '(' after 'if'.");
            self.expression();
            self.consume(T::RightParen, "Expect ')' after condition.");
            let then_jump = self.emit_jump(op::JUMP_IF_FALSE);
            self.emit(op::POP);
            self.statement();
            let else_jump = self.emit_jump(op::JUMP);
            self.patch_jump(then_jump);
            self.emit(op::POP);
            if self.matches(T::Else) {
                self.statement();
            }
            self.patch_jump(else_jump);
        } else if self.matches(T::Return) {
            if self.f().kind == FnKind::Script {
                self.error("Can't return from top-level code.");
            }
            if self.matches(T::Semicolon) {
                self.emit_return();
            } else {
                if self.f().kind == FnKind::Initializer {
                    self.error("Can't return a value from an initializer.");
                }
                self.expression();
                self.consume(T::Semicolon, "Expect ';' after return value.");
                self.emit(op::RETURN);
            }
        } else if self.matches(T::While) {
            let start = self.f().code.len();
            self.consume(T::LeftParen, "Expect '(' after 'while'.");
            self.expression();
            self.consume(T::RightParen, "Expect ')' after condition.");
            let exit = self.emit_jump(op::JUMP_IF_FALSE);
            self.emit(op::POP);
            self.statement();
            self.emit_loop(start);
            self.patch_jump(exit);
            self.emit(op::POP);
        } else if self.matches(T::LeftBrace) {
            self.begin_scope();
            self.block();
            self.end_scope();
        } else {
            self.expression_statement();
        }
    }
    fn var_declaration(&mut self) {
        let global = self.parse_variable("Expect variable name.");
        if self.matches(T::Equal) {
            self.expression();
        } else {
            self.emit(op::NIL);
        }
        self.consume(T::Semicolon, "Expect ';' after variable declaration.");
        self.define_variable(global);
    }
    fn expression_statement(&mut self) {
        self.expression();
        self.consume(T::Semicolon, "Expect ';' after expression.");
        self.emit(op::POP);
    }
    fn for_statement(&mut self) {
        self.begin_scope();
        self.consume(T::LeftParen, "Expect '(' after 'for'.");
        if self.matches(T::Semicolon) {
            // No initializer.
        } else if self.matches(T::Var) {
            self.var_declaration();
        } else {
            self.expression_statement();
        }
        let mut start = self.f().code.len();
        let mut exit = None;
        if !self.matches(T::Semicolon) {
            self.expression();
            self.consume(T::Semicolon, "Expect ';' after loop condition.");
            exit = Some(self.emit_jump(op::JUMP_IF_FALSE));
            self.emit(op::POP);
        }
        if !self.matches(T::RightParen) {
            let body = self.emit_jump(op::JUMP);
            let incr = self.f().code.len();
            self.expression();
            self.emit(op::POP);
            self.consume(T::RightParen, "Expect ')' after for clauses.");
            self.emit_loop(start);
            start = incr;
            self.patch_jump(body);
        }
        self.statement();
        self.emit_loop(start);
        if let Some(e) = exit {
            self.patch_jump(e);
            self.emit(op::POP);
        }
        self.end_scope();
    }
}

/// Compiles `source` to the script's function, or the compile errors.
fn compile<'s>(s: &Scope<'s>, st: &VmState, source: &str) -> Result<Gc<'s, Obj>, String> {
    let first = Token { kind: T::Eof, text: "", line: 1 };
    let mut c = Compiler {
        s,
        st,
        current: first,
        previous: first,
        scanner: Scanner::new(source),
        had_error: false,
        panic_mode: false,
        errors: String::new(),
        fns: Vec::new(),
        classes: Vec::new(),
    };
    c.begin_fn(FnKind::Script);
    c.advance();
    while !c.matches(T::Eof) {
        c.declaration();
    }
    let (f, _) = c.end_fn();
    if c.had_error {
        Err(c.errors)
    } else {
        Ok(f)
    }
}

// ---------------------------------------------------------------------------------------------
// The VM
// ---------------------------------------------------------------------------------------------

/// How to run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Per scope: instructions in stress mode (`collect_every_batch`), backward jumps and calls
    /// otherwise.
    pub batch: usize,
    /// Run a full collection at every scope boundary (between batches).
    pub collect_every_batch: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch: BATCH, collect_every_batch: false }
    }
}

/// The heap and options of a run: the default heap, or for the stress mode a synchronous heap
/// with the checkmark verifier on, one instruction per scope and a full collection between scopes.
pub fn setup(stress: bool) -> (Heap, Options) {
    if stress {
        let heap = Heap::builder().workers(0).verify(true).build().expect("lowpause: heap");
        (heap, Options { batch: 1, collect_every_batch: true })
    } else {
        (Heap::new(), Options::default())
    }
}

/// A call frame: plain Rust data (its closure is in `Vm::closures`, at the same depth).
#[derive(Clone, Copy)]
struct Frame {
    ip: usize,
    base: usize,
}

/// The VM between batches: its stacks are the thread's local roots, its frames plain integers.
struct Vm {
    state: Root<VmState>,
    stack: LocalStack<Obj>,
    /// Each frame's closure.
    closures: LocalStack<Obj>,
    frames: Vec<Frame>,
}

enum Step {
    More,
    Done,
    Error(String),
}

/// The frame being executed, derived at batch start and at every call and return.
struct Cur<'s> {
    closure: Gc<'s, Obj>,
    code: &'s [u8],
    consts: &'s [Value<Obj>],
    ip: usize,
    base: usize,
}

fn load_frame<'s>(s: &Scope<'s>, closure: Gc<'s, Obj>, frame: Frame) -> Cur<'s> {
    let function = as_closure(Gc::as_scoped(closure)).function.get(s).unwrap();
    frame_of(s, closure, as_fn(Gc::as_scoped(function)), frame)
}

/// The frame of `closure`, whose function is `f`.
#[inline(always)]
fn frame_of<'s>(s: &Scope<'s>, closure: Gc<'s, Obj>, f: &'s Function, frame: Frame) -> Cur<'s> {
    Cur {
        closure,
        code: Gc::as_scoped(f.code.get(s).unwrap()),
        consts: Gc::as_scoped(f.consts.get(s).unwrap()),
        ip: frame.ip,
        base: frame.base,
    }
}

/// Runs `source` on `heap`, writing the program's output to `out` and errors to `err`; returns
/// the exit code (0, 65 for a compile error, 70 for a runtime error).
pub fn run(heap: &Heap, source: &str, opts: Options, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut m = heap.attach();
    let mut stack = LocalStack::with_capacity(&m, STACK_MAX);
    let mut closures = LocalStack::with_capacity(&m, FRAMES_MAX);
    let setup: Result<Root<VmState>, String> = m.scope(|s| {
        let st = s.alloc(VmState {
            globals: Table::new(),
            strings: Member::null(),
            open_upvalues: Member::null(),
            init_string: Member::null(),
        });
        st.strings.set(s, Some(WeakTable::new_in(s)));
        st.init_string.set(s, Some(intern(s, &st, "init")));
        let clock = intern(s, &st, "clock");
        st.globals.insert(s, clock, ValueRef::Object(s.alloc(Obj::Native(Native { name: "clock" }))));
        let script = compile(s, &st, source)?;
        let closure = s.alloc(Obj::Closure(Closure { function: Member::null(), upvalues: Member::null() }));
        as_closure(&closure).function.set(s, Some(script));
        stack.push(s, ValueRef::Object(closure));
        closures.push(s, ValueRef::Object(closure));
        Ok(s.root(st))
    });
    let state = match setup {
        Ok(st) => st,
        Err(errors) => {
            let _ = err.write_all(errors.as_bytes());
            return 65;
        }
    };
    let mut vm = Vm { state, stack, closures, frames: vec![Frame { ip: 0, base: 0 }] };
    let mut text = String::new();
    let started = std::time::Instant::now();
    let mut finish = |step: Step, text: &mut String| -> Option<i32> {
        if !text.is_empty() {
            let _ = out.write_all(text.as_bytes());
            text.clear();
        }
        match step {
            Step::More => None,
            Step::Done => {
                let _ = out.flush();
                Some(0)
            }
            Step::Error(msg) => {
                let _ = out.flush();
                let _ = err.write_all(msg.as_bytes());
                Some(70)
            }
        }
    };
    if opts.collect_every_batch {
        // Stress: a scope per batch and a full collection between every two.
        loop {
            let step = m.scope(|s| vm.run_batch::<true>(s, opts.batch, &mut text, started));
            if let Some(code) = finish(step, &mut text) {
                return code;
            }
            m.collect();
        }
    }
    // One session for the whole script: each batch is an inner scope, and its entry a safepoint.
    m.session(|sess| loop {
        let step = sess.scope(|s| vm.run_batch::<false>(s, opts.batch, &mut text, started));
        if let Some(code) = finish(step, &mut text) {
            return code;
        }
    })
}

impl Vm {
    /// Runs up to `budget` instructions (`EVERY`) or until `budget` backward jumps and calls
    /// have been made (otherwise: only those can make a batch long, and counting them keeps the
    /// count off the dispatch of every instruction).
    fn run_batch<'s, const EVERY: bool>(
        &mut self,
        s: &Scope<'s>,
        budget: usize,
        out: &mut String,
        started: std::time::Instant,
    ) -> Step {
        let mut fuel = budget;
        let Vm { state, stack, closures, frames } = self;
        let st = Gc::as_scoped(state.get(s));
        let mut stack = stack.view(s);
        let mut closures = closures.view(s);
        let mut cur = match closures.peek(0) {
            ValueRef::Object(c) => load_frame(s, c, *frames.last().unwrap()),
            _ => unreachable!("a frame's closure"),
        };
        macro_rules! push {
            ($v:expr) => {{
                let v = $v;
                stack.push(v);
            }};
        }
        macro_rules! pop {
            () => {
                stack.pop()
            };
        }
        macro_rules! peek {
            ($d:expr) => {
                stack.peek($d)
            };
        }
        macro_rules! byte {
            () => {{
                cur.ip += 1;
                cur.code[cur.ip - 1]
            }};
        }
        macro_rules! short {
            () => {{
                cur.ip += 2;
                ((cur.code[cur.ip - 2] as usize) << 8) | cur.code[cur.ip - 1] as usize
            }};
        }
        macro_rules! constant {
            () => {{
                let i = byte!() as usize;
                cur.consts[i].get(s)
            }};
        }
        macro_rules! string {
            () => {
                match constant!() {
                    ValueRef::Object(o) => o,
                    _ => unreachable!("a name constant is a string"),
                }
            };
        }
        macro_rules! save {
            () => {{
                frames.last_mut().unwrap().ip = cur.ip;
            }};
        }
        macro_rules! fail {
            ($($msg:tt)*) => {{
                save!();
                // The frames' closures, read here: the views never leave this function, so
                // their fields can stay in registers.
                let cls: Vec<Gc<'s, Obj>> = (0..frames.len())
                    .map(|i| match closures.get(i) {
                        ValueRef::Object(c) => c,
                        _ => unreachable!("a frame's closure"),
                    })
                    .collect();
                return Step::Error(stack_trace(s, frames, &cls, format!($($msg)*)));
            }};
        }
        macro_rules! num2 {
            () => {{
                match (peek!(1), peek!(0)) {
                    (ValueRef::Number(a), ValueRef::Number(b)) => {
                        // The result overwrites the left operand's slot (`poke(0, ..)`).
                        stack.truncate(stack.len() - 1);
                        (a, b)
                    }
                    _ => fail!("Operands must be numbers."),
                }
            }};
        }
        // A call: checks, then pushes a frame and switches to it.
        macro_rules! call_closure {
            ($closure:expr, $argc:expr) => {{
                let closure: Gc<'s, Obj> = $closure;
                let argc: usize = $argc;
                let function = as_fn(Gc::as_scoped(as_closure(Gc::as_scoped(closure)).function.get(s).unwrap()));
                let arity = fn_info(s, function)[0] as usize;
                if argc != arity {
                    fail!("Expected {} arguments but got {}.", arity, argc);
                }
                if frames.len() == FRAMES_MAX {
                    fail!("Stack overflow.");
                }
                save!();
                let f = Frame { ip: 0, base: stack.len() - argc - 1 };
                frames.push(f);
                closures.push(ValueRef::Object(closure));
                cur = frame_of(s, closure, function, f);
                tick!();
            }};
        }
        macro_rules! call_value {
            ($callee:expr, $argc:expr) => {{
                let argc: usize = $argc;
                let callee: V<'s> = $callee;
                let obj = match callee {
                    ValueRef::Object(o) => o,
                    _ => fail!("Can only call functions and classes."),
                };
                match &*Gc::as_scoped(obj) {
                    Obj::Closure(_) => call_closure!(obj, argc),
                    Obj::Bound(b) => {
                        stack.poke(argc, b.receiver.get(s));
                        call_closure!(b.method.get(s).unwrap(), argc);
                    }
                    Obj::Class(class) => {
                        let inst = s.alloc(Obj::Instance(Instance { class: Member::null(), fields: Table::new() }));
                        if let Obj::Instance(i) = &*inst {
                            i.class.set(s, Some(obj));
                        }
                        stack.poke(argc, ValueRef::Object(inst));
                        match class.methods.get(s, st.init_string.get(s).unwrap()) {
                            Some(ValueRef::Object(init)) => call_closure!(init, argc),
                            _ if argc != 0 => fail!("Expected 0 arguments but got {}.", argc),
                            _ => {}
                        }
                    }
                    Obj::Native(_) => {
                        let t = started.elapsed().as_secs_f64();
                        stack.truncate(stack.len() - argc - 1);
                        push!(ValueRef::Number(t));
                    }
                    _ => fail!("Can only call functions and classes."),
                }
            }};
        }
        macro_rules! invoke_from_class {
            ($class:expr, $name:expr, $argc:expr) => {{
                let name: Gc<'s, Obj> = $name;
                match as_class(&$class).methods.get(s, name) {
                    Some(ValueRef::Object(m)) => call_closure!(m, $argc),
                    _ => fail!("Undefined property '{}'.", as_str(s, &name)),
                }
            }};
        }
        macro_rules! bind_method {
            ($class:expr, $name:expr) => {{
                let name: Gc<'s, Obj> = $name;
                match as_class(&$class).methods.get(s, name) {
                    Some(ValueRef::Object(m)) => {
                        let receiver = peek!(0);
                        let b = s.alloc(Obj::Bound(BoundMethod { receiver: Value::nil(), method: Member::null() }));
                        if let Obj::Bound(bm) = &*b {
                            bm.receiver.set(s, receiver);
                            bm.method.set(s, Some(m));
                        }
                        stack.poke(0, ValueRef::Object(b));
                    }
                    _ => fail!("Undefined property '{}'.", as_str(s, &name)),
                }
            }};
        }

        macro_rules! tick {
            () => {
                if !EVERY {
                    fuel -= 1;
                    if fuel == 0 {
                        save!();
                        return Step::More;
                    }
                }
            };
        }
        loop {
            if EVERY {
                if fuel == 0 {
                    break;
                }
                fuel -= 1;
            }
            match byte!() {
                op::CONSTANT => {
                    let v = constant!();
                    push!(v);
                }
                op::NIL => push!(ValueRef::Nil),
                op::TRUE => push!(ValueRef::Bool(true)),
                op::FALSE => push!(ValueRef::Bool(false)),
                op::POP => {
                    pop!();
                }
                op::GET_LOCAL => {
                    let i = byte!() as usize;
                    stack.push_copy(cur.base + i);
                }
                op::SET_LOCAL => {
                    let i = byte!() as usize;
                    stack.copy_top_to(cur.base + i);
                }
                op::GET_GLOBAL => {
                    let name = string!();
                    match st.globals.get(s, name) {
                        Some(v) => push!(v),
                        None => fail!("Undefined variable '{}'.", as_str(s, &name)),
                    }
                }
                op::DEFINE_GLOBAL => {
                    let name = string!();
                    st.globals.insert(s, name, peek!(0));
                    pop!();
                }
                op::SET_GLOBAL => {
                    let name = string!();
                    if st.globals.insert(s, name, peek!(0)) {
                        // It was not defined: undo, as clox does.
                        st.globals.remove(s, name);
                        fail!("Undefined variable '{}'.", as_str(s, &name));
                    }
                }
                op::GET_UPVALUE => {
                    let i = byte!() as usize;
                    let u = upvalue(s, cur.closure, i);
                    match u.slot.load(Ordering::Relaxed) {
                        CLOSED => push!(u.closed.get(s)),
                        slot => push!(stack.get(slot)),
                    }
                }
                op::SET_UPVALUE => {
                    let i = byte!() as usize;
                    let u = upvalue(s, cur.closure, i);
                    let v = peek!(0);
                    match u.slot.load(Ordering::Relaxed) {
                        CLOSED => u.closed.set(s, v),
                        slot => stack.set(slot, v),
                    }
                }
                op::GET_PROPERTY => {
                    let Some(i) = as_instance(peek!(0)) else { fail!("Only instances have properties.") };
                    let name = string!();
                    if let Some(v) = i.fields.get(s, name) {
                        stack.poke(0, v);
                    } else {
                        bind_method!(i.class.get(s).unwrap(), name);
                    }
                }
                op::SET_PROPERTY => {
                    let Some(i) = as_instance(peek!(1)) else { fail!("Only instances have fields.") };
                    let name = string!();
                    let v = pop!();
                    i.fields.insert(s, name, v);
                    stack.poke(0, v);
                }
                op::GET_SUPER => {
                    let name = string!();
                    let ValueRef::Object(superclass) = pop!() else { unreachable!() };
                    bind_method!(superclass, name);
                }
                op::EQUAL => {
                    let b = pop!();
                    let a = peek!(0);
                    stack.poke(0, ValueRef::Bool(a == b));
                }
                op::GREATER => {
                    let (a, b) = num2!();
                    stack.poke(0, ValueRef::Bool(a > b));
                }
                op::LESS => {
                    let (a, b) = num2!();
                    stack.poke(0, ValueRef::Bool(a < b));
                }
                op::ADD => match (peek!(1), peek!(0)) {
                    (ValueRef::Number(a), ValueRef::Number(b)) => {
                        pop!();
                        stack.poke(0, ValueRef::Number(a + b));
                    }
                    (ValueRef::Object(a), ValueRef::Object(b))
                        if matches!(&*a, Obj::Str(_)) && matches!(&*b, Obj::Str(_)) =>
                    {
                        let r = intern_concat(s, st, as_bytes(s, &a), as_bytes(s, &b));
                        pop!();
                        stack.poke(0, ValueRef::Object(r));
                    }
                    _ => fail!("Operands must be two numbers or two strings."),
                },
                op::SUBTRACT => {
                    let (a, b) = num2!();
                    stack.poke(0, ValueRef::Number(a - b));
                }
                op::MULTIPLY => {
                    let (a, b) = num2!();
                    stack.poke(0, ValueRef::Number(a * b));
                }
                op::DIVIDE => {
                    let (a, b) = num2!();
                    stack.poke(0, ValueRef::Number(a / b));
                }
                op::NOT => {
                    let v = peek!(0);
                    stack.poke(0, ValueRef::Bool(falsey(v)));
                }
                op::NEGATE => match peek!(0) {
                    ValueRef::Number(n) => stack.poke(0, ValueRef::Number(-n)),
                    _ => fail!("Operand must be a number."),
                },
                op::PRINT => {
                    let v = pop!();
                    fmt_value(s, v, out);
                    out.push('\n');
                }
                op::JUMP => {
                    let off = short!();
                    cur.ip += off;
                }
                op::JUMP_IF_FALSE => {
                    let off = short!();
                    if falsey(peek!(0)) {
                        cur.ip += off;
                    }
                }
                op::LOOP => {
                    let off = short!();
                    cur.ip -= off;
                    tick!();
                }
                op::CALL => {
                    let argc = byte!() as usize;
                    call_value!(peek!(argc), argc);
                }
                op::INVOKE => {
                    let name = string!();
                    let argc = byte!() as usize;
                    let Some(i) = as_instance(peek!(argc)) else { fail!("Only instances have methods.") };
                    if let Some(v) = i.fields.get(s, name) {
                        stack.poke(argc, v);
                        call_value!(v, argc);
                    } else {
                        invoke_from_class!(i.class.get(s).unwrap(), name, argc);
                    }
                }
                op::SUPER_INVOKE => {
                    let name = string!();
                    let argc = byte!() as usize;
                    let ValueRef::Object(superclass) = pop!() else { unreachable!() };
                    invoke_from_class!(superclass, name, argc);
                }
                op::CLOSURE => {
                    let ValueRef::Object(function) = constant!() else { unreachable!() };
                    let n = fn_info(s, as_fn(Gc::as_scoped(function)))[1] as usize;
                    let ups = s.alloc_slice(n, |_| Member::<Obj>::null());
                    let closure = s.alloc(Obj::Closure(Closure { function: Member::null(), upvalues: Member::null() }));
                    let c = as_closure(Gc::as_scoped(closure));
                    c.function.set(s, Some(function));
                    c.upvalues.set(s, Some(ups));
                    push!(ValueRef::Object(closure));
                    let enclosing = as_closure(Gc::as_scoped(cur.closure)).upvalues.get(s);
                    for up in ups.iter() {
                        let local = byte!() == 1;
                        let index = byte!() as usize;
                        let u = if local {
                            capture_upvalue(s, st, cur.base + index)
                        } else {
                            enclosing.unwrap()[index].get(s).unwrap()
                        };
                        up.set(s, Some(u));
                    }
                }
                op::CLOSE_UPVALUE => {
                    if !st.open_upvalues.is_null() {
                        close_upvalues(s, st, &stack, stack.len() - 1);
                    }
                    pop!();
                }
                op::RETURN => {
                    let result = pop!();
                    if !st.open_upvalues.is_null() {
                        close_upvalues(s, st, &stack, cur.base);
                    }
                    frames.pop();
                    closures.pop();
                    if frames.is_empty() {
                        stack.truncate(0);
                        return Step::Done;
                    }
                    stack.truncate(cur.base);
                    push!(result);
                    cur = match closures.peek(0) {
                        ValueRef::Object(c) => load_frame(s, c, *frames.last().unwrap()),
                        _ => unreachable!("a frame's closure"),
                    };
                }
                op::CLASS => {
                    let name = string!();
                    let class = s.alloc(Obj::Class(Class { name: Member::null(), methods: Table::new() }));
                    as_class(&class).name.set(s, Some(name));
                    push!(ValueRef::Object(class));
                }
                op::INHERIT => {
                    let superclass = match peek!(1) {
                        ValueRef::Object(o) if matches!(&*o, Obj::Class(_)) => o,
                        _ => fail!("Superclass must be a class."),
                    };
                    let ValueRef::Object(sub) = peek!(0) else { unreachable!() };
                    add_all(s, &as_class(&superclass).methods, &as_class(&sub).methods);
                    pop!();
                }
                op::METHOD => {
                    let name = string!();
                    let method = peek!(0);
                    let ValueRef::Object(class) = peek!(1) else { unreachable!() };
                    as_class(&class).methods.insert(s, name, method);
                    pop!();
                }
                other => unreachable!("bad opcode {other}"),
            }
        }
        save!();
        Step::More
    }
}

fn capture_upvalue<'s>(s: &Scope<'s>, st: &VmState, slot: usize) -> Gc<'s, Obj> {
    let mut prev: Option<Gc<'s, Obj>> = None;
    let mut up = st.open_upvalues.get(s);
    while let Some(u) = up {
        let us = as_upvalue(Gc::as_scoped(u)).slot.load(Ordering::Relaxed);
        if us <= slot {
            if us == slot {
                return u;
            }
            break;
        }
        prev = Some(u);
        up = as_upvalue(Gc::as_scoped(u)).next.get(s);
    }
    let created =
        s.alloc(Obj::Upvalue(Upvalue { slot: AtomicUsize::new(slot), closed: Value::nil(), next: Member::null() }));
    as_upvalue(&created).next.set(s, up);
    match prev {
        None => st.open_upvalues.set(s, Some(created)),
        Some(p) => as_upvalue(&p).next.set(s, Some(created)),
    }
    created
}

/// The runtime error message and the stack trace, innermost call first.
fn stack_trace(s: &Scope<'_>, frames: &[Frame], closures: &[Gc<'_, Obj>], msg: String) -> String {
    let mut t = msg;
    t.push('\n');
    for (f, &closure) in frames.iter().zip(closures).rev() {
        let function = as_closure(&closure).function.get(s).unwrap();
        let fun = as_fn(&function);
        let line = fn_info(s, fun)[2 + f.ip.saturating_sub(1)];
        match fun.name.get(s) {
            Some(n) => {
                let _ = writeln!(t, "[line {line}] in {}()", as_str(s, &n));
            }
            None => {
                let _ = writeln!(t, "[line {line}] in script");
            }
        }
    }
    t
}

/// Inlined: it takes the stack's view by reference, which would otherwise keep the view's fields
/// in memory for the whole dispatch loop.
#[inline(always)]
fn close_upvalues<'s>(s: &Scope<'s>, st: &VmState, stack: &StackView<'_, 's, Obj>, last: usize) {
    while let Some(u) = st.open_upvalues.get(s) {
        let up = as_upvalue(Gc::as_scoped(u));
        let slot = up.slot.load(Ordering::Relaxed);
        if slot < last {
            break;
        }
        up.closed.set(s, stack.get(slot));
        up.slot.store(CLOSED, Ordering::Relaxed);
        st.open_upvalues.set(s, up.next.get(s));
    }
}

/// The instance `v` refers to, if it refers to one.
fn as_instance<'s>(v: V<'s>) -> Option<&'s Instance> {
    match v {
        ValueRef::Object(o) => match Gc::as_scoped(o) {
            Obj::Instance(i) => Some(i),
            _ => None,
        },
        _ => None,
    }
}

/// Upvalue `i` of `closure`.
fn upvalue<'s>(s: &Scope<'s>, closure: Gc<'s, Obj>, i: usize) -> &'s Upvalue {
    let ups = as_closure(Gc::as_scoped(closure)).upvalues.get(s).unwrap();
    as_upvalue(Gc::as_scoped(ups[i].get(s).unwrap()))
}

fn falsey(v: V<'_>) -> bool {
    matches!(v, ValueRef::Nil | ValueRef::Bool(false))
}
