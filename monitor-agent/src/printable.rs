//! Text for an operator's terminal. Methods, paths, hosts, process names and gRPC messages
//! are bytes a workload chose; written as they are, an escape sequence in a path could
//! rewrite the operator's screen or hide a line. JSON output needs none of this: serde
//! escapes control characters itself.

use std::{borrow::Cow, fmt::Write as _};

/// `s` with control characters (C0, DEL, C1), bidirectional overrides and isolates written
/// as `\u{..}`, and backslashes doubled so that an escape cannot be forged; borrowed when
/// nothing needed escaping, which is almost always.
pub(crate) fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if needs_escape(c) {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn only_what_a_terminal_would_act_on_is_escaped() {
        assert!(matches!(
            printable("/users/42?a=b"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(printable("/é/日本"), "/é/日本");
        assert_eq!(printable("/a\u{1b}[31mred"), "/a\\u{1b}[31mred");
        assert_eq!(
            printable("x\r\ny\t\u{7f}\u{9b}"),
            "x\\u{d}\\u{a}y\\u{9}\\u{7f}\\u{9b}"
        );
        assert_eq!(printable("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        // A literal backslash cannot pass for an escape.
        assert_eq!(printable("\\u{1b}"), "\\\\u{1b}");
    }

    proptest::proptest! {
        #[test]
        fn nothing_a_terminal_acts_on_survives(s in ".*") {
            let out = printable(&s);
            proptest::prop_assert!(!out.chars().any(char::is_control));
        }
    }
}
