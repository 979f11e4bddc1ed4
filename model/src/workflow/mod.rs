//! The workflow language (issue 15): a team's services, events, state, handlers and invariants
//! described as data in the scenario format, compiled once before a run into a compact form
//! the sans-IO services execute. This module grows in steps; docs/workflow-language.md says
//! which constructs exist today.

pub mod expr;

use std::ops::Range;

/// The byte offset in the file of character `offset` of an expression held by the TOML string
/// at `span` (the span includes the quotes). Exact for a one-line string without escapes (basic
/// `"..."` or literal `'...'`); for any other string, where the text and the file differ, the
/// string's start.
pub fn expr_position(source: &str, span: Range<usize>, text: &str, offset: usize) -> usize {
    let Some(raw) = source.get(span.clone()) else { return span.start };
    for quote in ["\"", "'"] {
        if raw.len() == text.len() + 2
            && raw.starts_with(quote)
            && raw.ends_with(quote)
            && &raw[1..raw.len() - 1] == text
        {
            return span.start + 1 + offset.min(text.len());
        }
    }
    span.start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expression_error_points_into_the_file() {
        let src = "a = \"product.stock >= x\"\nb = 'q >= 1'\nc = \"say \\\"x\\\"\"\n";
        let a = src.find('"').expect("a");
        assert_eq!(expr_position(src, a..a + 20, "product.stock >= x", 17), a + 18);
        let b = src.find('\'').expect("b");
        assert_eq!(expr_position(src, b..b + 8, "q >= 1", 2), b + 3);
        let c = src.rfind("\"say").expect("c");
        assert_eq!(expr_position(src, c..src.len() - 1, "say \"x\"", 5), c, "escapes: the string's start");
    }
}
