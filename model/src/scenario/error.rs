//! Scenario errors that name the file, line, column and the expected form.

use std::fmt;
use std::ops::Range;

/// A bad scenario file: where, what is wrong, and what was expected there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: String,
    /// 1-based line and column; 0 when the error has no place in the file.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ScenarioError {
    /// An error at byte span `span` of `source`.
    pub fn at(file: &str, source: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        let (line, column) = match span {
            Some(span) => line_col(source, span.start),
            None => (0, 0),
        };
        Self { file: file.to_string(), line, column, message: message.into() }
    }
}

/// 1-based line and column (in characters) of byte offset `offset`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for ScenarioError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n  c = 3";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 15), (3, 3));
        assert_eq!(line_col(src, 999), (3, 8));
    }
}
