//! Errors of the text frontend, located with line, column and a caret excerpt.

use std::fmt;

use proc_macro2::Span;

/// A located error: what is wrong, where, and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// What is allowed instead, when there is a useful hint.
    pub help: Option<String>,
    /// The file name, when the source came from a file.
    pub file: Option<String>,
    /// 1-based line of the start of the offending code.
    pub line: usize,
    /// 1-based column (in characters) of the start of the offending code.
    pub column: usize,
    /// The source line and a caret line under the offending code (already rendered).
    pub excerpt: String,
}

impl Diagnostic {
    /// Locates `span` in `src` and renders the excerpt.
    pub(crate) fn new(
        src: &str,
        file: Option<&str>,
        span: Span,
        message: String,
        help: Option<String>,
    ) -> Self {
        let (start, end) = (span.start(), span.end());
        let (line, col0) = if start.line == 0 {
            (1, 0)
        } else {
            (start.line, start.column)
        };
        let text = src
            .lines()
            .nth(line - 1)
            .unwrap_or("")
            .trim_end_matches('\r');
        let width = text.chars().count();
        let col0 = col0.min(width);
        let end_col = if end.line == start.line && end.column > col0 {
            end.column.min(width.max(col0 + 1))
        } else {
            // Multi-line span: underline to the end of the first line.
            width.max(col0 + 1)
        };
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        // Keep tabs in the caret line so that it lines up with the source line.
        let lead: String = text
            .chars()
            .take(col0)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat((end_col - col0).max(1));
        let excerpt = format!("{pad} |\n{line} | {text}\n{pad} | {lead}{carets}");
        Diagnostic {
            message,
            help,
            file: file.map(str::to_string),
            line,
            column: col0 + 1,
            excerpt,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        let pad = " ".repeat(self.line.to_string().len());
        writeln!(
            f,
            "{pad}--> {}:{}:{}",
            self.file.as_deref().unwrap_or("<core>"),
            self.line,
            self.column
        )?;
        write!(f, "{}", self.excerpt)?;
        if let Some(h) = &self.help {
            write!(f, "\n{pad} = help: {h}")?;
        }
        Ok(())
    }
}

/// Why a core written in Rust syntax could not be turned into a step graph.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrontendError {
    /// A located error in the source (syntax, unsupported construct, invalid graph).
    #[error("{0}")]
    Source(Box<Diagnostic>),
    /// A binding names no hyperparameter or param of the core.
    #[error(
        "`{name}` is not a hyperparameter or `Param<Dynamic>` of core `{core}`; it has: {known}"
    )]
    UnknownBinding {
        /// The core's name.
        core: String,
        /// The name bound.
        name: String,
        /// The core's hyperparameters and `Param<Dynamic>` params, quoted and joined with `, `.
        known: String,
    },
    /// A binding has a value of the wrong form.
    #[error("cannot bind `{name}` = `{value}`: {why}")]
    BadBinding {
        /// The name bound (the whole assignment when it has no `=`).
        name: String,
        /// The value as written (empty when there is none).
        value: String,
        /// What form was expected.
        why: String,
    },
    /// The core file could not be read.
    #[error("cannot read `{path}`: {message}")]
    Io {
        /// The path as given.
        path: String,
        /// The operating system's error message.
        message: String,
    },
    /// The frontend's thread could not be started.
    #[error("cannot start the frontend thread: {0}")]
    Thread(String),
}

impl FrontendError {
    /// The located diagnostic, when there is one.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            FrontendError::Source(d) => Some(d),
            _ => None,
        }
    }
}
