//! Small JSON helpers the codec and the gateway share: one nesting limit that
//! every reader of untrusted JSON applies before parsing, and a string encoder
//! that cannot fail.

use crate::DecodeError;

/// The deepest nesting of arrays and objects accepted in a packet's data.
///
/// `serde_json` refuses values nested deeper than 128 while `RawValue`
/// validation does not count depth at all, so the codec checks this one limit
/// first: anything it accepts parses the same way everywhere after it. Real
/// chat payloads nest two or three levels.
pub const MAX_DEPTH: usize = 64;

/// Checks that `text` nests arrays and objects at most `max` deep, without
/// parsing it (brackets inside strings are skipped). Well-formedness is left to
/// the parser; this only bounds the depth it will recurse to.
pub fn check_depth(text: &str, max: usize) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(DecodeError::TooDeep(max));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Appends `s` as a JSON string literal, escaped exactly as `serde_json` (and
/// JavaScript's `JSON.stringify`) write it: `"`, `\` and control characters
/// below U+0020 are escaped, everything else is copied.
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = u32::from(c) as usize;
                out.push_str("\\u00");
                for nibble in [n >> 4, n & 0xf] {
                    out.push(HEX.get(nibble).map_or('0', |&h| char::from(h)));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string literal (see [`write_string`]).
pub fn string(s: &str) -> String {
    let mut out = String::new();
    write_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_encode_like_serde_json() {
        let mut all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        all.push_str("é中\u{2028}\u{1F600}\"\\/");
        for s in [
            "",
            "plain",
            "成功加入聊天室",
            "a\"b\\c\n\u{0}\u{1f}\u{7f}",
            &all,
        ] {
            assert_eq!(string(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(check_depth("[1,{\"a\":[2]}]", 3).is_ok());
        assert_eq!(check_depth("[[[[1]]]]", 3), Err(DecodeError::TooDeep(3)));
        assert!(check_depth("[\"[[[[[[\\\"[[[[\"]", 1).is_ok());
        assert!(check_depth(&"[".repeat(64), MAX_DEPTH).is_ok());
        assert!(check_depth(&"[".repeat(65), MAX_DEPTH).is_err());
        // Unbalanced closers never underflow.
        assert!(check_depth("]]]]}}[", 1).is_ok());
    }

    #[test]
    fn within_the_limit_serde_json_parses_every_depth() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(check_depth(&deep, MAX_DEPTH).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_ok());
    }
}
