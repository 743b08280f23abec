//! Any polling body decodes into packets or a typed error; what decodes re-encodes.
#![no_main]

use bytes::Bytes;
use hubbub::protocol::engineio::{self, Packet, PollItem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(packets) = engineio::decode_payload(&body) {
        let texts: Vec<Vec<u8>> = packets
            .iter()
            .filter_map(|p| match p {
                Packet::Message(m) => Some([b"4".as_slice(), m].concat()),
                _ => None,
            })
            .collect();
        let _ = engineio::encode_payload(texts.iter().map(|t| PollItem::Text(t)));
    }
});
