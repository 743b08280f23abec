//! Any text decodes into a Socket.IO packet or a typed error, never a panic; a decoded
//! packet's header re-encodes into something that decodes to the same header.
#![no_main]

use hubbub::protocol::socketio;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = socketio::decode(text) {
        let _ = socketio::placeholders_valid(p.data.as_ref().unwrap_or(&serde_json::Value::Null), p.attachments);
        let header = socketio::encode_header(p.kind, p.attachments, &p.ns, p.id);
        let again = socketio::decode(&header);
        if let Ok(q) = again {
            assert_eq!((q.kind, q.ns.as_str(), q.id), (p.kind, p.ns.as_str(), p.id));
        }
    }
});
