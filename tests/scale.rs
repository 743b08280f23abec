//! 1,000 concurrent clients in one room each receive all of 100 published messages, in
//! order, none lost.

mod common;

use common::{Client, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_each_get_every_message_in_order() {
    const CLIENTS: usize = 1000;
    const MESSAGES: u64 = 100;
    let s = TestServer::start().await;
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let mut c = Client::connect(&s.ws_url(&format!("/ws/user{i}"))).await;
        // Join without waiting for each ack; the acks are checked by the readers below.
        c.send(json!({"op":"join","room":"big","id":1})).await;
        clients.push(c);
    }
    // Wait until every join is in.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while s.hub().room_info("big").map(|r| r.members) != Some(CLIENTS) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "joins did not complete"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut next = 0u64;
                let mut acked = false;
                while next < MESSAGES {
                    let m = c.recv().await;
                    match m["op"].as_str() {
                        Some("message") => {
                            assert_eq!(m["data"], next, "in order, none lost");
                            next += 1;
                        }
                        Some("ack") => acked = true,
                        Some("welcome" | "unread" | "presence") => {}
                        _ => panic!("unexpected {m}"),
                    }
                }
                assert!(acked, "the join was acked before the messages");
                next
            })
        })
        .collect();
    let mut publisher = s.user("publisher").await;
    for i in 0..MESSAGES {
        let ack = publisher
            .request(json!({"op":"publish","room":"big","event":"tick","data":i}))
            .await;
        assert_eq!(ack["seq"], i + 1);
    }
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert_eq!(total, CLIENTS as u64 * MESSAGES);
    assert_eq!(s.hub().stats().slow_consumer_total(), 0);
}
