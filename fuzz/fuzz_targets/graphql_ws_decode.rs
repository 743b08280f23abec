//! Any bytes a GraphQL WebSocket client sends decode, in either subprotocol, into a message
//! or a typed error, never a panic; a subscription's document, when it parses, plans into
//! a source and shape or an error; a planned shape encodes a message into valid JSON.
#![no_main]

use hubbub::graphql::codec::{decode, ClientMessage, Protocol};
use hubbub::graphql::plan;
use hubbub::hub::{Body, Delivery, Message, MessageBody, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::TransportWs, Protocol::Legacy] {
        let Ok(ClientMessage::Subscribe { request, .. }) = decode(protocol, data) else {
            continue;
        };
        let Ok(doc) = async_graphql_parser::parse_query(&request.query) else {
            continue;
        };
        if let Ok(p) = plan::plan(&doc, request.operation_name.as_deref(), &request.variables) {
            let d = Delivery::new(Body::Message(Message {
                ns: "/".into(),
                room: Some("lobby".into()),
                event: "chat".into(),
                body: MessageBody::Hub(Payload::json(&serde_json::json!({"a": [1, "b"]}))),
                from: Some("ann".into()),
                to: None,
                seq: Some(7),
                ts: 1,
                offset: None,
            }));
            let bytes = p.shape.encode(&d);
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("a result is JSON");
        }
    }
});
