//! Any bytes given to the v1 parser yield a request or a typed error, never a panic; a
//! request's `data` is always valid JSON that re-encodes into a valid `message` frame, and
//! the `chat` schema judges it without a panic (accepting it, or naming a field).
#![no_main]

use bytes::Bytes;
use hubbub::protocol::v1::{self, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    match v1::parse(&frame) {
        Ok(f) => {
            if let Request::Publish { room, event, data, .. } = f.request {
                let out = v1::encode_message(&v1::MessageFields {
                    room: Some(&room),
                    event: &event,
                    data: data.as_bytes(),
                    from: None,
                    to: Some("someone"),
                    seq: Some(1),
                    ts: 0,
                });
                serde_json::from_slice::<serde_json::Value>(&out).expect("valid JSON out");
                if let Err(e) = hubbub::services::schema::check_chat(&data.to_value(), true) {
                    assert!(!e.message.is_empty());
                }
            }
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
