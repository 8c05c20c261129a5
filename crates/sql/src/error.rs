//! The one error of the SQL front end: what is wrong, and where in the text.

use sqlparser::tokenizer::Span;

/// A declaration that cannot be loaded: a syntax error, a name that does not
/// resolve, a type that does not fit, or a construct outside the subset the
/// engine maintains. Never a wrong answer instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SqlError {
    pub message: String,
    /// 1-based; 0 when the position is not known.
    pub line: u64,
    pub column: u64,
}

impl SqlError {
    pub fn at(span: Span, message: impl Into<String>) -> Self {
        SqlError { message: message.into(), line: span.start.line, column: span.start.column }
    }

    /// A construct the engine does not maintain, named as it was written.
    pub fn unsupported(span: Span, what: impl std::fmt::Display) -> Self {
        Self::at(span, format!("not supported: {what}"))
    }

    /// sqlparser writes the position into its message (`... at Line: 3, Column: 14`).
    pub fn from_parser(e: sqlparser::parser::ParserError) -> Self {
        let text = e.to_string();
        let text = text.strip_prefix("sql parser error: ").unwrap_or(&text).to_string();
        let number_after =
            |key: &str| text.split(key).nth(1).and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse().ok());
        let (line, column) = (number_after("Line: ").unwrap_or(0), number_after("Column: ").unwrap_or(0));
        let message = text.split(" at Line: ").next().unwrap_or(&text).to_string();
        SqlError { message, line, column }
    }
}

pub type Result<T, E = SqlError> = std::result::Result<T, E>;
