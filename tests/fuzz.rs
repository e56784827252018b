//! Fuzzing on stable Rust: mutations of the corpus in `tests/fuzz-corpus/` fed to the text
//! frontend, the IR text parser and the golden-file reader. Every input must end in `Ok` or a
//! typed error: a panic, a stack overflow or a hang fails the run.
//!
//! CI runs a few hundred inputs per reader (seconds); `PROPTEST_CASES=100000` runs longer.
//! Inputs that once failed belong in the corpus.

use std::path::Path;

use flexsn::compiler::{frontend, text};
use flexsn::conformance;
use proptest::prelude::*;
use proptest::sample::Index;

/// The corpus files of one reader.
fn corpus(kind: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let texts: Vec<String> = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(!texts.is_empty(), "empty corpus {}", dir.display());
    texts
}

/// One change to a text.
#[derive(Clone, Debug)]
enum Edit {
    Insert(Index, String),
    Delete(Index, usize),
    /// Repeats a slice many times: deep nesting and long chains.
    Repeat(Index, usize, usize),
    /// Swaps a character for one of the syntax's special ones.
    Replace(Index, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let special = prop::sample::select(
        "(){}[]<>;,.:+-*/%!|&=#\"'\\0123456789e_ \nxv%@"
            .chars()
            .collect::<Vec<_>>(),
    );
    prop_oneof![
        (any::<Index>(), "[(){}\\[\\]<>;,.:+*/!|&=a-z0-9 \\-]{1,12}")
            .prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<Index>(), 1usize..24).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), 1usize..12, 2usize..3000).prop_map(|(i, l, n)| Edit::Repeat(i, l, n)),
        (any::<Index>(), special).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

fn apply(src: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = src.chars().collect();
    for e in edits {
        let at = |i: &Index, s: &Vec<char>| if s.is_empty() { 0 } else { i.index(s.len()) };
        match e {
            Edit::Insert(i, t) => {
                let p = at(i, &s);
                s.splice(p..p, t.chars());
            }
            Edit::Delete(i, n) => {
                let p = at(i, &s);
                s.drain(p..(p + n).min(s.len()));
            }
            Edit::Repeat(i, l, n) => {
                let p = at(i, &s);
                let piece: Vec<char> = s[p..(p + l).min(s.len())].to_vec();
                let copies: Vec<char> = piece
                    .iter()
                    .copied()
                    .cycle()
                    .take(piece.len() * n)
                    .collect();
                s.splice(p..p, copies);
            }
            Edit::Replace(i, c) => {
                if !s.is_empty() {
                    let p = at(i, &s);
                    s[p] = *c;
                }
            }
        }
    }
    s.into_iter().collect()
}

/// A corpus entry with a few edits.
fn mutated(kind: &'static str) -> impl Strategy<Value = String> {
    let texts = corpus(kind);
    (any::<Index>(), prop::collection::vec(edit(), 0..4))
        .prop_map(move |(i, edits)| apply(&texts[i.index(texts.len())], &edits))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn the_text_frontend_never_panics(src in mutated("core")) {
        let _ = frontend::parse_core(&src, &[("tau", 2.0), ("beta", 0.5)]);
        let _ = frontend::core_info(&src);
    }

    #[test]
    fn the_ir_parser_never_panics(src in mutated("ir")) {
        if let Ok(g) = text::parse(&src) {
            // What parses prints and parses back to the same text.
            let printed = text::print(&g);
            prop_assert_eq!(text::print(&text::parse(&printed).unwrap()), printed);
        }
    }

    #[test]
    fn the_golden_reader_never_panics(src in mutated("golden")) {
        if let Ok(cases) = conformance::parse_cases(&src, "fuzz") {
            for c in &cases {
                let _ = c.t_n();
            }
        }
    }
}

#[test]
fn the_corpus_itself_is_accepted() {
    for src in corpus("core") {
        frontend::core_info(&src).unwrap();
    }
    for src in corpus("ir") {
        text::parse(&src).unwrap();
    }
    for src in corpus("golden") {
        assert!(!conformance::parse_cases(&src, "corpus").unwrap().is_empty());
    }
}
