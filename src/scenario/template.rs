//! `{{…}}` templates, compiled once at load time and rendered per message.
//!
//! Expressions: `vu`, `vu % N`, `seq`, `uuid`, `now`, `token`, any `vars` entry or
//! captured value by name, `random(a, b, "c d")` and `randint(1, 100)`.

use std::collections::HashMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::tree::{Located, Pos};

/// The per-client values templates are rendered with.
#[derive(Debug, Clone, Default)]
pub struct VuState {
    /// The virtual-user index (`{{vu}}`), unique within a run.
    pub vu: u64,
    /// The per-client counter (`{{seq}}`); the engine increments it after each emit.
    pub seq: u64,
    values: HashMap<String, String>,
}

impl VuState {
    /// A state for virtual user `vu` with no values yet.
    pub fn new(vu: u64) -> Self {
        VuState {
            vu,
            ..Self::default()
        }
    }

    /// Sets a named value (a var, a capture or `token`).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// A named value, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Vu,
    /// `vu % n`.
    VuMod(u64),
    Seq,
    Uuid,
    Now,
    /// A var, capture or `token`, looked up by name.
    Named(String),
    Random(Vec<String>),
    RandInt(i64, i64),
}

/// A compiled string template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
    pos: Pos,
}

impl Template {
    /// Compiles a template text.
    pub fn compile(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in template `{text}`"))?;
            parts.push(parse_expr(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template {
            parts,
            pos: Pos::default(),
        })
    }

    /// Renders the template for one client.
    pub fn render(&self, state: &VuState, rng: &mut impl Rng) -> String {
        let mut out = String::new();
        self.render_into(&mut out, state, rng);
        out
    }

    /// Appends the rendering to `out`; a name with no value renders as empty.
    pub fn render_into(&self, out: &mut String, state: &VuState, rng: &mut impl Rng) {
        use std::fmt::Write;
        for part in &self.parts {
            // Writing to a String cannot fail.
            let _ = match part {
                Part::Lit(s) => write!(out, "{s}"),
                Part::Vu => write!(out, "{}", state.vu),
                Part::VuMod(n) => write!(out, "{}", state.vu % n),
                Part::Seq => write!(out, "{}", state.seq),
                Part::Uuid => write!(out, "{}", uuid_v4(rng)),
                Part::Now => write!(out, "{}", unix_millis()),
                Part::Named(name) => write!(out, "{}", state.get(name).unwrap_or_default()),
                Part::Random(choices) => {
                    write!(out, "{}", choices[rng.random_range(0..choices.len())])
                }
                Part::RandInt(lo, hi) => write!(out, "{}", rng.random_range(*lo..=*hi)),
            };
        }
    }

    /// The names this template reads (vars, captures, `token`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Named(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// True when the template has no expression at all.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    pub(crate) fn pos(&self) -> Pos {
        self.pos
    }
}

fn parse_expr(expr: &str) -> Result<Part, String> {
    if let Some(args) = expr.strip_suffix(')') {
        let (func, args) = args
            .split_once('(')
            .ok_or_else(|| format!("invalid template expression `{expr}`"))?;
        let args: Vec<String> = split_args(args)?;
        return match func.trim() {
            "random" if !args.is_empty() => Ok(Part::Random(args)),
            "random" => Err("`random()` needs at least one choice".into()),
            "randint" => {
                let nums: Vec<i64> = args
                    .iter()
                    .map(|a| a.parse::<i64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("`{expr}`: randint takes two integers"))?;
                match nums[..] {
                    [lo, hi] if lo <= hi => Ok(Part::RandInt(lo, hi)),
                    _ => Err(format!(
                        "`{expr}`: expected randint(low, high) with low <= high"
                    )),
                }
            }
            other => Err(format!(
                "unknown template function `{other}`, expected random or randint"
            )),
        };
    }
    if let Some((left, right)) = expr.split_once('%') {
        let n = right.trim().parse::<u64>().ok().filter(|&n| n > 0);
        return match (left.trim(), n) {
            ("vu", Some(n)) => Ok(Part::VuMod(n)),
            _ => Err(format!(
                "`{expr}`: expected `vu % N` with N a whole number above 0"
            )),
        };
    }
    if expr.is_empty() || !expr.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(format!("invalid template expression `{{{{{expr}}}}}`"));
    }
    Ok(match expr {
        "vu" => Part::Vu,
        "seq" => Part::Seq,
        "uuid" => Part::Uuid,
        "now" => Part::Now,
        name => Part::Named(name.to_owned()),
    })
}

/// Splits function arguments on commas; arguments may be quoted with ' or ".
fn split_args(args: &str) -> Result<Vec<String>, String> {
    if args.trim().is_empty() {
        return Ok(Vec::new());
    }
    args.split(',')
        .map(|a| {
            let a = a.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| a.strip_prefix(*q).and_then(|s| s.strip_suffix(*q)));
            match unquoted {
                Some(s) => Ok(s.to_owned()),
                None if a.is_empty() => Err("empty function argument".to_owned()),
                None => Ok(a.to_owned()),
            }
        })
        .collect()
}

fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The text of a scalar template: strings, and numbers or booleans as written.
struct TemplateText;

impl Visitor<'_> for TemplateText {
    type Value = Template;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string template")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Template, E> {
        Template::compile(v).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Template, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Template, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Template, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Template, E> {
        self.visit_str(&v.to_string())
    }
}

/// Compiles a scalar in place, so that its errors carry its own position.
struct Compiled(Template);

impl<'de> Deserialize<'de> for Compiled {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TemplateText).map(Compiled)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let located = Located::<Compiled>::deserialize(d)?;
        let mut template = located.value.0;
        template.pos = located.pos;
        Ok(template)
    }
}

/// A JSON value whose string leaves are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// `null`.
    Null,
    /// A boolean, kept as is.
    Bool(bool),
    /// A number, kept as is.
    Number(serde_json::Number),
    /// A string leaf, rendered as a string.
    String(Template),
    /// A list.
    Array(Vec<JsonTemplate>),
    /// An object, keys in source order.
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Renders every string leaf.
    pub fn render(&self, state: &VuState, rng: &mut impl Rng) -> Value {
        match self {
            JsonTemplate::Null => Value::Null,
            JsonTemplate::Bool(b) => Value::Bool(*b),
            JsonTemplate::Number(n) => Value::Number(n.clone()),
            JsonTemplate::String(t) => Value::String(t.render(state, rng)),
            JsonTemplate::Array(items) => {
                Value::Array(items.iter().map(|i| i.render(state, rng)).collect())
            }
            JsonTemplate::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(state, rng)))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// Every string template in this value, depth first.
    pub fn templates(&self) -> Vec<&Template> {
        let mut out = Vec::new();
        self.collect_templates(&mut out);
        out
    }

    fn collect_templates<'a>(&'a self, out: &mut Vec<&'a Template>) {
        match self {
            JsonTemplate::String(t) => out.push(t),
            JsonTemplate::Array(items) => items.iter().for_each(|i| i.collect_templates(out)),
            JsonTemplate::Object(entries) => {
                entries.iter().for_each(|(_, v)| v.collect_templates(out))
            }
            _ => {}
        }
    }
}

impl<'de> Deserialize<'de> for JsonTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Located so that string leaves remember their position (for validation).
        let located = Located::<UnlocatedJson>::deserialize(d)?;
        Ok(match located.value.0 {
            JsonTemplate::String(mut t) => {
                t.pos = located.pos;
                JsonTemplate::String(t)
            }
            other => other,
        })
    }
}

/// A JSON template read in place, children going through [`JsonTemplate`]'s
/// own (located) deserialization.
struct UnlocatedJson(JsonTemplate);

impl<'de> Deserialize<'de> for UnlocatedJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonTemplateVisitor).map(UnlocatedJson)
    }
}

struct JsonTemplateVisitor;

impl<'de> Visitor<'de> for JsonTemplateVisitor {
    type Value = JsonTemplate;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-like value")
    }
    fn visit_unit<E>(self) -> Result<JsonTemplate, E> {
        Ok(JsonTemplate::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<JsonTemplate, E> {
        Ok(JsonTemplate::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<JsonTemplate, E> {
        Ok(JsonTemplate::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<JsonTemplate, E> {
        Ok(JsonTemplate::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonTemplate, E> {
        serde_json::Number::from_f64(v)
            .map(JsonTemplate::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a JSON number")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonTemplate, E> {
        Template::compile(v)
            .map(JsonTemplate::String)
            .map_err(E::custom)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<JsonTemplate, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element()? {
            items.push(item);
        }
        Ok(JsonTemplate::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<JsonTemplate, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = a.next_entry::<String, JsonTemplate>()? {
            entries.push((k, v));
        }
        Ok(JsonTemplate::Object(entries))
    }
}

/// True when `expected` is contained in `actual`: objects by their keys
/// (extra keys in `actual` are fine), everything else by equality.
pub fn json_contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        _ => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn state() -> VuState {
        let mut s = VuState::new(7);
        s.seq = 3;
        s.set("username", "user-7");
        s
    }

    #[test]
    fn renders_builtins_and_names() {
        let mut rng = StdRng::seed_from_u64(1);
        let t = Template::compile("{{ username }} #{{seq}} vu={{vu}} {{missing}}!").unwrap();
        assert_eq!(t.render(&state(), &mut rng), "user-7 #3 vu=7 !");
        assert_eq!(t.names().collect::<Vec<_>>(), ["username", "missing"]);
        assert!(Template::compile("plain").unwrap().is_literal());
    }

    #[test]
    fn vu_modulo_renders_and_bad_ones_are_refused() {
        let mut rng = StdRng::seed_from_u64(1);
        let t = Template::compile("room-{{vu % 5}}").unwrap();
        assert_eq!(t.render(&state(), &mut rng), "room-2");
        for bad in ["{{vu % 0}}", "{{seq % 3}}", "{{vu % x}}"] {
            assert!(Template::compile(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_functions_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(2);
        let pick = Template::compile("{{random(a, 'b c', \"d\")}}").unwrap();
        let num = Template::compile("{{randint(5, 7)}}").unwrap();
        for _ in 0..50 {
            let p = pick.render(&state(), &mut rng);
            assert!(["a", "b c", "d"].contains(&p.as_str()), "{p}");
            let n: i64 = num.render(&state(), &mut rng).parse().unwrap();
            assert!((5..=7).contains(&n));
        }
        let u = Template::compile("{{uuid}}")
            .unwrap()
            .render(&state(), &mut rng);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn bad_templates_are_rejected() {
        assert!(Template::compile("{{vu").unwrap_err().contains("unclosed"));
        assert!(Template::compile("{{randint(3,1)}}").is_err());
        assert!(Template::compile("{{frobnicate(1)}}")
            .unwrap_err()
            .contains("unknown template function"));
        assert!(Template::compile("{{a b}}").is_err());
        assert!(Template::compile("{{random()}}").is_err());
    }

    #[test]
    fn json_templates_render_string_leaves() {
        let data = JsonTemplate::Object(vec![
            (
                "message".into(),
                JsonTemplate::String(Template::compile("hi {{seq}}").unwrap()),
            ),
            ("isTyping".into(), JsonTemplate::Bool(true)),
            ("n".into(), JsonTemplate::Number(4.into())),
        ]);
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(
            data.render(&state(), &mut rng),
            serde_json::json!({"message": "hi 3", "isTyping": true, "n": 4})
        );
    }

    #[test]
    fn containment_ignores_extra_keys() {
        let actual = serde_json::json!({"username": "a", "clientId": "x", "n": [1, 2]});
        assert!(json_contains(
            &actual,
            &serde_json::json!({"username": "a"})
        ));
        assert!(!json_contains(
            &actual,
            &serde_json::json!({"username": "b"})
        ));
        assert!(!json_contains(&actual, &serde_json::json!({"n": [1]})));
    }
}
