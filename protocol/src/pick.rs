//! Picking a few string fields out of a JSON object without building it:
//! the receive path of a load driver reads two fields of every delivery
//! (the sender's name and the text that carries a correlation mark), and
//! parsing the whole payload into a `Value` would allocate for every key.

use std::borrow::Cow;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON string, borrowed from the input when it has no escapes; any other
/// JSON value is skipped and read as `None`.
struct MaybeStr<'de>(Option<Cow<'de, str>>);

impl<'de> serde::Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The string values of the fields `names` of the JSON object `json`,
/// borrowed from `json` when they have no escapes. A field that is absent or
/// not a string, an empty name, or a `json` that is not an object (or not
/// valid JSON) reads as `None`; with duplicate keys the last one wins.
pub fn fields<'a, const N: usize>(json: &'a str, names: [&str; N]) -> [Option<Cow<'a, str>>; N] {
    struct Pick<'n, const N: usize>([&'n str; N]);
    impl<'de, const N: usize> Visitor<'de> for Pick<'_, N> {
        type Value = [Option<Cow<'de, str>>; N];
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = [const { None }; N];
            while let Some(MaybeStr(key)) = map.next_key::<MaybeStr<'de>>()? {
                let wanted = self
                    .0
                    .iter()
                    .position(|n| !n.is_empty() && key.as_deref() == Some(*n));
                match wanted.and_then(|i| out.get_mut(i)) {
                    Some(slot) => *slot = map.next_value::<MaybeStr<'de>>()?.0,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_map(Pick(names))
        .unwrap_or([const { None }; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_two_fields_without_building_the_object() {
        let [a, b] = fields(
            r#"{"x":{"y":[1]},"username":"ann","message":"hi \"you\""}"#,
            ["username", "message"],
        );
        assert_eq!(a.as_deref(), Some("ann"));
        assert!(matches!(a, Some(Cow::Borrowed(_))));
        assert_eq!(b.as_deref(), Some("hi \"you\""));
        assert_eq!(fields("[1,2]", ["a", "b"]), [None, None]);
        assert_eq!(fields(r#"{"a":5}"#, ["a", "b"]), [None, None]);
    }

    #[test]
    fn escaped_values_are_owned_and_other_values_skipped() {
        let [a, b] = fields(r#"{"a":"x\ny","b":[{"c":"d"}],"z":null}"#, ["a", "b"]);
        assert!(matches!(a, Some(Cow::Owned(ref s)) if s == "x\ny"));
        assert_eq!(b, None);
    }

    #[test]
    fn empty_names_match_nothing_and_the_last_duplicate_wins() {
        assert_eq!(
            fields(r#"{"":"e","a":"1"}"#, ["a", ""]),
            [Some("1".into()), None]
        );
        let [a, _] = fields(r#"{"a":"1","a":"2"}"#, ["a", ""]);
        assert_eq!(a.as_deref(), Some("2"));
    }

    #[test]
    fn picks_any_number_of_fields() {
        let [a, b, c] = fields(
            r#"{"room":"r","username":"ann","x":1}"#,
            ["username", "", "room"],
        );
        assert_eq!(
            (a.as_deref(), b, c.as_deref()),
            (Some("ann"), None, Some("r"))
        );
        assert_eq!(fields("[", ["a"]), [None]);
    }

    #[test]
    fn broken_json_reads_as_nothing() {
        for text in ["", "{", r#"{"a":"#, r#"{"a":"1""#, "nul", r#""a""#] {
            assert_eq!(fields(text, ["a", "b"]), [None, None], "{text:?}");
        }
    }
}
