//! Field deserializers that never fail: a field of an unexpected JSON type reads as absent (or
//! its default) instead of failing the whole item, and ids, timestamps and codes are read from
//! strings and numbers alike. WhatsApp has sent both for several fields over the versions, and
//! one odd field must not cost the notifications of a whole webhook.
//!
//! Used with `#[serde(default, deserialize_with = "lenient::...")]`; serialization is unchanged.

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Any type: what does not parse is `None`.
pub fn opt<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

/// Any type: what does not parse is the default.
pub fn or_default<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(opt(d)?.unwrap_or_default())
}

fn text_of(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What a field held, when it is a scalar: read straight from the deserializer, without
/// building a `Value` first (this runs for every field of every item at ingest, where those
/// allocations cost more than the rest of the parse). Objects and arrays are skipped.
enum Scalar {
    Str(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Other,
}

impl Scalar {
    fn text(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Uint(u) => Some(u.to_string()),
            // As serde_json writes a number, so that a field reads the same either way.
            Scalar::Float(f) => serde_json::Number::from_f64(f).map(|n| n.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Other => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Uint(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                Scalar::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A string, or a number or boolean as its text.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(d)?.text())
}

/// A string, or a number or boolean as its text; anything else is empty.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_string(d)?.unwrap_or_default())
}

/// An integer, or a string holding one.
pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Int(i) => Some(i),
        // Above i64's range: the nearest, as a float of that size would give.
        Scalar::Uint(u) => Some(i64::try_from(u).unwrap_or(i64::MAX)),
        Scalar::Float(f) => Some(f).filter(|f| f.fract() == 0.0).map(|f| f as i64),
        Scalar::Str(s) => s.trim().parse().ok(),
        Scalar::Bool(_) | Scalar::Other => None,
    })
}

/// An integer, or a string holding one; anything else is 0.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(opt_int(d)?.unwrap_or_default())
}

/// A number, or a string holding one (not NaN or infinite).
pub fn opt_float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Int(i) => Some(i as f64),
        Scalar::Uint(u) => Some(u as f64),
        Scalar::Float(f) => Some(f),
        Scalar::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        Scalar::Bool(_) | Scalar::Other => None,
    })
}

/// A boolean, or `"true"` / `"false"`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Bool(b) => Some(b),
        Scalar::Str(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn items<T: DeserializeOwned>(v: Value) -> Option<Vec<T>> {
    match v {
        Value::Array(a) => Some(
            a.into_iter()
                .filter_map(|i| serde_json::from_value(i).ok())
                .collect(),
        ),
        _ => None,
    }
}

/// An array, keeping the elements that parse; anything else is `None`.
pub fn opt_vec<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(items(Value::deserialize(d)?))
}

/// An array, keeping the elements that parse; anything else is empty.
pub fn vec<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(opt_vec(d)?.unwrap_or_default())
}

/// An array of strings, numbers read as their text; anything else is `None`.
pub fn opt_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(a) => Some(a.into_iter().filter_map(text_of).collect()),
        _ => None,
    })
}
