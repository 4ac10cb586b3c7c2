//! Strict JSON: how every request body is read.
//!
//! serde and `serde_json` are lenient in three ways an API must not be:
//! - a struct is read from an array as well as from an object, at any depth
//!   (`{"items": [[7, 2]]}` would be an order line of product 7 × 2);
//! - a key repeated in one object passes unnoticed wherever the type does not name it: an
//!   unknown field (`{"userId":1,"note":"a","note":"b"}` read by a type without `note`), or
//!   any key of a map or a `Value`, where the last one wins (serde's derive refuses only a
//!   repeated field it knows, as `duplicate field`);
//! - text may hold NUL and other control characters (PostgreSQL cannot store NUL).
//!
//! A body is therefore read in two steps. [`StrictValue`] parses the bytes into a
//! [`Value`], refusing a key repeated in any object. Then [`from_value`] builds the
//! request type through [`Strict`], a deserializer over that value which hands a struct,
//! a map or a sequence only what is written as one, refuses a control character in any
//! text the request reads, and names the path of whatever does not fit
//! (`items[0]: invalid type: …`). Fields the request type does not read are skipped
//! unexamined, as an unknown field should be.
//!
//! One leniency is kept on purpose: a whole number written with a fraction or an
//! exponent (`2.0`, `1e3`) is that integer, as JSON Schema counts it, up to 2⁵³.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Error as _, MapAccess, SeqAccess, Unexpected, Visitor,
};
use serde_json::{Map, Number, Value};

/// A JSON document in which no object repeats a key.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> de::Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor).map(Self)
    }
}

/// Builds a [`Value`] like `serde_json`'s own visitor, refusing repeated keys and reading
/// a whole float within ±2⁵³ as the integer it is.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        const EXACT: f64 = 9_007_199_254_740_992.0; // 2⁵³
        if v.fract() == 0.0 && v.abs() <= EXACT {
            // Whole and within ±2⁵³: the cast is exact.
            return Ok(Value::Number((v as i64).into()));
        }
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!("the key `{key}` appears twice")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Builds `T` from `value`, reading structs, maps and sequences only from what is
/// written as one. The error names the path of the part that does not fit.
///
/// # Errors
/// When `value` does not fit `T`.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(Strict(value)).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}

/// A deserializer over a borrowed [`Value`] that keeps serde's shapes apart: a struct,
/// a tuple or a sequence is read from an array or an object only as the JSON writes it.
/// Text that is read may hold no control character. Scalars are otherwise read by
/// `serde_json`'s own deserializer for `&Value`.
#[derive(Debug, Clone, Copy)]
pub struct Strict<'de>(pub &'de Value);

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Unexpected::Signed(i),
            (_, Some(u), _) => Unexpected::Unsigned(u),
            (_, _, Some(f)) => Unexpected::Float(f),
            _ => Unexpected::Other("number"),
        },
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

/// Refuses text holding a control character (U+0000–U+001F, U+007F–U+009F).
fn checked_text(text: &str) -> Result<(), serde_json::Error> {
    match text.chars().find(|c| c.is_control()) {
        Some(c) => Err(serde_json::Error::custom(format!(
            "text may not hold a control character (found U+{:04X})",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

impl<'de> Strict<'de> {
    fn text(self) -> Result<&'de Value, serde_json::Error> {
        if let Value::String(text) = self.0 {
            checked_text(text)?;
        }
        Ok(self.0)
    }

    fn seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut access = Elements(items.iter());
                let out = visitor.visit_seq(&mut access)?;
                match access.0.len() {
                    0 => Ok(out),
                    _ => Err(serde_json::Error::invalid_length(
                        items.len(),
                        &"fewer elements",
                    )),
                }
            }
            other => Err(serde_json::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    fn map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, serde_json::Error> {
        match self.0 {
            Value::Object(object) => visitor.visit_map(Entries {
                entries: object.iter(),
                value: None,
            }),
            other => Err(serde_json::Error::invalid_type(unexpected(other), &visitor)),
        }
    }
}

macro_rules! scalars_from_serde_json {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Strict<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(_) => self.seq(visitor),
            Value::Object(_) => self.map(visitor),
            _ => self.text()?.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.map(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.map(visitor)
    }

    /// Enums are only unit variants written as strings in this API; `serde_json` reads
    /// them (and refuses the rest).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::String(_) => self.text()?.deserialize_enum(name, variants, visitor),
            other => Err(serde_json::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.text()?.deserialize_str(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.text()?.deserialize_string(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.text()?.deserialize_char(visitor)
    }

    scalars_from_serde_json! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_identifier deserialize_ignored_any
    }
}

struct Elements<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for &mut Elements<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        self.0
            .next()
            .map(|item| seed.deserialize(Strict(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'de> {
    entries: serde_json::map::Iter<'de>,
    value: Option<&'de Value>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(Strict(value)),
            None => Err(serde_json::Error::custom("a value was read before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Line {
        product_id: i64,
        quantity: i64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Order {
        user_id: i64,
        items: Vec<Line>,
        note: Option<String>,
    }

    fn read<T: DeserializeOwned>(json: &str) -> Result<T, String> {
        let StrictValue(value) = serde_json::from_str(json).map_err(|e| e.to_string())?;
        from_value(&value)
    }

    #[test]
    fn objects_read_as_serde_would() {
        let order: Order =
            read(r#"{"userId":1,"items":[{"productId":7,"quantity":2}],"extra":[1]}"#).unwrap();
        assert_eq!(
            order,
            Order {
                user_id: 1,
                items: vec![Line {
                    product_id: 7,
                    quantity: 2
                }],
                note: None
            }
        );
        let order: Order = read(r#"{"userId":1,"items":[],"note":"tab\u00e9"}"#).unwrap();
        assert_eq!(order.note.as_deref(), Some("tabé"));
    }

    #[test]
    fn a_struct_is_never_read_from_an_array_at_any_depth() {
        let err = read::<Order>(r#"{"userId":1,"items":[[7,2]]}"#).unwrap_err();
        assert!(err.starts_with("items[0]: invalid type: sequence"), "{err}");
        let err = read::<Order>(r#"[1,[]]"#).unwrap_err();
        assert!(err.starts_with("invalid type: sequence"), "{err}");
        // ...and serde_json alone would have taken both.
        assert!(serde_json::from_str::<Order>(r#"{"userId":1,"items":[[7,2]]}"#).is_ok());
    }

    /// Keys serde would take silently: an unknown field repeated, a map's key repeated.
    #[test]
    fn a_repeated_key_serde_would_take_is_refused() {
        let unknown = r#"{"userId":1,"items":[],"extra":1,"extra":2}"#;
        assert!(
            serde_json::from_str::<Order>(unknown).is_ok(),
            "serde alone"
        );
        let err = read::<Order>(unknown).unwrap_err();
        assert!(err.contains("the key `extra` appears twice"), "{err}");

        let map = r#"{"a":1,"a":2}"#;
        let lenient: std::collections::HashMap<String, i64> = serde_json::from_str(map).unwrap();
        assert_eq!(lenient["a"], 2, "serde alone: the last wins");
        let err = read::<std::collections::HashMap<String, i64>>(map).unwrap_err();
        assert!(err.contains("the key `a` appears twice"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let err = read::<Order>(r#"{"userId":1,"userId":2,"items":[]}"#).unwrap_err();
        assert!(err.contains("the key `userId` appears twice"), "{err}");
        let err =
            read::<Order>(r#"{"userId":1,"items":[{"productId":1,"quantity":1,"quantity":9}]}"#)
                .unwrap_err();
        assert!(err.contains("the key `quantity` appears twice"), "{err}");
    }

    #[test]
    fn control_characters_are_refused_in_text_that_is_read() {
        for json in [
            r#"{"userId":1,"items":[],"note":"a\u0000b"}"#,
            r#"{"userId":1,"items":[],"note":"line\nbreak"}"#,
            r#"{"userId":1,"items":[],"note":"\u007f"}"#,
            r#"{"userId":1,"items":[],"note":"\u009b"}"#,
        ] {
            let err = read::<Order>(json).unwrap_err();
            assert!(
                err.starts_with("note: text may not hold a control character"),
                "{json}: {err}"
            );
        }
        // A field nobody reads is skipped unexamined.
        let order: Order =
            read(r#"{"userId":1,"items":[],"no\u0001te":"x","deep":[{"x":["\u001b"]}]}"#).unwrap();
        assert_eq!(order.note, None);
    }

    #[test]
    fn a_whole_number_with_a_fraction_is_that_integer() {
        let order: Order =
            read(r#"{"userId":2.0,"items":[{"productId":1e2,"quantity":3.0}]}"#).unwrap();
        assert_eq!((order.user_id, order.items[0].product_id), (2, 100));
        assert!(read::<Order>(r#"{"userId":2.5,"items":[]}"#).is_err());
        assert!(read::<Order>(r#"{"userId":1e300,"items":[]}"#).is_err());
        assert!(read::<Order>(r#"{"userId":9007199254740994.0,"items":[]}"#).is_err());
    }

    #[test]
    fn scalars_keep_serde_json_rules() {
        assert!(read::<Order>(r#"{"userId":"1","items":[]}"#).is_err());
        assert!(read::<Order>(r#"{"userId":18446744073709551615,"items":[]}"#).is_err());
        let err = read::<Order>(r#"{"userId":1,"items":[{"productId":1}]}"#).unwrap_err();
        assert!(
            err.starts_with("items[0]: missing field `quantity`"),
            "{err}"
        );
    }
}
