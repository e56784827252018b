//! Bounds on how deeply a core's syntax may nest, and the stack the frontend runs on.
//!
//! `syn` parses recursively and its syntax trees are analyzed and dropped recursively, so a
//! small source such as 3,000 nested parentheses or a sum of 15,000 terms would overflow the
//! stack. Before `syn` sees a source, [`check_nesting`] bounds the depth any syntax tree built
//! from it can reach; the frontend then parses, analyzes and drops the tree on a thread whose
//! stack ([`FRONTEND_STACK`]) fits that depth.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree, token_stream};

/// The most tokens a chain of nested syntax may hold (see [`check_nesting`]): room for sums
/// of about a thousand terms or selects chained a few hundred deep.
pub const MAX_NESTING: usize = 2_000;

/// The stack of the thread the frontend runs on: sized for syntax nested [`MAX_NESTING`] deep
/// in its deepest form, with a wide margin (unused stack pages are never touched).
pub const FRONTEND_STACK: usize = 256 << 20;

/// Where a source's nesting first exceeds [`MAX_NESTING`], or `None`.
///
/// The depth a syntax tree can reach is bounded by counting tokens: within each group (`(..)`,
/// `[..]`, `{..}`) the tokens since the last statement or list separator, plus the count at
/// which each enclosing group was opened. Every level of a syntax tree takes at least one
/// token, so this bounds the depth from above. A `,` only separates when it is outside `<..>`
/// and `|..|` (generic arguments and closure parameters nest without groups); attributes
/// (`#[..]`, doc comments) are lists and do not count. Sources that do not lex return `None`:
/// the parser reports them.
pub fn check_nesting(src: &str) -> Option<Span> {
    let tokens: TokenStream = src.parse().ok()?;
    // Explicit stack: the check itself must not recurse.
    let mut frames = vec![Frame::new(tokens.into_iter(), 0)];
    while let Some(frame) = frames.last_mut() {
        let Some(tt) = frame.tokens.next() else {
            frames.pop();
            continue;
        };
        let after_hash = std::mem::take(&mut frame.after_hash);
        match &tt {
            TokenTree::Punct(p) => match p.as_char() {
                ';' => {
                    frame.reset();
                    continue;
                }
                ',' if frame.angles == 0 && !frame.in_pipes => {
                    frame.run = 0;
                    continue;
                }
                '#' => {
                    frame.after_hash = true;
                    continue;
                }
                '<' => frame.angles += 1,
                '>' => frame.angles = frame.angles.saturating_sub(1),
                '|' => frame.in_pipes = !frame.in_pipes,
                _ => {}
            },
            TokenTree::Group(g) if after_hash && g.delimiter() == Delimiter::Bracket => {
                let base = frame.base + frame.run;
                frames.push(Frame::new(g.stream().into_iter(), base));
                continue;
            }
            _ => {}
        }
        frame.run += 1;
        let depth = frame.base + frame.run;
        if depth > MAX_NESTING {
            return Some(tt.span());
        }
        if let TokenTree::Group(g) = tt {
            frames.push(Frame::new(g.stream().into_iter(), depth));
        }
    }
    None
}

/// One open group of [`check_nesting`].
struct Frame {
    tokens: token_stream::IntoIter,
    /// The count at which this group was opened.
    base: usize,
    /// Tokens since the last separator.
    run: usize,
    angles: usize,
    in_pipes: bool,
    after_hash: bool,
}

impl Frame {
    fn new(tokens: token_stream::IntoIter, base: usize) -> Self {
        Frame {
            tokens,
            base,
            run: 0,
            angles: 0,
            in_pipes: false,
            after_hash: false,
        }
    }

    fn reset(&mut self) {
        self.run = 0;
        self.angles = 0;
        self.in_pipes = false;
    }
}

/// Runs `f` on a thread with a [`FRONTEND_STACK`] stack. Syntax trees and spans stay on that
/// thread (they are not `Send`); only `f`'s result comes back. Fails only when no thread can
/// be started (resource limits).
pub fn on_frontend_stack<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("flexsn-frontend".into())
            .stack_size(FRONTEND_STACK)
            .spawn_scoped(s, f)?;
        Ok(handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

#[cfg(test)]
mod tests;
