//! A small JSON object writer for server frames, and the check that lets client JSON be
//! forwarded as the bytes it came in.
//!
//! Server frames have a fixed shape, so they are written field by field into one buffer
//! rather than built as a `serde_json::Value` first: one allocation per encoded frame,
//! strings escaped by `serde_json`, pre-validated raw JSON spliced in unchanged.
//!
//! [`check`] walks a JSON text without building anything. It is stricter than a syntax
//! check: a number whose magnitude no double can hold (`1e400`) is refused, because every
//! reader that turns the text into values (`serde_json::Value`, a Socket.IO client's
//! `JSON.parse` becoming `Infinity`) would lose it.

use std::io::Write;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Writes `{"k":v,...}` into a growing buffer.
#[derive(Debug)]
pub struct ObjectWriter {
    buf: Vec<u8>,
    first: bool,
}

impl ObjectWriter {
    /// Starts an object, reserving `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(2));
        buf.push(b'{');
        Self { buf, first: true }
    }

    /// Starts an object at the end of `buf` (a frame that carries the object inside).
    pub fn within(mut buf: Vec<u8>) -> Self {
        buf.push(b'{');
        Self { buf, first: true }
    }

    /// Closes the object and gives back the whole buffer.
    pub fn finish_vec(mut self) -> Vec<u8> {
        self.buf.push(b'}');
        self.buf
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.string(key);
        self.buf.push(b':');
    }

    fn string(&mut self, s: &str) {
        // Writing a &str into a Vec cannot fail.
        serde_json::to_writer(&mut self.buf, s).expect("writing a string to a Vec");
    }

    /// Adds a string field.
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.string(value);
        self
    }

    /// Adds an unsigned integer field.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        // Formatting into a Vec cannot fail.
        let _ = write!(self.buf, "{value}");
        self
    }

    /// Adds a boolean field.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// Adds a field whose value is already valid JSON text.
    pub fn raw(&mut self, key: &str, json: &[u8]) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(json);
        self
    }

    /// Adds the members of another object, given as the JSON text between its braces
    /// (`"a":1,"b":2`; empty for none).
    pub fn splice(&mut self, members: &[u8]) -> &mut Self {
        if members.iter().all(u8::is_ascii_whitespace) {
            return self;
        }
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.extend_from_slice(members);
        self
    }

    /// Adds a field holding any serializable value.
    pub fn value<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) -> &mut Self {
        self.key(key);
        if serde_json::to_writer(&mut self.buf, value).is_err() {
            self.buf.extend_from_slice(b"null");
        }
        self
    }

    /// Closes the object and returns its bytes.
    pub fn finish(mut self) -> Bytes {
        self.buf.push(b'}');
        Bytes::from(self.buf)
    }
}

/// Checks that `text` is exactly one JSON value whose numbers all fit a double.
pub fn check(text: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<Checked>(text).map(|_| ())
}

/// A JSON value walked and dropped (see [`check`]).
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Checked, E> {
        if v.is_finite() {
            Ok(Checked)
        } else {
            Err(E::custom("number out of range"))
        }
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_with_escapes() {
        let mut w = ObjectWriter::with_capacity(8);
        w.str("a", "x\"y\n")
            .u64("n", 42)
            .bool("b", false)
            .raw("d", b"[1,{}]");
        let bytes = w.finish();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["a"], "x\"y\n");
        assert_eq!(v["n"], 42);
        assert_eq!(v["b"], false);
        assert_eq!(v["d"], serde_json::json!([1, {}]));
    }
}
