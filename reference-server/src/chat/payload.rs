//! The JSON the chat gateway sends, built with its keys in the order the
//! NestJS gateway writes them. A field whose value is JavaScript `undefined`
//! is left out, as `JSON.stringify` does.

use std::sync::Arc;

use serde_json::Value;

use crate::engine::Frame;
use crate::sio::CHAT;

/// The `joined` reply's fixed message.
pub const JOINED_MESSAGE: &str = "成功加入聊天室";

/// A value as the gateway stores it: raw JSON, or `None` for `undefined`.
pub type Js = Option<String>;

/// The JSON text of a string.
pub fn string(s: &str) -> String {
    chorus_protocol::json::string(s)
}

/// `[["<sid>",<name>],…]` (the form of `onlineUsers` and `roomUsers`) from
/// socket ids and raw JSON names, `undefined` (`None`) written as `null`.
pub fn user_pairs<'a>(users: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut out = String::from("[");
    for (i, (sid, name)) in users.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        out.push_str(&string(sid));
        out.push(',');
        out.push_str(name.unwrap_or("null"));
        out.push(']');
    }
    out.push(']');
    out
}

/// `{"k1":v1,"k2":v2,…}` from raw JSON values, skipping `undefined` ones.
pub fn object(fields: &[(&str, Option<&str>)]) -> String {
    let mut out = String::with_capacity(64);
    out.push('{');
    for (key, value) in fields {
        let Some(value) = value else { continue };
        if out.len() > 1 {
            out.push(',');
        }
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
        out.push_str(value);
    }
    out.push('}');
    out
}

/// The Engine.IO frame of a `/chat` event with one argument: `42/chat,["name",payload]`.
pub fn event_frame(name: &str, payload: &str) -> Frame {
    let mut out = String::with_capacity(CHAT.len() + name.len() + payload.len() + 10);
    out.push_str("42");
    out.push_str(CHAT);
    out.push_str(",[\"");
    out.push_str(name);
    out.push_str("\",");
    out.push_str(payload);
    out.push(']');
    Arc::from(out)
}

/// The `exception` payload: `{"status":"error","message":…,"cause":{"pattern":…[,"data":…]}}`.
pub fn exception(message: &str, pattern: &str, data: Option<&str>) -> String {
    let cause = object(&[("pattern", Some(&string(pattern))), ("data", data)]);
    object(&[
        ("status", Some("\"error\"")),
        ("message", Some(&string(message))),
        ("cause", Some(&cause)),
    ])
}

/// JavaScript truthiness of a stored value.
pub fn truthy(value: &Js) -> bool {
    match value.as_deref() {
        None | Some("null" | "false" | "\"\"") => false,
        Some(v) => match v.parse::<f64>() {
            Ok(n) => n != 0.0,
            Err(_) => true,
        },
    }
}

/// A property of a payload as JavaScript reads it: `payload.key`, which is
/// `undefined` unless the payload is an object holding that key.
pub fn property(payload: &Value, key: &str) -> Js {
    payload.as_object()?.get(key).map(Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_skip_undefined_fields_and_keep_order() {
        assert_eq!(
            object(&[("username", None), ("clientId", Some("\"x\""))]),
            r#"{"clientId":"x"}"#
        );
        assert_eq!(
            exception("m", "joinChat", None),
            r#"{"status":"error","message":"m","cause":{"pattern":"joinChat"}}"#
        );
        assert_eq!(&*event_frame("joined", "{}"), r#"42/chat,["joined",{}]"#);
    }

    #[test]
    fn truthiness_follows_javascript() {
        for (v, t) in [
            (None, false),
            (Some("null"), false),
            (Some("\"\""), false),
            (Some("0"), false),
            (Some("0.0"), false),
            (Some("false"), false),
            (Some("\"a\""), true),
            (Some("7"), true),
            (Some("{}"), true),
            (Some("[]"), true),
        ] {
            assert_eq!(truthy(&v.map(str::to_owned)), t, "{v:?}");
        }
    }
}
