//! The MessagePack subset `notepack.io` (the encoder of
//! `@socket.io/redis-adapter`) writes, to and from JSON with map keys in
//! their order (the seed profile's key order is part of the wire).
//! Decoding is bounded: nesting at most [`MAX_DEPTH`], no length larger
//! than the bytes left, never a panic.

use std::fmt::Write as _;

use serde_json::Value;

/// Deepest nesting of arrays and maps accepted.
pub const MAX_DEPTH: usize = 64;

/// A decoded MessagePack value.
#[derive(Debug, Clone, PartialEq)]
pub enum Mp {
    /// nil.
    Nil,
    /// JavaScript `undefined` (notepack's fixext 1 of type 0).
    Undefined,
    /// true / false.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Bytes (a Node `Buffer`) or another extension: not JSON.
    Bin,
    /// An array.
    Array(Vec<Mp>),
    /// A map, entries in their order.
    Map(Vec<(Mp, Mp)>),
}

impl Mp {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key` in a map with string keys.
    pub fn get(&self, key: &str) -> Option<&Mp> {
        match self {
            Self::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The elements of an array (none for anything else).
    pub fn items(&self) -> &[Mp] {
        match self {
            Self::Array(items) => items,
            _ => &[],
        }
    }
}

/// Why a MessagePack message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpError {
    /// The bytes end inside a value.
    #[error("truncated msgpack")]
    Truncated,
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("msgpack nested too deep")]
    TooDeep,
    /// A marker that is never written (0xc1) or a string that is not UTF-8.
    #[error("invalid msgpack")]
    Invalid,
    /// Bytes after the value.
    #[error("trailing bytes after msgpack value")]
    Trailing,
    /// Bytes or an extension where JSON was needed.
    #[error("msgpack value has no JSON form")]
    NotJson,
}

/// Decodes exactly one value.
pub fn decode(bytes: &[u8]) -> Result<Mp, MpError> {
    let mut d = Decoder { bytes, at: 0 };
    let value = d.value(0)?;
    if d.at != bytes.len() {
        return Err(MpError::Trailing);
    }
    Ok(value)
}

struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MpError> {
        let end = self.at.checked_add(n).ok_or(MpError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(MpError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn be(&mut self, n: usize) -> Result<u64, MpError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, MpError> {
        let len = usize::try_from(self.be(n)?).map_err(|_| MpError::Truncated)?;
        // Every element takes at least one byte: a length past the end is a lie.
        if len > self.bytes.len() - self.at {
            return Err(MpError::Truncated);
        }
        Ok(len)
    }

    fn string(&mut self, len: usize) -> Result<Mp, MpError> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(|s| Mp::Str(s.to_owned()))
            .map_err(|_| MpError::Invalid)
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Mp, MpError> {
        let mut items = Vec::with_capacity(len.min(1024));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Mp::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Mp, MpError> {
        let mut entries = Vec::with_capacity(len.min(1024));
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Mp::Map(entries))
    }

    fn ext(&mut self, len: usize) -> Result<Mp, MpError> {
        let kind = self.take(1)?;
        let data = self.take(len)?;
        // notepack writes `undefined` as fixext 1, type 0, data 0.
        Ok(if kind == [0] && data == [0] {
            Mp::Undefined
        } else {
            Mp::Bin
        })
    }

    fn value(&mut self, depth: usize) -> Result<Mp, MpError> {
        if depth > MAX_DEPTH {
            return Err(MpError::TooDeep);
        }
        let marker = *self.take(1)?.first().ok_or(MpError::Truncated)?;
        match marker {
            0x00..=0x7f => Ok(Mp::Int(i64::from(marker))),
            0x80..=0x8f => {
                let n = usize::from(marker & 0x0f);
                self.map(n, depth)
            }
            0x90..=0x9f => {
                let n = usize::from(marker & 0x0f);
                self.array(n, depth)
            }
            0xa0..=0xbf => self.string(usize::from(marker & 0x1f)),
            0xc0 => Ok(Mp::Nil),
            0xc1 => Err(MpError::Invalid),
            0xc2 => Ok(Mp::Bool(false)),
            0xc3 => Ok(Mp::Bool(true)),
            0xc4..=0xc6 => {
                let n = self.len(1 << (marker - 0xc4))?;
                self.take(n)?;
                Ok(Mp::Bin)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (marker - 0xc7))?;
                self.ext(n)
            }
            0xca => Ok(Mp::Float(f64::from(f32::from_bits(self.be(4)? as u32)))),
            0xcb => Ok(Mp::Float(f64::from_bits(self.be(8)?))),
            0xcc..=0xcf => {
                let v = self.be(1 << (marker - 0xcc))?;
                Ok(i64::try_from(v).map_or(Mp::UInt(v), Mp::Int))
            }
            0xd0..=0xd3 => {
                let bytes = 1usize << (marker - 0xd0);
                let raw = self.be(bytes)?;
                let shift = 64 - 8 * bytes as u32;
                // Sign-extend from `bytes` bytes.
                Ok(Mp::Int(((raw << shift) as i64) >> shift))
            }
            0xd4..=0xd8 => self.ext(1 << (marker - 0xd4)),
            0xd9..=0xdb => {
                let n = self.len(1 << (marker - 0xd9))?;
                self.string(n)
            }
            0xdc | 0xdd => {
                let n = self.len(if marker == 0xdc { 2 } else { 4 })?;
                self.array(n, depth)
            }
            0xde | 0xdf => {
                let n = self.len(if marker == 0xde { 2 } else { 4 })?;
                self.map(n, depth)
            }
            0xe0..=0xff => Ok(Mp::Int(i64::from(marker as i8))),
        }
    }
}

/// Appends the JSON text of `value`, as `JSON.stringify` writes it: map
/// keys in order, `undefined` left out of maps and `null` in arrays,
/// non-finite floats as `null`. Bytes and extensions have no JSON form.
pub fn to_json(value: &Mp, out: &mut String) -> Result<(), MpError> {
    match value {
        Mp::Nil | Mp::Undefined => out.push_str("null"),
        Mp::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Mp::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Mp::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Mp::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        Mp::Str(s) => out.push_str(&chorus_protocol::json::string(s)),
        Mp::Bin => return Err(MpError::NotJson),
        Mp::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_json(item, out)?;
            }
            out.push(']');
        }
        Mp::Map(entries) => {
            out.push('{');
            let mut first = true;
            for (k, v) in entries {
                if *v == Mp::Undefined {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                match k {
                    Mp::Str(s) => out.push_str(&chorus_protocol::json::string(s)),
                    other => {
                        // A JavaScript object's keys are strings.
                        let mut key = String::new();
                        to_json(other, &mut key)?;
                        out.push_str(&chorus_protocol::json::string(key.trim_matches('"')));
                    }
                }
                out.push(':');
                to_json(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A MessagePack writer.
#[derive(Default)]
pub struct Encoder {
    /// The bytes written so far.
    pub out: Vec<u8>,
}

impl Encoder {
    fn head(&mut self, fix: u8, fix_max: usize, m16: u8, len: usize) {
        if len <= fix_max {
            self.out.push(fix | len as u8);
        } else if let Ok(n) = u16::try_from(len) {
            self.out.push(m16);
            self.out.extend_from_slice(&n.to_be_bytes());
        } else {
            self.out.push(m16 + 1);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    /// An array header of `len` elements.
    pub fn array(&mut self, len: usize) {
        self.head(0x90, 15, 0xdc, len);
    }

    /// A map header of `len` entries.
    pub fn map(&mut self, len: usize) {
        self.head(0x80, 15, 0xde, len);
    }

    /// A string.
    pub fn str(&mut self, s: &str) {
        let len = s.len();
        if len <= 31 {
            self.out.push(0xa0 | len as u8);
        } else if let Ok(n) = u8::try_from(len) {
            self.out.extend_from_slice(&[0xd9, n]);
        } else if let Ok(n) = u16::try_from(len) {
            self.out.push(0xda);
            self.out.extend_from_slice(&n.to_be_bytes());
        } else {
            self.out.push(0xdb);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    /// An integer, in the smallest form (as notepack writes it).
    pub fn int(&mut self, n: i64) {
        if (0..=0x7f).contains(&n) {
            self.out.push(n as u8);
        } else if (-32..0).contains(&n) {
            self.out.push(n as i8 as u8);
        } else if n >= 0 {
            if let Ok(v) = u8::try_from(n) {
                self.out.extend_from_slice(&[0xcc, v]);
            } else if let Ok(v) = u16::try_from(n) {
                self.out.push(0xcd);
                self.out.extend_from_slice(&v.to_be_bytes());
            } else if let Ok(v) = u32::try_from(n) {
                self.out.push(0xce);
                self.out.extend_from_slice(&v.to_be_bytes());
            } else {
                self.out.push(0xcf);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        } else if let Ok(v) = i8::try_from(n) {
            self.out.extend_from_slice(&[0xd0, v as u8]);
        } else if let Ok(v) = i16::try_from(n) {
            self.out.push(0xd1);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(n) {
            self.out.push(0xd2);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(0xd3);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// A JSON value, map keys in their order (serde_json keeps it: `preserve_order`).
    pub fn json(&mut self, value: &Value) {
        match value {
            Value::Null => self.out.push(0xc0),
            Value::Bool(b) => self.out.push(if *b { 0xc3 } else { 0xc2 }),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.int(i);
                } else if let Some(u) = n.as_u64() {
                    self.out.push(0xcf);
                    self.out.extend_from_slice(&u.to_be_bytes());
                } else {
                    let f = n.as_f64().unwrap_or(0.0);
                    self.out.push(0xcb);
                    self.out.extend_from_slice(&f.to_bits().to_be_bytes());
                }
            }
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.json(item);
                }
            }
            Value::Object(map) => {
                self.map(map.len());
                for (k, v) in map {
                    self.str(k);
                    self.json(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &str) -> String {
        let value: Value = serde_json::from_str(json).expect("json");
        let mut e = Encoder::default();
        e.json(&value);
        let mut out = String::new();
        to_json(&decode(&e.out).expect("decodes"), &mut out).expect("json form");
        out
    }

    #[test]
    fn json_survives_msgpack_with_its_key_order() {
        for json in [
            r#"{"username":"bob","message":"hé \"x\"","timestamp":"2026-01-01T00:00:00.000Z"}"#,
            r#"{"z":1,"a":-1,"m":[-33,128,-129,70000,-70000,5000000000,1.5,null,true,false]}"#,
            r#"[[],{},"","long string past thirty-one bytes, for str8"]"#,
        ] {
            assert_eq!(round_trip(json), json);
        }
        let long = format!("\"{}\"", "x".repeat(70_000));
        assert_eq!(round_trip(&long), long);
    }

    #[test]
    fn undefined_follows_json_stringify() {
        // {"a": undefined, "b": [undefined]} as notepack writes it.
        let bytes = [0x82, 0xa1, b'a', 0xd4, 0, 0, 0xa1, b'b', 0x91, 0xd4, 0, 0];
        let mut out = String::new();
        to_json(&decode(&bytes).expect("decodes"), &mut out).expect("json");
        assert_eq!(out, r#"{"b":[null]}"#);
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(MpError::Truncated)
        );
        assert_eq!(decode(&[0xa5, b'a']), Err(MpError::Truncated));
        assert_eq!(decode(&[0xc1]), Err(MpError::Invalid));
        assert_eq!(decode(&[0xa1, 0xff]), Err(MpError::Invalid));
        assert_eq!(decode(&[0xc0, 0xc0]), Err(MpError::Trailing));
        assert_eq!(decode(&[0x91; 200]), Err(MpError::TooDeep));
        let mut out = String::new();
        assert_eq!(
            to_json(&decode(&[0xc4, 1, 7]).expect("bin"), &mut out),
            Err(MpError::NotJson)
        );
        // Every prefix of a valid message fails cleanly.
        let mut e = Encoder::default();
        e.json(&serde_json::json!({"k": [1, "two", {"x": 3.5}]}));
        for end in 0..e.out.len() {
            assert!(decode(&e.out[..end]).is_err());
        }
    }
}
