//! Per-sender order and completeness under load (docs/protocol.md section 2, "per
//! sender, broadcasts leave in the order the sender's events arrived", and
//! section 7.5, no silent loss): 5 senders × 2,000 messages, received by
//! websocket and polling clients, on the multi-thread runtime.

use std::time::Duration;

use chorus_gateway::Profile;

use crate::support::raw::{event_frame, joined_client, RawClient, Transport};
use crate::support::{config, start_with, tokens, within_for};

const SENDERS: usize = 5;
const PER_SENDER: usize = 2_000;
const BATCH: usize = 100;

/// Reads `SENDERS * PER_SENDER` `newMessage` events and checks that each
/// sender's messages arrive complete and in order; returns how many arrived.
async fn receive_all(mut client: RawClient, label: String) -> usize {
    let mut next = [0usize; SENDERS];
    let mut total = 0;
    while total < SENDERS * PER_SENDER {
        let msg = client.next_msg().await;
        if msg.name().as_deref() != Some("newMessage") {
            continue;
        }
        let arg = msg.arg();
        let sender: usize = arg["username"]
            .as_str()
            .and_then(|u| u.strip_prefix("sender"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{label}: unexpected sender in {}", msg.frame));
        let seq: usize = arg["message"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("{label}: unexpected message in {}", msg.frame));
        assert_eq!(
            seq, next[sender],
            "{label}: sender{sender} out of order or with a gap"
        );
        next[sender] += 1;
        total += 1;
    }
    assert_eq!(next, [PER_SENDER; SENDERS], "{label}");
    total
}

async fn ten_thousand_messages_arrive_complete_and_in_order(profile: Profile) {
    let mut cfg = config(profile);
    // Strict: lift the rate limit and the queue bound, which this test is not about.
    (cfg.rate_per_sec, cfg.rate_burst, cfg.queue_size) = (1e9, 1_000_000, 1_000_000);
    let gw = start_with(cfg).await;
    let addr = gw.addr();
    let token = tokens::valid("u1");
    let auth = format!(r#"{{"token":"{token}"}}"#);
    let query = format!("token={token}");

    let mut receivers = Vec::new();
    for (i, transport) in [
        Transport::Websocket,
        Transport::Websocket,
        Transport::Polling,
    ]
    .into_iter()
    .enumerate()
    {
        let mut client = RawClient::connect(addr, transport, &query, &[]).await;
        client.connect_chat_auth(Some(&auth)).await;
        receivers.push(tokio::spawn(receive_all(
            client,
            format!("receiver {i} ({transport:?})"),
        )));
    }

    // Senders post over polling, a batch per request; their own pollers
    // receive every broadcast too, and are checked like the receivers.
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (client, _) = joined_client(
            addr,
            Transport::Polling,
            &query,
            Some(&auth),
            &format!("sender{s}"),
        )
        .await;
        senders.push(client);
    }
    let mut sending = Vec::new();
    for (s, mut client) in senders.into_iter().enumerate() {
        sending.push(tokio::spawn(async move {
            for start in (0..PER_SENDER).step_by(BATCH) {
                let frames: Vec<String> = (start..start + BATCH)
                    .map(|i| {
                        event_frame(
                            "/chat",
                            None,
                            "sendMessage",
                            &[&format!(r#"{{"message":"{i}"}}"#)],
                        )
                    })
                    .collect();
                let refs: Vec<&str> = frames.iter().map(String::as_str).collect();
                client.send_all(&refs).await;
            }
            receive_all(client, format!("sender{s}")).await
        }));
    }
    let all = within_for(Duration::from_secs(120), async {
        let mut counts = Vec::new();
        for task in receivers.into_iter().chain(sending) {
            counts.push(task.await.expect("a receiver task"));
        }
        counts
    })
    .await;
    assert_eq!(all, vec![SENDERS * PER_SENDER; 3 + SENDERS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_ten_thousand_messages_from_five_senders_arrive_complete_and_in_order() {
    ten_thousand_messages_arrive_complete_and_in_order(Profile::Seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_ten_thousand_messages_from_five_senders_arrive_complete_and_in_order() {
    ten_thousand_messages_arrive_complete_and_in_order(Profile::Strict).await;
}
