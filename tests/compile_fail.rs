//! Every soundness rule of DESIGN.md that the type system enforces, shown by a program that must
//! not compile (trybuild). The expected diagnostics live beside each program in tests/ui/.

#[test]
fn soundness_rules_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
