//! The book Crafting Interpreters' Lox test suite, run against the Lox VM of `examples/lox` (in
//! process, through the same `interp::run` the example's `main` calls), under the rules of
//! `../shared/lox-tests/README.md` with the c flavour. The suite is read from `$LOX_TESTS` or
//! `../shared/lox-tests`; if neither exists the tests say so plainly and pass without running.
//!
//! Two modes: the normal one (the default heap, the script in one session, an inner scope per
//! 1024 backward jumps or calls), and a stress mode that runs one instruction per scope and a full
//! collection at every scope boundary on a heap with the checkmark verifier on.

#[path = "../examples/lox/interp.rs"]
mod interp;

use std::io::Write;
use std::path::{Path, PathBuf};

/// Files the suite must have: every `.lox` file except `scanning/` and `expressions/`.
const EXPECTED_FILES: usize = 246;

/// The suite's folder (`$LOX_TESTS`, else `../shared/lox-tests`), or the path that is missing.
fn suite_dir() -> Result<PathBuf, PathBuf> {
    let dir = match std::env::var_os("LOX_TESTS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lox-tests"),
    };
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(dir)
    }
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            let rel = p.strip_prefix(root).unwrap();
            if rel != Path::new("scanning") && rel != Path::new("expressions") {
                collect(&p, root, out);
            }
        } else if p.extension().is_some_and(|e| e == "lox") {
            out.push(p);
        }
    }
}

/// What a test file expects.
#[derive(Default, Debug)]
struct Expect {
    stdout: Vec<String>,
    compile_errors: Vec<String>,
    runtime_error: Option<(String, usize)>,
}

impl Expect {
    fn exit_code(&self) -> i32 {
        if !self.compile_errors.is_empty() {
            65
        } else if self.runtime_error.is_some() {
            70
        } else {
            0
        }
    }
}

fn parse_expectations(source: &str) -> Expect {
    let mut e = Expect::default();
    for (i, line) in source.lines().enumerate() {
        let n = i + 1;
        if let Some(rest) =
            line.split_once("// expect: ").map(|x| x.1).or_else(|| line.split_once("// expect:").map(|x| x.1))
        {
            e.stdout.push(rest.to_string());
        } else if let Some(rest) = line.split_once("// expect runtime error: ").map(|x| x.1) {
            e.runtime_error = Some((rest.to_string(), n));
        } else if let Some(rest) = line.split_once("// Error").map(|x| x.1) {
            e.compile_errors.push(format!("[line {n}] Error{rest}"));
        } else if let Some(rest) = line.split_once("// [line ").map(|x| x.1) {
            e.compile_errors.push(format!("[line {rest}"));
        } else if let Some(rest) = line.split_once("// [c line ").map(|x| x.1) {
            e.compile_errors.push(format!("[line {rest}"));
        }
        // `// [java line N]` lines belong to the other flavour.
    }
    e
}

/// Runs one file; `Err` says what differed.
fn run_one(path: &Path, stress: bool) -> Result<(), String> {
    let source = std::fs::read_to_string(path).unwrap();
    let expect = parse_expectations(&source);
    let (heap, opts) = interp::setup(stress);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = interp::run(&heap, &source, opts, &mut out, &mut err);
    let out = String::from_utf8(out).unwrap();
    let err = String::from_utf8(err).unwrap();
    let mut lines: Vec<&str> = out.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    if lines != expect.stdout {
        return Err(format!("stdout {lines:?}, expected {:?}", expect.stdout));
    }
    if code != expect.exit_code() {
        return Err(format!("exit code {code}, expected {} (stderr: {err})", expect.exit_code()));
    }
    let err_lines: Vec<&str> = err.lines().collect();
    if !expect.compile_errors.is_empty() {
        for l in err_lines.iter().filter(|l| !l.is_empty()) {
            if !expect.compile_errors.iter().any(|e| e == l) {
                return Err(format!("unexpected stderr line {l:?}; expected {:?}", expect.compile_errors));
            }
        }
        for e in &expect.compile_errors {
            if !err_lines.contains(&e.as_str()) {
                return Err(format!("missing compile error {e:?}; stderr was {err:?}"));
            }
        }
    } else if let Some((msg, line)) = &expect.runtime_error {
        if err_lines.first() != Some(&msg.as_str()) {
            return Err(format!("runtime error {:?}, expected {msg:?}", err_lines.first()));
        }
        let trace = err_lines.iter().skip(1).find(|l| l.contains("[line "));
        let want = format!("[line {line}]");
        if !trace.is_some_and(|t| t.contains(&want)) {
            return Err(format!("stack trace {trace:?} does not name line {line}"));
        }
    } else if !err.is_empty() {
        return Err(format!("unexpected stderr {err:?}"));
    }
    Ok(())
}

/// Writes to stderr past the test harness's capture (it captures only the print macros), so the
/// counts and a skip show in every run, not only with `--nocapture`.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn run_suite(stress: bool) {
    let mode = if stress { "stress mode (collect at every scope boundary, verify on)" } else { "normal mode" };
    let dir = match suite_dir() {
        Ok(dir) => dir,
        Err(missing) => {
            report(&format!(
                "SKIPPED the Lox suite ({mode}): {} is not a folder (set LOX_TESTS to the suite), so no \
                 Lox test ran",
                missing.display()
            ));
            return;
        }
    };
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    for f in &files {
        if let Err(why) = run_one(f, stress) {
            failed.push(format!("{}: {why}", f.strip_prefix(&dir).unwrap().display()));
        }
    }
    let passed = files.len() - failed.len();
    report(&format!(
        "Lox suite, {mode}: {passed} passed, {} failed, of {} files in {:.1} s ({})",
        failed.len(),
        files.len(),
        started.elapsed().as_secs_f64(),
        dir.display()
    ));
    for f in &failed {
        report(&format!("  FAILED {f}"));
    }
    assert!(failed.is_empty(), "{} Lox tests failed", failed.len());
    assert_eq!(files.len(), EXPECTED_FILES, "the suite should have {EXPECTED_FILES} applicable files");
}

#[test]
fn the_lox_suite_passes() {
    run_suite(false);
}

#[test]
fn the_lox_suite_passes_with_a_collection_at_every_safepoint_and_verification() {
    run_suite(true);
}

#[test]
fn numbers_print_as_printf_g() {
    for (n, s) in [
        (1.0, "1"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (1.0 / 3.0, "0.333333"),
        (1e21, "1e+21"),
        (123456789.0, "1.23457e+08"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
    ] {
        assert_eq!(interp::format_number(n), s);
    }
}
