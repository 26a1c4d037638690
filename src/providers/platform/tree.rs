//! A JSON document that borrows from the response body.
//!
//! Provider pages are parsed once into this tree and read by the adapters'
//! lenient readers ([`super::json`]). It replaces `serde_json::Value`, which
//! allocates every object key, every number (as text, for exact money) and a
//! B-tree node per object: on a backfill that was a fifth of the daemon's
//! CPU. Here keys and strings without escapes borrow the body, whole numbers
//! are stored as integers, other numbers keep their exact text, and objects
//! are a vector of entries.
//!
//! The same rules as `serde_json` hold: the text is validated by
//! `serde_json`'s own parser (same errors, same nesting limit), a key given
//! twice keeps its last value, and a number is never read through `f64`.
//! Unlike `serde_json`'s map, entries keep the document's order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use yoke::{Yoke, Yokeable};

/// One JSON value of a document borrowed from `'a`.
#[derive(Clone, Debug, PartialEq, Yokeable)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number<'a>),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON number, exact: whole numbers that fit 64 bits as integers, any
/// other number as its JSON text.
#[derive(Clone, Debug, PartialEq)]
pub enum Number<'a> {
    Unsigned(u64),
    Signed(i64),
    Text(Cow<'a, str>),
}

/// A JSON object's entries in document order, each key once.
#[derive(Clone, Debug, Default)]
pub struct Object<'a> {
    entries: Vec<(Cow<'a, str>, Json<'a>)>,
    /// Key -> entry, for objects of more than [`LINEAR_KEYS`] entries: a page
    /// with one huge object (a breakdown by thousands of keys, or a hostile
    /// answer within the size cap) must not cost a scan per key. Boxed: a
    /// `HashMap` inline would more than double every `Json` value (32 bytes).
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<Cow<'a, str>, usize>>>,
}

/// Up to this many entries, a key is found by scanning (faster than hashing
/// for the dozen fields of a typical record).
const LINEAR_KEYS: usize = 16;

/// Entries, as the document gives them.
impl PartialEq for Object<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<'a> Json<'a> {
    /// Parses a whole document; trailing text other than whitespace is an error.
    ///
    /// The bytes are checked to be UTF-8 once, up front: parsed from bytes,
    /// `serde_json` checked each string on its own, ~2% of a backfill's CPU
    /// for a page's thousands of short strings.
    pub fn parse(text: &'a [u8]) -> Result<Self, serde_json::Error> {
        let text = std::str::from_utf8(text).map_err(|e| {
            <serde_json::Error as de::Error>::custom(format_args!(
                "the body is not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        serde_json::from_str(text)
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(object) => Some(object),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// A whole number that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Json::Number(_))
    }

    /// A field of an object; `None` for a missing field or a non-object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object().and_then(|object| object.get(key))
    }

    /// The same document, owning all of its text.
    pub fn into_owned(self) -> Json<'static> {
        match self {
            Json::Null => Json::Null,
            Json::Bool(b) => Json::Bool(b),
            Json::Number(n) => Json::Number(n.into_owned()),
            Json::String(text) => Json::String(Cow::Owned(text.into_owned())),
            Json::Array(items) => Json::Array(items.into_iter().map(Json::into_owned).collect()),
            Json::Object(object) => Json::Object(Object::from_unique(
                object
                    .entries
                    .into_iter()
                    .map(|(key, value)| (Cow::Owned(key.into_owned()), value.into_owned()))
                    .collect(),
            )),
        }
    }
}

impl<'a> From<&'a str> for Json<'a> {
    fn from(text: &'a str) -> Self {
        Json::String(Cow::Borrowed(text))
    }
}

/// A `serde_json` value as a document (tests and fixtures build theirs with
/// `serde_json::json!`).
impl From<serde_json::Value> for Json<'static> {
    fn from(value: serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(b),
            // As the parser holds them: `-0` and anything beyond 64 bits stay text.
            serde_json::Value::Number(n) => {
                let text = n.to_string();
                Json::Number(match (text.parse(), text.parse()) {
                    (Ok(n), _) => Number::Unsigned(n),
                    (_, Ok(n)) if text != "-0" => Number::Signed(n),
                    _ => Number::Text(Cow::Owned(text)),
                })
            }
            serde_json::Value::String(text) => Json::String(Cow::Owned(text)),
            serde_json::Value::Array(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            serde_json::Value::Object(map) => Json::Object(Object::from_unique(
                map.into_iter()
                    .map(|(key, value)| (Cow::Owned(key), Json::from(value)))
                    .collect(),
            )),
        }
    }
}

impl Number<'_> {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Unsigned(n) => i64::try_from(*n).ok(),
            Number::Signed(n) => Some(*n),
            Number::Text(_) => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Number::Unsigned(n) => Some(*n),
            Number::Signed(n) => u64::try_from(*n).ok(),
            Number::Text(_) => None,
        }
    }

    /// The number as the nearest `f64` (never for money).
    pub fn as_f64(&self) -> Option<f64> {
        self.to_string().parse().ok()
    }

    fn into_owned(self) -> Number<'static> {
        match self {
            Number::Unsigned(n) => Number::Unsigned(n),
            Number::Signed(n) => Number::Signed(n),
            Number::Text(text) => Number::Text(Cow::Owned(text.into_owned())),
        }
    }
}

/// The number's JSON text (an integer in its canonical form).
impl fmt::Display for Number<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Unsigned(n) => write!(f, "{n}"),
            Number::Signed(n) => write!(f, "{n}"),
            Number::Text(text) => f.write_str(text),
        }
    }
}

impl<'a> Object<'a> {
    /// An object of entries whose keys are already unique.
    fn from_unique(entries: Vec<(Cow<'a, str>, Json<'a>)>) -> Self {
        let index = (entries.len() > LINEAR_KEYS).then(|| Box::new(index_of(&entries)));
        Object { entries, index }
    }

    /// Adds an entry; a key already present takes the new value in its place.
    fn insert(&mut self, key: Cow<'a, str>, value: Json<'a>) {
        match self.position(&key) {
            Some(at) => self.entries[at].1 = value,
            None => self.push_new(key, value),
        }
    }

    /// Adds an entry whose key is known not to be present.
    fn push_new(&mut self, key: Cow<'a, str>, value: Json<'a>) {
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > LINEAR_KEYS {
            self.index = Some(Box::new(index_of(&self.entries)));
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(name, _)| name == key),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.position(key).map(|at| &self.entries[at].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Entries in document order, each key once.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.entries.iter().map(|(name, value)| (name.as_ref(), value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn index_of<'a>(entries: &[(Cow<'a, str>, Json<'a>)]) -> HashMap<Cow<'a, str>, usize> {
    entries
        .iter()
        .enumerate()
        .map(|(at, (key, _))| (key.clone(), at))
        .collect()
}

/// Compact JSON text, as `serde_json::Value` prints (for error messages).
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Number(n) => write!(f, "{n}"),
            Json::String(text) => write_string(f, text),
            Json::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Json::Object(object) => {
                f.write_str("{")?;
                for (i, (key, value)) in object.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_string(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let quoted = serde_json::to_string(text).map_err(|_| fmt::Error)?;
    f.write_str(&quoted)
}

/// A parsed response body together with the bytes it borrows from, so that
/// it can be parsed on one thread and read on another.
pub struct JsonBody(Yoke<Json<'static>, Vec<u8>>);

impl JsonBody {
    pub fn parse(body: Vec<u8>) -> Result<Self, serde_json::Error> {
        Yoke::try_attach_to_cart(body, |text: &[u8]| Json::parse(text)).map(JsonBody)
    }

    pub fn json(&self) -> &Json<'_> {
        self.0.get()
    }
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.json(), f)
    }
}

/// `serde_json` hands a number it cannot hold in 64 bits (any fraction or
/// exponent, with `arbitrary_precision`) to a visitor as a one-entry map
/// under this key, the number's text as its value. `serde_json::Value` reads
/// it the same way; `arbitrary_precision_numbers_keep_their_text` fails if
/// it ever changes.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A string that borrows from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor { fields: 0 })
    }
}

/// One value whose object, if it is one, starts with room for `fields`
/// entries. `serde_json` gives no size hint, and an object grown from empty
/// reallocated and copied a record's dozen entries three times; the elements
/// of an array are mostly records of one shape, so each starts with the
/// previous one's count (exact, so small objects waste nothing).
struct Room {
    fields: usize,
}

impl<'de> DeserializeSeed<'de> for Room {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(JsonVisitor { fields: self.fields })
    }
}

struct JsonVisitor {
    /// Room for this many entries if the value is an object ([`Room`]).
    fields: usize,
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Number::Unsigned(n)))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(Number::Signed(n)))
    }

    /// Not reached with `arbitrary_precision` (fractions come as text); a
    /// float here would have lost digits already, so it is refused.
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Json<'de>, E> {
        Err(E::custom(format!(
            "number {n} arrived as a binary float; its exact text is lost"
        )))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut fields = 0;
        while let Some(item) = seq.next_element_seed(Room { fields })? {
            if let Json::Object(object) = &item {
                fields = object.len();
            }
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut object = Object {
            entries: Vec::with_capacity(self.fields),
            index: None,
        };
        // Which key shapes the object has so far: a key whose shape is new
        // cannot repeat one, so it skips the scan for a duplicate (most keys
        // of a record: the scan was most of building an object).
        let mut shapes = KeyShapes::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if object.is_empty() && key == NUMBER_TOKEN {
                let Text(number) = map.next_value::<Text<'de>>()?;
                return Ok(Json::Number(Number::Text(number)));
            }
            let value = map.next_value_seed(Room { fields: 0 })?;
            if shapes.add(&key) {
                object.push_new(key, value);
            } else {
                // A key given twice keeps its last value, as in serde_json's map.
                object.insert(key, value);
            }
        }
        Ok(Json::Object(object))
    }
}

/// A 64-bit filter of the keys seen in one object, by length and last byte:
/// two equal keys always share a bit, so a key whose bit was clear is new.
#[derive(Default)]
struct KeyShapes(u64);

impl KeyShapes {
    /// Records `key`; true when no key seen before can equal it.
    fn add(&mut self, key: &str) -> bool {
        let last = key.as_bytes().last().copied().unwrap_or(0) as usize;
        let bit = 1u64 << ((key.len().wrapping_mul(7) ^ last) % 64);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_precision_numbers_keep_their_text() {
        let doc =
            Json::parse(br#"{"a": 0.8958740000000000123, "b": 1e-3, "c": -5, "d": 18446744073709551616, "e": -0}"#)
                .unwrap();
        let text = |key: &str| doc.get(key).unwrap().to_string();
        assert_eq!(text("a"), "0.8958740000000000123");
        assert_eq!(text("b"), "1e-3");
        assert_eq!(doc.get("c"), Some(&Json::Number(Number::Signed(-5))));
        assert_eq!(text("d"), "18446744073709551616", "beyond 64 bits stays text");
        assert_eq!(text("e"), "-0");
        assert_eq!(doc.get("c").unwrap().as_i64(), Some(-5));
        assert_eq!(doc.get("a").unwrap().as_i64(), None);
    }

    #[test]
    fn strings_borrow_unless_escaped_and_keys_repeat_as_the_last() {
        let body = br#"{"k": "plain", "e": "tab\tquote\"", "k": "again"}"#;
        let doc = Json::parse(body).unwrap();
        let object = doc.as_object().unwrap();
        assert_eq!(object.len(), 2, "a repeated key is one entry");
        assert_eq!(doc.get("k").and_then(Json::as_str), Some("again"));
        assert!(matches!(
            object.iter().next(),
            Some(("k", Json::String(Cow::Borrowed("again"))))
        ));
        assert_eq!(doc.get("e").and_then(Json::as_str), Some("tab\tquote\""));
        assert!(matches!(doc.get("e"), Some(Json::String(Cow::Owned(_)))));
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_naming_where() {
        let err = Json::parse(b"{\"k\": \"caf\xe9\"}").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert!(err.to_string().contains("offset 10"), "{err}");
        assert_eq!(
            Json::parse("{\"k\": \"café\"}".as_bytes())
                .unwrap()
                .get("k")
                .and_then(Json::as_str),
            Some("café")
        );
    }

    #[test]
    fn keys_of_one_shape_are_told_apart_and_repeats_still_replace() {
        // "ab", "cb" and "xb" share a length and a last byte (one filter bit).
        let doc = Json::parse(br#"{"ab": 1, "cb": 2, "xb": 3, "cb": 4, "z": 5, "ab": 6}"#).unwrap();
        let entries: Vec<(&str, Option<i64>)> = doc
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| (key, value.as_i64()))
            .collect();
        assert_eq!(
            entries,
            [("ab", Some(6)), ("cb", Some(4)), ("xb", Some(3)), ("z", Some(5))]
        );
    }

    #[test]
    fn a_large_object_finds_and_replaces_keys_through_its_index() {
        let mut text = String::from("{");
        for i in 0..5_000 {
            text.push_str(&format!("\"k{i}\": {i}, "));
        }
        text.push_str("\"k7\": \"again\", \"last\": null}");
        let doc = Json::parse(text.as_bytes()).unwrap();
        let object = doc.as_object().unwrap();
        assert!(object.index.is_some());
        assert_eq!(object.len(), 5_001);
        assert_eq!(doc.get("k7").and_then(Json::as_str), Some("again"));
        assert_eq!(doc.get("k4999").and_then(Json::as_i64), Some(4_999));
        assert_eq!(
            object.iter().nth(7).map(|(key, _)| key),
            Some("k7"),
            "replaced in place"
        );
        assert_eq!(doc.get("last"), Some(&Json::Null));
        assert_eq!(doc.get("k5000"), None);
        let owned = doc.clone().into_owned();
        assert_eq!(owned.get("k4999").and_then(Json::as_i64), Some(4_999));
        assert_eq!(owned, doc);
    }

    #[test]
    fn prints_like_serde_json() {
        let text = r#"{"a":[1,-2,3.50,null,true,"x\"y"],"b":{}}"#;
        let doc = Json::parse(text.as_bytes()).unwrap();
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc.to_string(), value.to_string());
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for bad in [&b"{\"a\": 1"[..], b"[1,]", b"{} x", b"", b"nul", b"\"\\x\""] {
            assert!(Json::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Json::parse(deep.as_bytes()).is_err(), "the nesting limit holds");
    }

    /// Any JSON text: scalars with escapes, non-ASCII, whole and exact
    /// numbers of every shape, nested arrays and objects.
    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (any::<i64>(), 0u32..30).prop_map(|(n, scale)| rust_decimal::Decimal::new(n, scale.min(28)).to_string()),
            (-999i32..999, 0u32..999, -40i32..40).prop_map(|(a, b, e)| format!("{a}.{b}e{e}")),
            Just("123456789012345678901234567890".to_string()),
        ]
        .prop_map(|text| serde_json::from_str::<serde_json::Value>(&text).unwrap());
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            number,
            "[a-z\\\"\n\t\u{e9}\u{1F600} ]{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z_\"]{0,8}", inner, 0..24)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// Every key of every object reads its own value through `get`.
    fn every_key_is_found(value: &serde_json::Value, doc: &Json) -> bool {
        match value {
            serde_json::Value::Object(map) => map.iter().all(|(key, inner)| {
                doc.get(key)
                    .is_some_and(|found| *found == Json::from(inner.clone()) && every_key_is_found(inner, found))
            }),
            serde_json::Value::Array(items) => items
                .iter()
                .zip(doc.as_array().unwrap_or(&[]))
                .all(|(v, d)| every_key_is_found(v, d)),
            _ => true,
        }
    }

    proptest::proptest! {
        /// The tree reads exactly what `serde_json::Value` reads (keys in the
        /// order `serde_json` writes them: sorted), and prints the same text.
        #[test]
        fn reads_what_serde_json_reads(value in any_json()) {
            let text = value.to_string();
            let doc = Json::parse(text.as_bytes()).unwrap();
            proptest::prop_assert_eq!(doc.to_string(), text.clone());
            proptest::prop_assert!(every_key_is_found(&value, &doc));
            proptest::prop_assert_eq!(doc.into_owned(), Json::from(value));
        }
    }

    #[test]
    fn a_body_is_read_where_it_was_not_parsed() {
        let body = JsonBody::parse(br#"{"data": [{"n": 2}]}"#.to_vec()).unwrap();
        let read = std::thread::spawn(move || body.json().get("data").and_then(Json::as_array).map(<[Json]>::len))
            .join()
            .unwrap();
        assert_eq!(read, Some(1));
        let owned: Json<'static> = Json::parse(b"{\"a\": \"b\"}").unwrap().into_owned();
        assert_eq!(owned.get("a").and_then(Json::as_str), Some("b"));
        let text = r#"{"l":[null,false],"n":-3,"s":"t","u":7,"x":1.50}"#;
        let from_value = Json::from(serde_json::from_str::<serde_json::Value>(text).unwrap());
        assert_eq!(from_value, Json::parse(text.as_bytes()).unwrap().into_owned());
    }
}
