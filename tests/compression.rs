//! permessage-deflate: negotiated with clients that offer it (no context takeover), large
//! messages compressed and small ones not, decompressed size counted against max_payload.

mod common;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yawc::{Frame, OpCode, Options, WebSocket};

/// Sends an upgrade offering permessage-deflate over a plain TCP stream and returns the
/// stream and the response head.
async fn raw_upgrade(s: &TestServer, path: &str) -> (tokio::net::TcpStream, String) {
    upgrade_offering(s, path, "permessage-deflate; client_max_window_bits").await
}

/// Like [`raw_upgrade`], with `offers` as the `Sec-WebSocket-Extensions` value.
async fn upgrade_offering(
    s: &TestServer,
    path: &str,
    offers: &str,
) -> (tokio::net::TcpStream, String) {
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {offers}\r\n\r\n",
        s.addr
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (tcp, String::from_utf8(head).unwrap().to_ascii_lowercase())
}

/// Reads one unmasked server frame: (first byte, payload).
async fn read_frame(tcp: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    tcp.read_exact(&mut h).await.unwrap();
    let len = match h[1] & 0x7f {
        126 => tcp.read_u16().await.unwrap() as usize,
        127 => tcp.read_u64().await.unwrap() as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    (h[0], payload)
}

#[tokio::test]
async fn deflate_is_negotiated_without_context_takeover_and_applied_over_the_threshold() {
    let s = TestServer::start().await;
    let (mut tcp, head) = raw_upgrade(&s, "/ws/zip").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let ext = head
        .lines()
        .find(|l| l.starts_with("sec-websocket-extensions:"))
        .expect("the server accepts the extension");
    assert!(ext.contains("permessage-deflate"), "{ext}");
    assert!(ext.contains("server_no_context_takeover"), "{ext}");
    // The welcome is small: sent uncompressed (RSV1 clear).
    let (b0, welcome) = read_frame(&mut tcp).await;
    assert_eq!(b0 & 0x40, 0);
    assert!(String::from_utf8(welcome).unwrap().contains("welcome"));
    let (_, unread) = read_frame(&mut tcp).await;
    assert!(String::from_utf8(unread).unwrap().contains("unread"));
    // A large, compressible push arrives compressed (RSV1 set) and much smaller.
    let big = "compressible ".repeat(1000);
    s.post("/api/push", json!({"to":"zip","event":"big","data":big}))
        .await;
    let (b0, payload) = read_frame(&mut tcp).await;
    assert_eq!(b0 & 0x40, 0x40, "RSV1 marks a compressed message");
    assert!(
        payload.len() < big.len() / 4,
        "{} bytes on the wire",
        payload.len()
    );
}

/// Several offers in one header (Autobahn 13.7): the server accepts the first one.
#[tokio::test]
async fn the_first_of_several_offers_is_accepted() {
    let s = TestServer::start().await;
    let offers = "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                  server_no_context_takeover; server_max_window_bits=9, \
                  permessage-deflate; client_no_context_takeover, permessage-deflate";
    let (_tcp, head) = upgrade_offering(&s, "/ws/echo", offers).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let ext = head
        .lines()
        .find(|l| l.starts_with("sec-websocket-extensions:"))
        .expect("compression is negotiated");
    assert_eq!(ext.matches("permessage-deflate").count(), 1, "{ext}");
    assert!(ext.contains("server_no_context_takeover"), "{ext}");
    // An offer list without permessage-deflate negotiates nothing.
    let (_tcp, head) = upgrade_offering(&s, "/ws/echo", "x-other, x-another; a=1").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
}

#[tokio::test]
async fn compression_off_declines_the_extension() {
    let s = TestServer::with(&[("compression", "off")]).await;
    let (_tcp, head) = raw_upgrade(&s, "/ws").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("permessage-deflate"), "{head}");
}

async fn deflate_client(
    s: &TestServer,
    path: &str,
) -> WebSocket<yawc::MaybeTlsStream<tokio::net::TcpStream>> {
    WebSocket::connect(s.ws_url(path).parse().unwrap())
        .with_options(
            Options::default()
                .with_balanced_compression()
                .with_compression_threshold(64)
                .with_max_payload_read(8 << 20),
        )
        .await
        .unwrap()
}

async fn next_json(
    ws: &mut WebSocket<yawc::MaybeTlsStream<tokio::net::TcpStream>>,
) -> serde_json::Value {
    loop {
        let f = tokio::time::timeout(common::WAIT, ws.next())
            .await
            .unwrap()
            .unwrap();
        if f.opcode() == OpCode::Text {
            let v: serde_json::Value = serde_json::from_slice(f.payload()).unwrap();
            if v["op"] != "unread" {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn compressed_messages_round_trip_both_ways() {
    let s = TestServer::start().await;
    let mut ws = deflate_client(&s, "/ws/zed").await;
    assert_eq!(next_json(&mut ws).await["op"], "welcome");
    let text = "round trip ".repeat(500);
    let join = json!({"op":"join","room":"z","id":1}).to_string();
    ws.send(Frame::text(join)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["op"], "ack");
    let publish = json!({"op":"publish","room":"z","event":"e","data":text,"id":2}).to_string();
    ws.send(Frame::text(publish)).await.unwrap();
    let m = next_json(&mut ws).await;
    assert_eq!(m["op"], "message");
    assert_eq!(m["data"], text);
    assert_eq!(next_json(&mut ws).await["op"], "ack");
}

#[tokio::test]
async fn a_decompression_bomb_is_closed_with_1009() {
    let s = TestServer::with(&[("max_payload", "64KiB")]).await;
    let mut ws = deflate_client(&s, "/ws").await;
    assert_eq!(next_json(&mut ws).await["op"], "welcome");
    // A megabyte of spaces compresses to about a kilobyte on the wire.
    let bomb = format!("{{\"op\":\"ping\",\"pad\":\"{}\"}}", " ".repeat(1 << 20));
    ws.send(Frame::text(bomb)).await.unwrap();
    let code = loop {
        let f = tokio::time::timeout(common::WAIT, ws.next()).await.unwrap();
        match f {
            Some(f) if f.opcode() == OpCode::Close => break f.close_code().map(u16::from),
            Some(_) => continue,
            None => break None,
        }
    };
    assert_eq!(code, Some(1009));
}
