//! Deep and long sources: a located error past the nesting limit, never a stack overflow, and
//! time linear in the source.

use std::time::{Duration, Instant};

use super::{MAX_NESTING, check_nesting};
use crate::{Diagnostic, FrontendError, core_info, parse_core};

/// Far past the limit and past where the unbounded parser overflowed an 8 MB stack.
const DEEP: usize = 50_000;

fn core(body: &str) -> String {
    format!("fn f(x: Input, v: State) -> (Output, State) {{\n    let y = {body};\n    (y, v)\n}}\n")
}

fn nesting_error(src: &str) -> Diagnostic {
    match parse_core(src, &[]) {
        Err(FrontendError::Source(d)) => {
            assert!(d.message.contains("nests too deeply"), "{d}");
            *d
        }
        other => panic!("expected the nesting error, got {other:?}"),
    }
}

type Form = (&'static str, fn(usize) -> String);

/// Each form that nests without bound, as a function of its depth.
const FORMS: &[Form] = &[
    ("parentheses", |n| {
        format!("{}x{}", "(".repeat(n), ")".repeat(n))
    }),
    ("sum", |n| format!("x{}", " + x".repeat(n))),
    ("nested if", |n| {
        format!(
            "{}x{}",
            "if x > 0.0 { ".repeat(n),
            " } else { v }".repeat(n)
        )
    }),
    ("else-if chain", |n| {
        "if x > 0.0 { x } else ".repeat(n) + "{ v }"
    }),
    ("blocks", |n| {
        format!("{}x{}", "{ ".repeat(n), " }".repeat(n))
    }),
    ("calls", |n| {
        format!("{}x{}", "tanh(".repeat(n), ")".repeat(n))
    }),
    ("methods", |n| format!("x{}", ".tanh()".repeat(n))),
    ("unary minus", |n| format!("{}x", "- ".repeat(n))),
    ("negation", |n| format!("{}x", "!".repeat(n))),
    ("casts", |n| format!("x{}", " as f32".repeat(n))),
    ("generic arguments", |n| {
        format!("x as A<{}B{}", "A<B, ".repeat(n), ">".repeat(n + 1))
    }),
    ("closures", |n| format!("{}x", "|a, b| ".repeat(n))),
];

#[test]
fn every_deep_form_is_a_located_error() {
    for (what, form) in FORMS {
        let src = core(&form(DEEP));
        let d = nesting_error(&src);
        // Located inside the `let` on line 2, where the count passes the limit.
        assert_eq!(d.line, 2, "{what}: {d}");
        assert!(d.column > 1, "{what}: {d}");
        assert!(d.excerpt.contains('^'), "{what}: {d}");
        // The interface reader goes through the same check.
        assert!(core_info(&src).is_err(), "{what}");
    }
}

#[test]
fn the_deepest_accepted_form_fits_the_frontend_stack() {
    // Each form at the deepest depth the check lets through must parse and analyze (or fail
    // with an ordinary error, for forms a core rejects) without overflowing the stack.
    for (what, form) in FORMS {
        let accepted = |n: usize| check_nesting(&core(&form(n))).is_none();
        let (mut lo, mut hi) = (1, MAX_NESTING + 1);
        assert!(accepted(lo) && !accepted(hi), "{what}");
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if accepted(mid) { lo = mid } else { hi = mid }
        }
        if let Err(FrontendError::Source(d)) = parse_core(&core(&form(lo)), &[]) {
            assert!(
                !d.message.contains("nests too deeply"),
                "{what} at {lo}: {d}"
            );
        }
    }
}

/// A core with `n` states, a `let` per state and all of them returned: lists, not nesting.
fn many_states(n: usize) -> String {
    let mut src = String::from("fn f(x: Input");
    for i in 0..n {
        src += &format!(", s{i}: State");
    }
    src += ") -> (Output";
    src += &", State".repeat(n);
    src += ") {\n    let y = x;\n";
    for i in 0..n {
        src += &format!("    let y = y + s{i};\n");
    }
    src += "    (y";
    for i in 0..n {
        src += &format!(", s{i} * 0.5");
    }
    src + ")\n}\n"
}

#[test]
fn long_flat_sources_are_not_nesting() {
    // Many doc lines, arguments, statements and returned values.
    let n = 3 * MAX_NESTING;
    let src = "/// doc\n".repeat(n) + &many_states(n);
    let g = parse_core(&src, &[]).unwrap();
    assert_eq!(g.states().len(), n);
}

/// Seconds to parse `make(n)`.
fn time_parse(make: &dyn Fn(usize) -> String, n: usize) -> Duration {
    let src = make(n);
    let t = Instant::now();
    let _ = parse_core(&src, &[]);
    t.elapsed()
}

/// Asserts that quadrupling the input at most about quadruples the time (best of seven, so
/// that a busy machine or tests running beside this one do not make a linear frontend look
/// quadratic).
fn assert_near_linear(what: &str, make: &dyn Fn(usize) -> String, n: usize) {
    let best = |n| (0..7).map(|_| time_parse(make, n)).min().unwrap();
    let (small, large) = (best(n), best(4 * n));
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
    // Linear is 4; quadratic would be 16.
    assert!(
        ratio < 9.0,
        "{what}: {n} -> {small:?}, {} -> {large:?} (ratio {ratio:.1})",
        4 * n
    );
}

#[test]
fn frontend_time_is_near_linear() {
    // An else-if chain within the limit: each link's span used to re-print the rest.
    assert_near_linear(
        "else-if chain",
        &|n| core(&("if x > 0.0 { x } else ".repeat(n) + "{ v }")),
        95,
    );
    // Many states and `let`s: name lookups used to scan every binding.
    assert_near_linear("states", &many_states, 500);
}

#[test]
fn numbers_outside_f32_follow_one_rule() {
    let lit = |l: &str| parse_core(&core(l), &[]);
    for bad in ["1e39", "340282366920938463463374607431768211456", "1e300"] {
        let d = message(lit(bad));
        assert!(d.contains("out of the range of f32"), "{bad}: {d}");
    }
    assert!(lit("3.4e38").is_ok());
    assert!(lit("f32::INFINITY").is_ok());
    let src = "fn f(x: Input, b: f32) -> Output { x * b }";
    for (v, why) in [
        (1e300, "out of the range"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "infinity"),
    ] {
        let e = parse_core(src, &[("b", v)]).unwrap_err().to_string();
        assert!(e.contains(why), "{v}: {e}");
    }
    assert!(parse_core(src, &[("b", -1e38)]).is_ok());
}

/// The message of an error.
fn message(r: Result<flexsn_ir::StepGraph, FrontendError>) -> String {
    r.map(|_| String::new()).unwrap_or_else(|e| e.to_string())
}
