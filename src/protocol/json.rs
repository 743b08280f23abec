//! A small JSON object writer for server frames.
//!
//! Server frames have a fixed shape, so they are written field by field into one buffer
//! rather than built as a `serde_json::Value` first: one allocation per encoded frame,
//! strings escaped by `serde_json`, pre-validated raw JSON spliced in unchanged.

use std::io::Write;

use bytes::Bytes;

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
