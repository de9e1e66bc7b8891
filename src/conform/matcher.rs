//! Matching received JSON against what a case expects, and expanding the
//! templates case files may write.
//!
//! Placeholders in expected strings: `<sid>` any 20-character socket id,
//! `<sid:NAME>` the id of the case client `NAME`, `<iso>` a
//! `Date.prototype.toISOString()` timestamp, `<any>` any value.
//! Templates in every string a case sends or expects: `{{u}}` the case's
//! unique tag (keeps concurrent cases apart), `{{x:N}}` N letters `x`; in a
//! repeated `emit` or `expect`, `{{i}}` the repetition's number, from 0.

use std::collections::HashMap;

use serde_json::Value;

/// Exact match: same shape, same object keys in the same order, placeholders resolved.
pub fn matches_exact(expected: &Value, actual: &Value, sids: &HashMap<String, String>) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if is_placeholder(e) => placeholder(e, actual, sids),
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len()
                && e.iter()
                    .zip(a.iter())
                    .all(|((ek, ev), (ak, av))| ek == ak && matches_exact(ev, av, sids))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len()
                && e.iter()
                    .zip(a.iter())
                    .all(|(ev, av)| matches_exact(ev, av, sids))
        }
        _ => expected == actual,
    }
}

/// Subset match: an expected object's keys are present and match; each element
/// of an expected array matches some element of the actual array.
pub fn matches_subset(expected: &Value, actual: &Value, sids: &HashMap<String, String>) -> bool {
    match (expected, actual) {
        (Value::String(e), _) if is_placeholder(e) => placeholder(e, actual, sids),
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| matches_subset(ev, av, sids))),
        (Value::Array(e), Value::Array(a)) => e
            .iter()
            .all(|ev| a.iter().any(|av| matches_subset(ev, av, sids))),
        _ => expected == actual,
    }
}

/// Whether `pattern` subset-matches `actual` or any value nested in it.
pub fn appears_in(pattern: &Value, actual: &Value, sids: &HashMap<String, String>) -> bool {
    matches_subset(pattern, actual, sids)
        || match actual {
            Value::Array(items) => items.iter().any(|v| appears_in(pattern, v, sids)),
            Value::Object(map) => map.values().any(|v| appears_in(pattern, v, sids)),
            _ => false,
        }
}

fn is_placeholder(text: &str) -> bool {
    text == "<sid>" || text == "<iso>" || text == "<any>" || text.starts_with("<sid:")
}

fn placeholder(text: &str, actual: &Value, sids: &HashMap<String, String>) -> bool {
    match text {
        "<any>" => true,
        "<sid>" => actual.as_str().is_some_and(|s| s.len() == 20),
        "<iso>" => actual.as_str().is_some_and(is_iso_millis),
        _ => {
            let name = text.trim_start_matches("<sid:").trim_end_matches('>');
            sids.get(name)
                .is_some_and(|sid| actual.as_str() == Some(sid.as_str()))
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as `Date.prototype.toISOString()` writes it.
pub fn is_iso_millis(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Expands `{{u}}` and `{{x:N}}` in `text`.
pub fn expand(text: &str, tag: &str) -> String {
    if !text.contains("{{") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        match inner
            .strip_prefix("x:")
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            Some(n) => out.extend(std::iter::repeat_n('x', n)),
            None if inner == "u" => out.push_str(tag),
            None => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Expands the templates in every string (and object key) of `value`.
pub fn expand_value(value: &Value, tag: &str) -> Value {
    match value {
        Value::String(s) => Value::String(expand(s, tag)),
        Value::Array(items) => Value::Array(items.iter().map(|v| expand_value(v, tag)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (expand(k, tag), expand_value(v, tag)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Replaces `{{i}}` by `index` in every string (and object key) of `value`.
pub fn with_index(value: &Value, index: u32) -> Value {
    match value {
        Value::String(s) if s.contains("{{i}}") => {
            Value::String(s.replace("{{i}}", &index.to_string()))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| with_index(v, index)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.replace("{{i}}", &index.to_string()), with_index(v, index)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sids() -> HashMap<String, String> {
        HashMap::from([("a".to_owned(), "A".repeat(20))])
    }

    #[test]
    fn exact_match_checks_key_order_and_placeholders() {
        let actual = json!({"username": "al", "clientId": "A".repeat(20)});
        assert!(matches_exact(
            &json!({"username": "al", "clientId": "<sid:a>"}),
            &actual,
            &sids()
        ));
        assert!(!matches_exact(
            &json!({"clientId": "<sid:a>", "username": "al"}),
            &actual,
            &sids()
        ));
        assert!(!matches_exact(&json!({"username": "al"}), &actual, &sids()));
        assert!(matches_exact(
            &json!(["<iso>"]),
            &json!(["2026-11-26T02:20:51.123Z"]),
            &sids()
        ));
        assert!(!matches_exact(
            &json!(["<iso>"]),
            &json!(["2026-11-26"]),
            &sids()
        ));
    }

    #[test]
    fn subset_and_appears_in() {
        let list = json!([[["x", "bob"], ["A".repeat(20), null]]]);
        assert!(matches_subset(
            &json!([[["<sid:a>", null]]]),
            &list,
            &sids()
        ));
        assert!(!matches_subset(
            &json!([[["<sid:a>", "al"]]]),
            &list,
            &sids()
        ));
        assert!(appears_in(&json!("<sid:a>"), &list, &sids()));
        assert!(!appears_in(&json!("nobody"), &list, &sids()));
    }

    #[test]
    fn expands_templates() {
        assert_eq!(expand("al-{{u}} {{x:3}} {{y}}", "t1"), "al-t1 xxx {{y}}");
        assert_eq!(
            expand_value(&json!({"m": ["{{u}}"]}), "t"),
            json!({"m": ["t"]})
        );
        assert_eq!(
            with_index(&json!({"m": ["{{u}} {{i}}", 3]}), 7),
            json!({"m": ["{{u}} 7", 3]})
        );
    }
}
