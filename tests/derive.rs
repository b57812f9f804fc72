//! `#[derive(Trace)]` on structs, tuple structs, unit structs, enums and generics; `NEEDS_TRACE`
//! follows the fields; `#[trace(leaf)]` types go into std containers; references inside enums,
//! arrays, options and tuples are traced.

use lowpause::{Gc, Heap, Leaf, Member, Trace};
use std::collections::HashMap;

#[derive(Trace)]
struct Plain {
    a: u64,
    b: String,
    c: Vec<(u8, f32)>,
}

#[derive(Trace)]
#[trace(leaf)]
struct Point(f64, f64);

#[derive(Trace)]
#[trace(leaf)]
struct Unit;

#[derive(Trace)]
struct Polygon {
    points: Vec<Point>,
    names: HashMap<String, Point>,
    unit: Unit,
}

#[derive(Trace)]
struct Leafy<T> {
    item: T,
}

#[derive(Trace)]
#[trace(bound = "T: Leaf")]
struct InVec<T> {
    items: Vec<T>,
}

#[derive(Trace)]
enum Expr {
    Num(f64),
    Add(Member<Expr>, Member<Expr>),
    Neg { inner: Member<Expr> },
    Many([Member<Expr>; 3]),
    Maybe(Option<(u8, Member<Expr>)>),
    Nil,
}

/// Field names the derive must bind without warnings or syntax errors.
#[derive(Trace)]
struct OddNames {
    _hidden: Member<u64>,
    r#type: Member<u64>,
}

#[test]
fn fields_with_leading_underscores_and_raw_names_are_traced() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let root = m.scope(|s| {
        let o = s.alloc(OddNames { _hidden: Member::null(), r#type: Member::null() });
        o._hidden.set(s, Some(s.alloc(1)));
        o.r#type.set(s, Some(s.alloc(2)));
        s.root(o)
    });
    m.collect();
    m.scope(|s| {
        let o = root.get(s);
        assert_eq!((*o._hidden.get(s).unwrap(), *o.r#type.get(s).unwrap()), (1, 2));
    });
    assert_eq!(heap.stats().live_objects, 3);
}

fn needs<T: Trace>() -> bool {
    T::NEEDS_TRACE
}

#[test]
fn needs_trace_follows_the_fields() {
    assert!(!needs::<Plain>());
    assert!(!needs::<Point>());
    assert!(!needs::<Polygon>());
    assert!(!needs::<Leafy<u64>>());
    assert!(needs::<Leafy<Member<u64>>>());
    assert!(!needs::<InVec<Point>>());
    assert!(needs::<Expr>());
    assert!(needs::<Option<Member<u64>>>());
    assert!(needs::<(u8, [Member<u64>; 2])>());
    assert!(!needs::<[u64; 4]>());
}

fn eval<'s>(s: &lowpause::Scope<'s>, e: Gc<'s, Expr>) -> f64 {
    match &*e {
        Expr::Num(n) => *n,
        Expr::Add(a, b) => eval(s, a.get(s).unwrap()) + eval(s, b.get(s).unwrap()),
        Expr::Neg { inner } => -eval(s, inner.get(s).unwrap()),
        Expr::Many(xs) => xs.iter().filter_map(|x| x.get(s)).map(|x| eval(s, x)).sum(),
        Expr::Maybe(m) => m.as_ref().and_then(|(_, x)| x.get(s)).map_or(0.0, |x| eval(s, x)),
        Expr::Nil => 0.0,
    }
}

#[test]
fn references_inside_enums_arrays_options_and_tuples_are_traced() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let root = m.scope(|s| {
        let num = |n| s.alloc(Expr::Num(n));
        let add = s.alloc(Expr::Add(Member::null(), Member::null()));
        if let Expr::Add(a, b) = &*add {
            a.set(s, Some(num(1.0)));
            b.set(s, Some(num(2.0)));
        }
        let neg = s.alloc(Expr::Neg { inner: Member::null() });
        if let Expr::Neg { inner } = &*neg {
            inner.set(s, Some(add));
        }
        let many = s.alloc(Expr::Many([Member::null(), Member::null(), Member::null()]));
        let maybe = s.alloc(Expr::Maybe(Some((7, Member::null()))));
        if let Expr::Maybe(Some((_, x))) = &*maybe {
            x.set(s, Some(num(10.0)));
        }
        if let Expr::Many(xs) = &*many {
            xs[0].set(s, Some(neg));
            xs[2].set(s, Some(maybe));
            xs[1].set(s, Some(s.alloc(Expr::Nil)));
        }
        for _ in 0..1000 {
            num(99.0); // garbage
        }
        s.root(many)
    });
    m.collect();
    let st = heap.stats();
    assert_eq!(st.live_objects, 8, "{st}");
    m.scope(|s| assert_eq!(eval(s, root.get(s)), 7.0));
}

#[test]
fn leaf_types_live_in_containers_inside_heap_objects() {
    let heap = Heap::new();
    let mut m = heap.attach();
    let r = m.scope(|s| {
        let mut names = HashMap::new();
        names.insert("origin".to_string(), Point(0.0, 0.0));
        s.root(s.alloc(Polygon { points: vec![Point(1.0, 2.0), Point(3.0, 4.0)], names, unit: Unit }))
    });
    m.collect();
    m.scope(|s| {
        let p = r.get(s);
        assert_eq!(p.points[1].1, 4.0);
        assert_eq!(p.names["origin"].0, 0.0);
        let _ = &p.unit;
    });
    m.scope(|s| {
        let v = s.alloc(InVec { items: vec![Point(5.0, 6.0)] });
        let l = s.alloc(Leafy { item: Member::<Plain>::null() });
        let plain = s.alloc(Plain { a: 1, b: "x".into(), c: vec![(1, 2.0)] });
        l.item.set(s, Some(plain));
        assert_eq!(v.items[0].0 + l.item.get(s).unwrap().a as f64, 6.0);
    });
}
