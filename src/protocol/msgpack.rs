//! MessagePack as `@socket.io/redis-adapter` writes it (the npm `notepack.io` codec), and its
//! conversions to and from the JSON the rest of Hubbub carries. Pure functions, no I/O.
//!
//! JSON goes to MessagePack with its key order kept (JSON text is transcoded, not parsed into
//! a tree); Socket.IO binary placeholders become MessagePack `bin`. Back from MessagePack,
//! `bin` becomes a placeholder and an attachment, and notepack's `undefined` (ext type 0),
//! other extensions and non-finite floats become `null`, so whatever another node sends turns
//! into valid JSON.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::Value;

use super::socketio::{placeholder, placeholder_num};

/// Nesting deeper than this is refused when decoding (a hostile frame cannot exhaust the
/// stack).
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not a value of the adapter's protocol.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MsgpackError(pub String);

/// Decodes one MessagePack value that must fill `bytes` exactly.
pub fn decode(bytes: &[u8]) -> Result<Mp, MsgpackError> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|e| MsgpackError(format!("not MessagePack: {e}")))?;
    if !rd.is_empty() {
        return Err(MsgpackError(format!(
            "{} bytes after the MessagePack value",
            rd.len()
        )));
    }
    Ok(v)
}

/// Encodes a value.
pub fn encode(v: &Mp) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Transcodes JSON text into a MessagePack value, keys in their order.
pub fn from_json_text(json: &[u8]) -> Result<Mp, MsgpackError> {
    let mut buf = Vec::with_capacity(json.len());
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut ser = rmp_serde::Serializer::new(&mut buf);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| MsgpackError(e.to_string()))?;
    decode(&buf)
}

/// A JSON value as MessagePack, with placeholders replaced by their attachments as `bin`.
pub fn from_json(v: &Value, bin: &[Bytes]) -> Mp {
    if let Some(b) = placeholder_num(v).and_then(|n| bin.get(n)) {
        return Mp::Binary(b.to_vec());
    }
    match v {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Mp::from(u),
            (_, Some(i)) => Mp::from(i),
            _ => Mp::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(a) => Mp::Array(a.iter().map(|x| from_json(x, bin)).collect()),
        Value::Object(o) => Mp::Map(
            o.iter()
                .map(|(k, x)| (Mp::from(k.as_str()), from_json(x, bin)))
                .collect(),
        ),
    }
}

/// A MessagePack value as JSON text appended to `out`; `bin` values become placeholders
/// pointing at attachments pushed to `attachments`.
pub fn write_json(v: &Mp, attachments: &mut Vec<Bytes>, out: &mut Vec<u8>) {
    match v {
        Mp::Nil | Mp::Ext(..) => out.extend_from_slice(b"null"),
        Mp::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Mp::Integer(i) => {
            if let Some(u) = i.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(n) = i.as_i64() {
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
        Mp::F32(f) => write_float(f64::from(*f), out),
        Mp::F64(f) => write_float(*f, out),
        Mp::String(s) => write_str(&String::from_utf8_lossy(s.as_bytes()), out),
        Mp::Binary(b) => {
            let n = attachments.len();
            attachments.push(Bytes::copy_from_slice(b));
            let _ = serde_json::to_writer(&mut *out, &placeholder(n));
        }
        Mp::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(x, attachments, out);
            }
            out.push(b']');
        }
        Mp::Map(m) => {
            out.push(b'{');
            let mut first = true;
            for (k, x) in m {
                // notepack writes `undefined` members; JSON.stringify would leave them out.
                if matches!(x, Mp::Ext(0, _)) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                match k {
                    Mp::String(s) => write_str(&String::from_utf8_lossy(s.as_bytes()), out),
                    other => {
                        let mut key = Vec::new();
                        write_json(other, &mut Vec::new(), &mut key);
                        write_str(&String::from_utf8_lossy(&key), out);
                    }
                }
                out.push(b':');
                write_json(x, attachments, out);
            }
            out.push(b'}');
        }
    }
}

/// A MessagePack value as a JSON value (see [`write_json`]).
pub fn to_json(v: &Mp, attachments: &mut Vec<Bytes>) -> Value {
    let mut out = Vec::new();
    write_json(v, attachments, &mut out);
    serde_json::from_slice(&out).unwrap_or_default()
}

fn write_float(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &f);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The member `key` of a map.
pub fn get<'a>(v: &'a Mp, key: &str) -> Option<&'a Mp> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, x)| x)
        .filter(|x| !x.is_nil() && !matches!(x, Mp::Ext(0, _)))
}

/// The string member `key` of a map.
pub fn get_str<'a>(v: &'a Mp, key: &str) -> Option<&'a str> {
    get(v, key)?.as_str()
}

/// The unsigned integer member `key` of a map (a whole float too: JavaScript numbers).
pub fn get_u64(v: &Mp, key: &str) -> Option<u64> {
    as_u64(get(v, key)?)
}

/// A non-negative whole number, whether written as an integer or a float.
pub fn as_u64(v: &Mp) -> Option<u64> {
    match v {
        Mp::F64(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19 => Some(*f as u64),
        Mp::F32(f) if f.fract() == 0.0 && *f >= 0.0 => Some(*f as u64),
        other => other.as_u64(),
    }
}

/// A room name as socket.io lets it be (any string or number), as text.
pub fn as_name(v: &Mp) -> Option<String> {
    match v {
        Mp::String(s) => s.as_str().map(str::to_string),
        Mp::Integer(i) => Some(i.to_string()),
        Mp::F64(f) if f.is_finite() => Some(f.to_string()),
        _ => None,
    }
}

/// A list of names (rooms), whatever was not a name left out.
pub fn names(v: Option<&Mp>) -> Vec<String> {
    v.and_then(Mp::as_array)
        .map(|a| a.iter().filter_map(as_name).collect())
        .unwrap_or_default()
}

/// A map built from `(key, value)` pairs.
pub fn map<const N: usize>(pairs: [(&str, Mp); N]) -> Mp {
    Mp::Map(pairs.into_iter().map(|(k, v)| (Mp::from(k), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_keeps_key_order_and_types() {
        let v = from_json_text(br#"{"z":1,"a":[true,null,-3,1.5,"x"],"m":{}}"#).unwrap();
        let mut out = Vec::new();
        write_json(&v, &mut Vec::new(), &mut out);
        assert_eq!(out, br#"{"z":1,"a":[true,null,-3,1.5,"x"],"m":{}}"#);
    }

    #[test]
    fn binary_becomes_placeholders_and_back() {
        let bin = vec![Bytes::from_static(b"\x00\x01")];
        let v = serde_json::json!({"file": {"_placeholder": true, "num": 0}, "n": 2});
        let mp = from_json(&v, &bin);
        assert_eq!(get(&mp, "file"), Some(&Mp::Binary(vec![0, 1])));
        let mut att = Vec::new();
        let back = to_json(&mp, &mut att);
        assert_eq!(back, v);
        assert_eq!(att, bin);
    }

    #[test]
    fn undefined_and_odd_values_become_json() {
        // notepack's undefined is fixext1 type 0: {a: undefined, b: NaN, 1: "k"}
        let mp = Mp::Map(vec![
            (Mp::from("a"), Mp::Ext(0, vec![0])),
            (Mp::from("b"), Mp::F64(f64::NAN)),
            (Mp::from(1), Mp::from("k")),
        ]);
        let mut out = Vec::new();
        write_json(&mp, &mut Vec::new(), &mut out);
        assert_eq!(out, br#"{"b":null,"1":"k"}"#);
        assert!(get(&mp, "a").is_none());
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(decode(&[0xa5, b'a']).is_err(), "truncated string");
        assert!(decode(&[0x92, 0x01]).is_err(), "truncated array");
        assert!(decode(&[0x01, 0x02]).is_err(), "trailing bytes");
        let deep: Vec<u8> = std::iter::repeat_n(0x91u8, 10_000).collect();
        assert!(decode(&deep).is_err(), "too deep");
        assert!(from_json_text(b"{\"a\":").is_err());
    }
}
