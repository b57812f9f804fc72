//! A Lox interpreter on lowpause: a bytecode compiler and VM in the manner of the book Crafting
//! Interpreters' C interpreter, with every Lox value in the GC heap (see interp.rs).
//!
//! Run: `cargo run --release --example lox -- [--gc-stats] [--gc-stress] script.lox`
//! - `--gc-stats` prints the collector's report on stderr at exit;
//! - `--gc-stress` runs a full collection between every two instructions, with verification on;
//! - `LOWPAUSE_TRACE=1` prints one line per cycle, as for every heap.
//!
//! Exit codes: 0, 65 (compile error), 70 (runtime error), 74 (the script cannot be read).

mod interp;

use std::io::Write;

fn main() {
    let mut stats = false;
    let mut stress = false;
    let mut path = None;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--gc-stats" => stats = true,
            "--gc-stress" => stress = true,
            _ if a.starts_with("--") => {
                eprintln!("unknown option {a}\nusage: lox [--gc-stats] [--gc-stress] script.lox");
                std::process::exit(64);
            }
            _ => path = Some(a),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: lox [--gc-stats] [--gc-stress] script.lox");
        std::process::exit(64);
    };
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Could not read file \"{path}\": {e}");
            std::process::exit(74);
        }
    };
    let (heap, opts) = interp::setup(stress);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let code = interp::run(&heap, &source, opts, &mut out, &mut std::io::stderr());
    let _ = out.flush();
    drop(out);
    if stats {
        eprintln!("{}", heap.stats());
        eprintln!("{}", heap.metrics());
    }
    std::process::exit(code);
}
