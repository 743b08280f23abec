//! Any text decodes into a Socket.IO packet or a typed error, never a panic; a decoded
//! packet's header re-encodes into something that decodes to the same header; and whatever
//! the in-place reader of plain events (`event_head`, the mapped events' fast path) accepts,
//! the full decoder reads the same way.
#![no_main]

use hubbub::protocol::socketio;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(h) = socketio::event_head(data) {
        let p = socketio::decode(text).expect("decode refuses what event_head read");
        assert_eq!((p.kind, p.ns.as_str(), p.id), (socketio::Kind::Event, h.ns, h.id));
        let arg: serde_json::Value = serde_json::from_str(h.arg.get()).expect("raw argument");
        assert_eq!(p.data, Some(serde_json::json!([h.name, arg])));
    }
    if let Ok(p) = socketio::decode(text) {
        let _ = socketio::placeholders_valid(p.data.as_ref().unwrap_or(&serde_json::Value::Null), p.attachments);
        let header = socketio::encode_header(p.kind, p.attachments, &p.ns, p.id);
        let again = socketio::decode(&header);
        if let Ok(q) = again {
            assert_eq!((q.kind, q.ns.as_str(), q.id), (p.kind, p.ns.as_str(), p.id));
        }
    }
});
