//! A YAML tree whose every node knows where it came from.
//!
//! The scenario text is first parsed (by `serde-saphyr`) into this tree, `--set`
//! overrides are applied to it, and only then is it turned into the typed model
//! through [`NodeDeserializer`]. Every error raised while typing a node (unknown
//! field, bad duration, bad template…) is tagged with that node's position, so
//! messages point at the offending value even for values coming from `--set`.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde::Deserialize;
use serde_saphyr::{MessageFormatter, Spanned};

/// Where a node starts: 1-based line and column in one source.
///
/// `source` indexes the list of origins kept by the loader: 0 is the scenario
/// file, `i > 0` is the value of the `i`-th `--set` override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
    pub source: u16,
}

impl Pos {
    /// Where serde-saphyr located a node, in source 0.
    pub(crate) fn from_location(loc: serde_saphyr::Location) -> Self {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            source: 0,
        }
    }
}

/// A mapping key and its position.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Pos,
}

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

/// The content of a [`Node`].
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Kind {
    fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

/// An error while building or typing the tree; `pos` is filled by the
/// innermost node that saw the error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub message: String,
    pub pos: Option<Pos>,
}

impl DeError {
    pub(crate) fn at(message: impl Into<String>, pos: Pos) -> Self {
        DeError {
            message: message.into(),
            pos: Some(pos),
        }
    }

    fn or_at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            pos: None,
        }
    }
}

/// Parses YAML text into a tree whose positions belong to `source`.
pub(crate) fn parse(text: &str, source: u16) -> Result<Node, DeError> {
    let parsed: Result<Spanned<RawNode>, _> = serde_saphyr::from_str(text);
    match parsed {
        Ok(root) => {
            let mut node = Node {
                pos: Pos::from_location(root.referenced),
                kind: root.value.0,
            };
            node.set_source(source);
            Ok(node)
        }
        Err(e) => {
            let (pos, message) = saphyr_error(&e, source);
            Err(DeError::at(message, pos))
        }
    }
}

/// A serde-saphyr error's position in `source` (line 1, column 1 when it
/// names none) and its message: how every YAML file chorus reads (scenarios,
/// `--set` values, protocol models, conformance cases) places its syntax and
/// typing errors.
pub(crate) fn saphyr_error(e: &serde_saphyr::Error, source: u16) -> (Pos, String) {
    let mut pos = e.location().map(Pos::from_location).unwrap_or(Pos {
        line: 1,
        column: 1,
        source,
    });
    pos.source = source;
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(e)
        .into_owned();
    (pos, message)
}

/// The serde-saphyr side: a node content whose children carry spans.
struct RawNode(Kind);

struct RawKey(String);

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor).map(RawNode)
    }
}

impl<'de> Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(RawVisitor)? {
            Kind::Str(s) => Ok(RawKey(s)),
            Kind::Int(i) => Ok(RawKey(i.to_string())),
            Kind::Bool(b) => Ok(RawKey(b.to_string())),
            Kind::Float(f) => Ok(RawKey(f.to_string())),
            other => Err(de::Error::custom(format!(
                "mapping keys must be plain scalars, found {}",
                other.describe()
            ))),
        }
    }
}

struct RawVisitor;

fn spanned_node(s: Spanned<RawNode>) -> Node {
    Node {
        pos: Pos::from_location(s.referenced),
        kind: s.value.0,
    }
}

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        i64::try_from(v)
            .map(Kind::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Spanned<RawNode>>()? {
            items.push(spanned_node(item));
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = a.next_key::<Spanned<RawKey>>()? {
            let value = a.next_value::<Spanned<RawNode>>()?;
            entries.push((
                Key {
                    name: key.value.0,
                    pos: Pos::from_location(key.referenced),
                },
                spanned_node(value),
            ));
        }
        Ok(Kind::Map(entries))
    }
}

impl Node {
    fn set_source(&mut self, source: u16) {
        self.pos.source = source;
        match &mut self.kind {
            Kind::Seq(items) => items.iter_mut().for_each(|n| n.set_source(source)),
            Kind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.pos.source = source;
                v.set_source(source);
            }),
            _ => {}
        }
    }

    /// Replaces (or creates) the node at a dotted path; numeric segments index
    /// lists, and the index one past the end appends.
    pub(crate) fn set_path(&mut self, path: &[&str], value: Node) -> Result<(), String> {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return Ok(());
        };
        if matches!(self.kind, Kind::Null) {
            self.kind = Kind::Map(Vec::new());
        }
        let pos = value.pos;
        match &mut self.kind {
            Kind::Map(entries) => {
                let child = match entries.iter().position(|(k, _)| k.name == *first) {
                    Some(i) => &mut entries[i].1,
                    None => {
                        entries.push((
                            Key {
                                name: (*first).to_owned(),
                                pos,
                            },
                            Node {
                                pos,
                                kind: Kind::Null,
                            },
                        ));
                        &mut entries.last_mut().expect("just pushed").1
                    }
                };
                child.set_path(rest, value)
            }
            Kind::Seq(items) => {
                let index: usize = first
                    .parse()
                    .map_err(|_| format!("`{first}` is not a list index"))?;
                if index == items.len() {
                    items.push(Node {
                        pos,
                        kind: Kind::Null,
                    });
                }
                let len = items.len();
                let child = items
                    .get_mut(index)
                    .ok_or_else(|| format!("index {index} is out of range (the list has {len})"))?;
                child.set_path(rest, value)
            }
            other => Err(format!(
                "`{first}` cannot be set inside {}",
                other.describe()
            )),
        }
    }

    /// The node at a path of map keys and list indexes, if any.
    pub(crate) fn get(&self, path: &[PathSeg<'_>]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        let child = match (&self.kind, first) {
            (Kind::Map(entries), PathSeg::Key(k)) => {
                entries.iter().find(|(key, _)| key.name == *k).map(|e| &e.1)
            }
            (Kind::Seq(items), PathSeg::Index(i)) => items.get(*i),
            _ => None,
        }?;
        child.get(rest)
    }

    /// The position of the node at `path`, or of its deepest existing ancestor.
    pub(crate) fn pos_of(&self, path: &[PathSeg<'_>]) -> Pos {
        (0..=path.len())
            .rev()
            .find_map(|n| self.get(&path[..n]))
            .map_or(self.pos, |n| n.pos)
    }
}

/// One step of a path into the tree.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathSeg<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A list index.
    Index(usize),
}

/// Name of the pseudo-struct through which [`Located`] asks for a position.
const LOCATED_MARKER: &str = "$chorus::scenario::Located";
const LOCATED_FIELDS: &[&str] = &["line", "column", "source", "value"];

/// A value together with the position of the node it was read from; only
/// [`NodeDeserializer`] knows how to produce it.
pub(crate) struct Located<T> {
    pub pos: Pos,
    pub value: T,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Located<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a located value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Located<T>, A::Error> {
                let line = a.next_entry::<de::IgnoredAny, u32>()?.map_or(0, |e| e.1);
                let column = a.next_entry::<de::IgnoredAny, u32>()?.map_or(0, |e| e.1);
                let source = a.next_entry::<de::IgnoredAny, u16>()?.map_or(0, |e| e.1);
                let Some((_, value)) = a.next_entry::<de::IgnoredAny, T>()? else {
                    return Err(de::Error::missing_field("value"));
                };
                Ok(Located {
                    pos: Pos {
                        line,
                        column,
                        source,
                    },
                    value,
                })
            }
        }
        d.deserialize_struct(LOCATED_MARKER, LOCATED_FIELDS, V(std::marker::PhantomData))
    }
}

/// A serde deserializer over one [`Node`].
pub(crate) struct NodeDeserializer<'a>(pub &'a Node);

impl<'de> NodeDeserializer<'de> {
    fn fail(&self, expected: &str) -> DeError {
        DeError::at(
            format!("expected {expected}, found {}", self.0.kind.describe()),
            self.0.pos,
        )
    }
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0;
        let result = match &node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_borrowed_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqNodes(items.iter())),
            Kind::Map(entries) => visitor.visit_map(MapNodes {
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.or_at(node.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let pos = self.0.pos;
        match self.0.kind {
            Kind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.or_at(pos))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let pos = self.0.pos;
        visitor.visit_newtype_struct(self).map_err(|e| e.or_at(pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == LOCATED_MARKER {
            return visitor.visit_map(LocatedAccess {
                node: self.0,
                step: 0,
            });
        }
        if !matches!(self.0.kind, Kind::Map(_)) {
            let what = match fields {
                [] => "a mapping".to_owned(),
                _ => format!("a mapping with {}", fields.join(", ")),
            };
            return Err(self.fail(&what));
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let node = self.0;
        let access = match &node.kind {
            Kind::Str(s) => VariantNode {
                name: s,
                pos: node.pos,
                value: None,
            },
            Kind::Map(entries) if entries.len() == 1 => VariantNode {
                name: &entries[0].0.name,
                pos: entries[0].0.pos,
                value: Some(&entries[0].1),
            },
            _ => return Err(self.fail(&format!("one of {}", variants.join(", ")))),
        };
        visitor.visit_enum(access).map_err(|e| e.or_at(node.pos))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }
}

struct SeqNodes<'a>(std::slice::Iter<'a, Node>);

impl<'de> SeqAccess<'de> for SeqNodes<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        self.0
            .next()
            .map(|n| seed.deserialize(NodeDeserializer(n)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapNodes<'a> {
    entries: std::slice::Iter<'a, (Key, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for MapNodes<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(KeyDeserializer(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .expect("serde calls next_value after next_key");
        seed.deserialize(NodeDeserializer(node))
    }
}

/// Deserializes a mapping key (or an enum variant name) as a string.
struct KeyDeserializer<'a>(&'a Key);

impl<'de> Deserializer<'de> for KeyDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor
            .visit_borrowed_str::<DeError>(&self.0.name)
            .map_err(|e| e.or_at(self.0.pos))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// Feeds the fields of the [`Located`] pseudo-struct.
struct LocatedAccess<'a> {
    node: &'a Node,
    step: usize,
}

impl<'de> MapAccess<'de> for LocatedAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match LOCATED_FIELDS.get(self.step) {
            Some(name) => seed.deserialize(name.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let pos = self.node.pos;
        self.step += 1;
        match self.step {
            1 => seed.deserialize(pos.line.into_deserializer()),
            2 => seed.deserialize(pos.column.into_deserializer()),
            3 => seed.deserialize(pos.source.into_deserializer()),
            _ => seed.deserialize(NodeDeserializer(self.node)),
        }
    }
}

/// An enum variant: `name` alone (a plain string) or `name: value`.
struct VariantNode<'a> {
    name: &'a str,
    pos: Pos,
    value: Option<&'a Node>,
}

impl<'de> EnumAccess<'de> for VariantNode<'de> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let name: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(self.name);
        let variant = seed.deserialize(name).map_err(|e| e.or_at(self.pos))?;
        Ok((variant, self))
    }
}

impl<'de> VariantNode<'de> {
    fn value(&self) -> Result<&'de Node, DeError> {
        self.value.ok_or_else(|| {
            DeError::at(
                format!("`{}` needs a value (`{}: …`)", self.name, self.name),
                self.pos,
            )
        })
    }
}

impl<'de> VariantAccess<'de> for VariantNode<'de> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None
            | Some(Node {
                kind: Kind::Null, ..
            }) => Ok(()),
            Some(node) => Err(DeError::at(
                format!("`{}` takes no value", self.name),
                node.pos,
            )),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(NodeDeserializer(self.value()?))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        NodeDeserializer(self.value()?).deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        NodeDeserializer(self.value()?).deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_names(node: &Node) -> Vec<&str> {
        match &node.kind {
            Kind::Map(entries) => entries.iter().map(|(k, _)| k.name.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn parse_keeps_positions_and_scalar_types() {
        let root = parse("a: 1\nb:\n  - x\n  - \"2\"\n  - 1.5\n", 0).unwrap();
        assert_eq!(key_names(&root), ["a", "b"]);
        let item = root
            .get(&[PathSeg::Key("b"), PathSeg::Index(1)])
            .expect("b.1 exists");
        assert!(matches!(&item.kind, Kind::Str(s) if s == "2"));
        assert_eq!((item.pos.line, item.pos.column), (4, 5));
        let a = root.get(&[PathSeg::Key("a")]).unwrap();
        assert!(matches!(a.kind, Kind::Int(1)));
    }

    #[test]
    fn syntax_errors_carry_position() {
        let err = parse("a: [1\n", 3).unwrap_err();
        assert_eq!(
            err.pos.map(|p| (p.line, p.column, p.source)),
            Some((1, 4, 3))
        );
        assert!(err.message.contains("bracket"), "{}", err.message);
    }

    #[test]
    fn set_path_replaces_creates_and_appends() {
        let mut root = parse("a:\n  - 1\n", 0).unwrap();
        let v = |t: &str| parse(t, 1).unwrap();
        root.set_path(&["a", "0"], v("7")).unwrap();
        root.set_path(&["a", "1"], v("8")).unwrap();
        root.set_path(&["b", "c"], v("x")).unwrap();
        let seq = root.get(&[PathSeg::Key("a")]).unwrap();
        assert!(matches!(&seq.kind, Kind::Seq(items) if items.len() == 2));
        let c = root.get(&[PathSeg::Key("b"), PathSeg::Key("c")]).unwrap();
        assert!(matches!(&c.kind, Kind::Str(s) if s == "x"));
        assert_eq!(c.pos.source, 1);
        assert!(root.set_path(&["a", "5"], v("1")).is_err());
        assert!(root.set_path(&["b", "c", "d"], v("1")).is_err());
    }
}
