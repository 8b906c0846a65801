//! Strict JSON for untrusted input (token headers and payloads, JWKS, discovery documents).
//!
//! `serde_json::Value` silently keeps the last of two members with the same name and allows 128
//! levels of nesting. A token whose payload says `"sub":"alice","sub":"admin"` must not mean one
//! thing to us and another to the upstream, so untrusted documents are read through a seed that
//! refuses duplicate member names and caps nesting depth while it builds the value.

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Nesting allowed in token headers, payloads and JWKS documents.
pub const MAX_DEPTH: usize = 16;

/// Parses `bytes` as one JSON value, refusing duplicate member names, invalid UTF-8,
/// trailing data and nesting deeper than `max_depth`.
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed {
        depth_left: max_depth,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Parses `bytes` strictly and requires a JSON object at the top.
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, String> {
    match parse_strict(bytes, max_depth)? {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".to_string()),
    }
}

struct StrictSeed {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictSeed {
    fn nested<E: serde::de::Error>(&self) -> Result<StrictSeed, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(StrictSeed { depth_left }),
            None => Err(E::custom("JSON nested too deeply")),
        }
    }
}

impl<'de> Visitor<'de> for StrictSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
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
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
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
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested()?)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate member \"{key}\"")));
            }
            let value = map.next_value_seed(self.nested()?)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_objects() {
        let v = parse_object(br#"{"a":1,"b":[true,null,"x"],"c":{"d":1.5}}"#, 4).unwrap();
        assert_eq!(v["b"][2], "x");
    }

    #[test]
    fn refuses_duplicate_members_at_any_depth() {
        assert!(parse_strict(br#"{"sub":"a","sub":"b"}"#, 4)
            .unwrap_err()
            .contains("duplicate"));
        assert!(parse_strict(br#"{"x":{"k":1,"k":2}}"#, 4).is_err());
    }

    #[test]
    fn caps_depth() {
        let deep = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert!(parse_strict(deep.as_bytes(), 16).is_err());
        let ok = format!("{}{}", "[".repeat(10), "]".repeat(10));
        assert!(parse_strict(ok.as_bytes(), 16).is_ok());
    }

    #[test]
    fn refuses_invalid_utf8_trailing_data_and_non_objects() {
        assert!(parse_strict(b"{\"a\":\"\xff\"}", 4).is_err());
        assert!(parse_strict(br#"{"a":1} x"#, 4).is_err());
        assert!(parse_object(b"[1]", 4).is_err());
    }
}
