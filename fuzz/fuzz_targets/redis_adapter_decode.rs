//! Any bytes on a cluster channel decode into a broadcast (either flavour's), a request map
//! or a typed error, never a panic. A decoded broadcast re-encodes (as a Hubbub node of
//! either flavour would publish it) into
//! bytes that decode to the same recipients and the same frames for every client kind
//! (unless the input holds objects that look like binary markers, `_placeholder` or
//! `_binary`, which socket.io itself cannot tell from real binary either).
#![no_main]

use hubbub::cluster::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode_map(data);
    let Ok(b) = wire::decode_broadcast(data) else { return };
    let marker = |m: &[u8]| data.windows(m.len()).any(|w| w == m);
    if marker(b"_placeholder") || marker(b"_binary") {
        return;
    }
    let v1 = b.delivery.v1_frame();
    let sio = b.delivery.sio_frames().to_vec();
    for flavour in [wire::Flavour::Classic, wire::Flavour::Sharded] {
        if let Some(bytes) = wire::encode_broadcast(flavour, "fuzz", &b.reach, &b.delivery) {
            let again = wire::decode_broadcast(&bytes).expect("what a node publishes decodes");
            assert_eq!(again.reach, b.reach);
            assert_eq!(again.delivery.v1_frame(), v1);
            assert_eq!(again.delivery.sio_frames(), &sio[..]);
        }
    }
});
