//! Attacks on the gateway's Socket.IO packet path and chat rules, against the
//! real `chorus-gateway` binary on 127.0.0.1: malformed packets of every type
//! over both transports, attachment bombs, event and rename floods across
//! reconnects, CONNECT/DISCONNECT cycling, and JWT attacks.
//!
//! For each group: the gateway stays up and answers new clients, its resident
//! memory stays under the stated bound, well-behaved clients beside the
//! attacker lose nothing, `/metrics` counts what happened, and SIGTERM
//! afterwards exits 0.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chorus_test_support::http::http;
use chorus_test_support::process::{metric, GatewayProcess};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support;
use crate::support::js::JsClient;
use crate::support::raw::{endpoint, joined_client, ws_connect, RawClient, Transport, WsStream};
use crate::support::{gateway_process, tokens, within, JOINED_TEXT, SECRET, WAIT};

/// How much the gateway's resident memory may grow during one attack group.
const RSS_GROWTH_BOUND: u64 = 64 * 1024 * 1024;

/// Which profile a gateway runs, and how its clients authenticate.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Seed: the token in the handshake query.
    Seed,
    /// Strict: the token in the CONNECT `auth` payload.
    Strict,
}

fn spawn(auth: Auth, extra: &[&str]) -> GatewayProcess {
    let profile = match auth {
        Auth::Seed => "seed",
        Auth::Strict => "strict",
    };
    let mut args = vec!["--profile", profile];
    args.extend_from_slice(extra);
    gateway_process(&args)
}

fn auth_payload(token: &str) -> String {
    json!({ "token": token }).to_string()
}

/// A client that joined `/chat` as `name` with a valid token for subject `name`.
async fn member(addr: SocketAddr, auth: Auth, transport: Transport, name: &str) -> RawClient {
    let token = tokens::valid(name);
    let (client, _) = match auth {
        Auth::Seed => joined_client(addr, transport, &format!("token={token}"), None, name).await,
        Auth::Strict => joined_client(addr, transport, "", Some(&auth_payload(&token)), name).await,
    };
    client
}

/// Two well-behaved clients that watch an attack: one on each transport.
struct Witnesses {
    watcher: RawClient,
    talker: RawClient,
    sent: usize,
}

impl Witnesses {
    async fn join(addr: SocketAddr, auth: Auth) -> Self {
        let watcher = member(addr, auth, Transport::Websocket, "watcher").await;
        let talker = member(addr, auth, Transport::Polling, "talker").await;
        Witnesses {
            watcher,
            talker,
            sent: 0,
        }
    }

    /// The talker sends `n` messages; both witnesses receive every one, in
    /// order, with nothing missing (other events in between are skipped).
    async fn exchange(&mut self, n: usize) {
        for _ in 0..n {
            let text = format!("m{}", self.sent);
            self.sent += 1;
            self.talker
                .emit("sendMessage", &[&json!({ "message": text }).to_string()])
                .await;
        }
        for client in [&mut self.watcher, &mut self.talker] {
            for i in self.sent - n..self.sent {
                let msg = within(async {
                    loop {
                        let msg = client.next_msg().await;
                        // What an attacker got broadcast is skipped; the talker's must all be there.
                        if msg.name().as_deref() == Some("newMessage")
                            && msg.arg()["username"] == json!("talker")
                        {
                            break msg;
                        }
                    }
                })
                .await;
                assert_eq!(
                    msg.arg()["message"],
                    json!(format!("m{i}")),
                    "{}",
                    msg.frame
                );
                assert_eq!(msg.arg()["username"], json!("talker"), "{}", msg.frame);
            }
        }
    }
}

/// Checks what every attack group ends with: the gateway is healthy, a brand
/// new client can join, memory grew by less than the bound, then SIGTERM exits 0.
async fn finish(gw: GatewayProcess, auth: Auth, rss_before: u64, what: &str) {
    assert!(gw.healthy().await, "{what}: /healthz after the attack");
    let mut fresh = member(gw.addr, auth, Transport::Websocket, "newcomer").await;
    fresh
        .emit("sendMessage", &[r#"{"message":"still here"}"#])
        .await;
    assert_eq!(
        fresh.wait_event("newMessage").await.arg()["message"],
        json!("still here")
    );
    let rss = gw.rss_bytes();
    assert!(
        rss < rss_before + RSS_GROWTH_BOUND,
        "{what}: RSS grew from {rss_before} to {rss} bytes (bound +{RSS_GROWTH_BOUND})"
    );
    eprintln!(
        "{what}: RSS {} KiB -> {} KiB",
        rss_before / 1024,
        rss / 1024
    );
    let status = gw.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: SIGTERM exit status {status:?}"
    );
}

/// A raw websocket session that can send binary frames.
struct WsAttacker {
    ws: WsStream,
}

impl WsAttacker {
    async fn open(addr: SocketAddr, query: &str) -> Self {
        let mut ws = ws_connect(addr, &endpoint(Transport::Websocket, query, None), &[]).await;
        let open = within(ws.next())
            .await
            .expect("an open packet")
            .expect("a frame");
        assert!(open.to_text().unwrap_or("").starts_with('0'), "{open:?}");
        WsAttacker { ws }
    }

    async fn text(&mut self, text: &str) {
        // The server may already have closed: a failed send is part of the attack.
        let _ = within(self.ws.send(Message::text(text))).await;
    }

    async fn binary(&mut self, bytes: Vec<u8>) {
        let _ = within(self.ws.send(Message::binary(bytes))).await;
    }

    /// Connects to `/chat` and reads the CONNECT answer and `onlineUsers`.
    async fn connect_chat(&mut self, auth: Option<&str>) {
        self.text(&format!("40/chat,{}", auth.unwrap_or(""))).await;
        let mut seen = Vec::new();
        while !seen.iter().any(|f: &String| f.contains("onlineUsers")) {
            let frame = within(self.ws.next()).await.expect("a frame").expect("ok");
            seen.push(frame.to_text().unwrap_or("").to_owned());
        }
        assert!(
            seen.iter().any(|f| f.starts_with("40/chat,{\"sid\"")),
            "{seen:?}"
        );
    }

    /// Whether the server closes the websocket within `limit`.
    async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2" => {
                    let _ = self.ws.send(Message::text("3")).await;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// A raw polling session: POSTs bodies, and GETs to learn whether it still lives.
struct PollAttacker {
    addr: SocketAddr,
    target: String,
}

impl PollAttacker {
    async fn open(addr: SocketAddr, query: &str) -> Self {
        let response = within(http(
            addr,
            "GET",
            &endpoint(Transport::Polling, query, None),
            &[],
            b"",
        ))
        .await;
        assert_eq!(response.status, 200, "handshake");
        let text = response.text();
        let data = text.strip_prefix('0').expect("an open packet");
        let sid = serde_json::from_str::<Value>(data).expect("open JSON")["sid"]
            .as_str()
            .expect("a sid")
            .to_owned();
        PollAttacker {
            addr,
            target: endpoint(Transport::Polling, "", Some(&sid)),
        }
    }

    async fn post(&self, body: &str) -> u16 {
        within(http(self.addr, "POST", &self.target, &[], body.as_bytes()))
            .await
            .status
    }

    async fn get(&self, limit: Duration) -> Option<(u16, String)> {
        let response = tokio::time::timeout(limit, http(self.addr, "GET", &self.target, &[], b""))
            .await
            .ok()?;
        Some((response.status, response.text()))
    }

    async fn connect_chat(&self, auth: Option<&str>) {
        self.post(&format!("40/chat,{}", auth.unwrap_or(""))).await;
        let mut body = String::new();
        while !body.contains("onlineUsers") {
            let (status, text) = self.get(WAIT).await.expect("the CONNECT answer");
            assert_eq!(status, 200, "{text}");
            body.push_str(&text);
        }
        assert!(body.starts_with("40/chat,{\"sid\""), "{body}");
    }

    /// Whether the session is gone within `limit`: a GET is refused or returns the close packet.
    async fn closed_within(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.get(left).await {
                None => return false,
                Some((200, body)) if !body.split('\x1e').any(|r| r == "1") => {
                    // Pings are answered so that only the attack can close it.
                    if body.split('\x1e').any(|r| r == "2") {
                        self.post("3").await;
                    }
                }
                Some(_) => return true,
            }
        }
        false
    }
}

fn nest(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn placeholder(num: usize) -> String {
    format!(r#"{{"_placeholder":true,"num":{num}}}"#)
}

/// One malformed input: text packets (each an Engine.IO message without the
/// leading `4`), then binary attachments, sent after an optional `/chat` CONNECT.
struct Malformed {
    what: &'static str,
    connect_first: bool,
    packets: Vec<String>,
    attachments: Vec<Vec<u8>>,
    abuse: Option<&'static str>,
}

fn malformed_cases() -> Vec<Malformed> {
    let case = |what, connect_first, packets: &[&str], attachments: usize, abuse| Malformed {
        what,
        connect_first,
        packets: packets.iter().map(|p| (*p).to_owned()).collect(),
        attachments: vec![vec![1, 2, 3]; attachments],
        abuse,
    };
    let deep_event = format!(r#"2/chat,["sendMessage",{}]"#, nest(200));
    let deep_binary = format!(
        r#"51-/chat,["sendMessage",{},{}]"#,
        nest(200),
        placeholder(0)
    );
    let deep_ack = format!("3/chat,1[{}]", nest(100));
    vec![
        case(
            "huge attachment count before CONNECT",
            false,
            &[r#"510000000000000-["x"]"#],
            0,
            Some("too_many_attachments"),
        ),
        case(
            "u64::MAX attachment count",
            false,
            &[r#"518446744073709551615-["x"]"#],
            0,
            Some("too_many_attachments"),
        ),
        case(
            "11 attachments",
            true,
            &[r#"511-/chat,["x"]"#],
            0,
            Some("too_many_attachments"),
        ),
        case(
            "zero attachments (socket.io-parser: illegal)",
            true,
            &[r#"50-/chat,["x"]"#],
            0,
            None,
        ),
        case(
            "attachment count without digits",
            true,
            &[r#"5-/chat,["x"]"#],
            0,
            None,
        ),
        case(
            "binary ack count overflow",
            true,
            &["699999999999999999999999-/chat,1[1]"],
            0,
            Some("too_many_attachments"),
        ),
        Malformed {
            what: "200-deep event",
            connect_first: true,
            packets: vec![deep_event],
            attachments: vec![],
            abuse: Some("json_depth"),
        },
        Malformed {
            what: "200-deep binary event",
            connect_first: true,
            packets: vec![deep_binary],
            attachments: vec![vec![7]],
            abuse: Some("json_depth"),
        },
        Malformed {
            what: "100-deep ack",
            connect_first: true,
            packets: vec![deep_ack],
            attachments: vec![],
            abuse: Some("json_depth"),
        },
        case(
            "event before CONNECT",
            false,
            &[r#"2/chat,["sendMessage",{"message":"x"}]"#],
            0,
            None,
        ),
        case(
            "event to a namespace not connected",
            true,
            &[r#"2/other,["x"]"#],
            0,
            None,
        ),
        case("unknown packet type", true, &["9/chat,[]"], 0, None),
        case("non-digit packet type", true, &["x/chat,[]"], 0, None),
        case("empty message", true, &[""], 0, None),
        case(
            "broken JSON",
            true,
            &[r#"2/chat,["joinChat",{bad"#],
            0,
            None,
        ),
        case(
            "event that is not an array",
            true,
            &[r#"2/chat,{"a":1}"#],
            0,
            None,
        ),
        case(
            "reserved event name",
            true,
            &[r#"2/chat,["connect"]"#],
            0,
            None,
        ),
        case("CONNECT with an array", false, &["0/chat,[1]"], 0, None),
        case("second CONNECT", true, &["0/chat,"], 0, None),
        case("DISCONNECT with data", true, &["1/chat,{}"], 0, None),
        case("ACK that is not an array", true, &["3/chat,1{}"], 0, None),
        case(
            "ack id overflow",
            true,
            &[r#"2/chat,99999999999999999999999["x"]"#],
            0,
            None,
        ),
        case(
            "placeholder past the attachments",
            true,
            &[&format!(r#"51-/chat,["x",{}]"#, placeholder(3))],
            1,
            None,
        ),
        case("attachment with nothing pending", true, &[], 1, None),
        case(
            "text while attachments are awaited",
            true,
            &[
                &format!(r#"52-/chat,["x",{},{}]"#, placeholder(0), placeholder(1)),
                r#"2/chat,["typing",{"isTyping":true}]"#,
            ],
            0,
            None,
        ),
    ]
}

/// Runs one malformed case over `transport`; returns whether the gateway closed it.
async fn run_malformed(addr: SocketAddr, transport: Transport, case: &Malformed) -> bool {
    let token = tokens::valid("mallory");
    let query = format!("token={token}");
    match transport {
        Transport::Websocket => {
            let mut ws = WsAttacker::open(addr, &query).await;
            if case.connect_first {
                ws.connect_chat(None).await;
            }
            for p in &case.packets {
                ws.text(&format!("4{p}")).await;
            }
            for a in &case.attachments {
                ws.binary(a.clone()).await;
            }
            ws.closed_within(WAIT).await
        }
        Transport::Polling => {
            let poll = PollAttacker::open(addr, &query).await;
            if case.connect_first {
                poll.connect_chat(None).await;
            }
            let mut records: Vec<String> = case.packets.iter().map(|p| format!("4{p}")).collect();
            records.extend(
                case.attachments
                    .iter()
                    .map(|a| format!("b{}", base64::engine::general_purpose::STANDARD.encode(a))),
            );
            poll.post(&records.join("\x1e")).await;
            poll.closed_within(WAIT).await
        }
    }
}

/// Every malformed packet type, over both transports, closes only the
/// attacker's connection: never a crash, a poisoned lock or a stuck session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_of_every_type_close_only_the_attacker() {
    let gw = spawn(Auth::Seed, &[]);
    let mut witnesses = Witnesses::join(gw.addr, Auth::Seed).await;
    witnesses.exchange(3).await;
    let rss_before = gw.rss_bytes();
    let cases = malformed_cases();
    let mut expected_abuse: Vec<(&str, f64)> = Vec::new();
    for transport in [Transport::Websocket, Transport::Polling] {
        for case in &cases {
            assert!(
                run_malformed(gw.addr, transport, case).await,
                "{} over {transport:?}: the connection stayed open",
                case.what
            );
            if let Some(reason) = case.abuse {
                match expected_abuse.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += 1.0,
                    None => expected_abuse.push((reason, 1.0)),
                }
            }
        }
        witnesses.exchange(5).await;
    }
    // At the depth limit a packet is fine, and the connection stays open.
    let mut ws = WsAttacker::open(gw.addr, "").await;
    ws.connect_chat(None).await;
    ws.text(&format!(r#"42/chat,["unknownEvent",{}]"#, nest(63)))
        .await;
    assert!(!ws.closed_within(Duration::from_millis(500)).await);

    let text = gw.metrics().await;
    let closes = (2 * cases.len()) as f64;
    assert_eq!(
        metric(&text, "chorus_gateway_protocol_errors_total"),
        closes,
        "{text}"
    );
    for (reason, n) in expected_abuse {
        let name = format!("chorus_gateway_abuse_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &name), n, "{name}");
    }
    assert_eq!(
        metric(&text, "chorus_gateway_slow_consumer_disconnects_total"),
        0.0
    );
    witnesses.exchange(5).await;
    finish(gw, Auth::Seed, rss_before, "malformed packets").await;
}

/// Attachment bombs: counts over 10 are refused before anything is allocated,
/// and attachments that never complete are bounded by `--max-payload` in bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_bombs_are_bounded_by_count_and_bytes() {
    let gw = spawn(Auth::Seed, &[]);
    let mut witnesses = Witnesses::join(gw.addr, Auth::Seed).await;
    let rss_before = gw.rss_bytes();
    let header = format!(
        r#"4510-/chat,["up",{}]"#,
        (0..10).map(placeholder).collect::<Vec<_>>().join(",")
    );
    // Websocket: 8 sessions each announce 10 attachments and send 900 KB frames.
    // The second frame puts the pending bytes over 1,000,000: the session closes.
    let attacks = (0..8).map(|_| {
        let header = header.clone();
        let addr = gw.addr;
        tokio::spawn(async move {
            let mut ws = WsAttacker::open(addr, "").await;
            ws.connect_chat(None).await;
            ws.text(&header).await;
            let mut frames = 0;
            for _ in 0..10 {
                ws.binary(vec![0x5a; 900_000]).await;
                frames += 1;
                if ws.closed_within(Duration::from_millis(200)).await {
                    return frames;
                }
            }
            frames
        })
    });
    for attack in attacks {
        let frames = within(attack).await.expect("the attack task");
        assert!(frames <= 2, "closed only after {frames} frames of 900 KB");
    }
    // Polling: the same over two POSTs of 600 KB attachments each.
    let poll = PollAttacker::open(gw.addr, "").await;
    poll.connect_chat(None).await;
    let chunk = format!(
        "b{}",
        base64::engine::general_purpose::STANDARD.encode(vec![0x5a; 600_000])
    );
    poll.post(&format!("{header}\x1e{chunk}")).await;
    poll.post(&chunk).await;
    assert!(
        poll.closed_within(WAIT).await,
        "polling pending bytes over max_payload"
    );
    // One attachment over --max-payload on its own: the frame is refused (1009).
    let mut ws = WsAttacker::open(gw.addr, "").await;
    ws.connect_chat(None).await;
    ws.text(&header).await;
    ws.binary(vec![0x5a; 1_000_001]).await;
    assert!(ws.closed_within(WAIT).await, "an oversized attachment");
    // A huge count and 10,000 attachments are refused at the header.
    for count in ["10000", "10000000000000000000000000"] {
        let mut ws = WsAttacker::open(gw.addr, "").await;
        ws.text(&format!(r#"45{count}-/chat,["up"]"#)).await;
        ws.binary(vec![1; 1000]).await;
        assert!(ws.closed_within(WAIT).await, "count {count}");
    }
    // A complete binary event within the limits still works (10 small attachments).
    let mut ws = WsAttacker::open(gw.addr, "").await;
    ws.connect_chat(None).await;
    ws.text(&header).await;
    for i in 0..10u8 {
        ws.binary(vec![i; 10]).await;
    }
    assert!(!ws.closed_within(Duration::from_millis(500)).await);

    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "chorus_gateway_abuse_total{reason=\"attachment_bytes\"}"
        ),
        9.0
    );
    assert_eq!(
        metric(
            &text,
            "chorus_gateway_abuse_total{reason=\"too_many_attachments\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "chorus_gateway_oversized_packets_total{transport=\"websocket\"}"
        ),
        1.0
    );
    witnesses.exchange(10).await;
    finish(gw, Auth::Seed, rss_before, "attachment bombs").await;
}

/// Counts the `newMessage` and `userOnline` broadcasts from `who` that a
/// watcher receives until nothing arrives for 1.5 s.
async fn count_broadcasts(watcher: &mut RawClient, who: &[&str]) -> Vec<(usize, usize)> {
    let mut counts = vec![(0, 0); who.len()];
    while let Some(msg) = watcher.try_next_msg(Duration::from_millis(1500)).await {
        let Some(i) = who.iter().position(|w| msg.arg()["username"] == json!(w)) else {
            continue;
        };
        match msg.name().as_deref() {
            Some("newMessage") => counts[i].0 += 1,
            Some("userOnline") => counts[i].1 += 1,
            _ => {}
        }
    }
    counts
}

fn send_message_frame(i: usize) -> String {
    format!(r#"42/chat,["sendMessage",{{"message":"flood {i}"}}]"#)
}

fn join_frame(name: &str) -> String {
    format!(r#"42/chat,["joinChat",{{"username":"{name}"}}]"#)
}

/// Strict rate limits belong to the identity: reconnecting the namespace,
/// opening more connections with the same token, or switching tokens on one
/// connection never refills a bucket; renames count against it and, here, against
/// an extra join limit as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_floods_are_limited_across_reconnects() {
    // Low limits, so that a per-socket bucket (the old behaviour) would exceed the bounds.
    let (rate, burst, join_rate, join_burst) = (5.0, 10.0, 0.5, 5.0);
    let gw = spawn(
        Auth::Strict,
        &[
            "--rate-per-sec",
            "5",
            "--rate-burst",
            "10",
            "--join-rate-per-sec",
            "0.5",
            "--join-burst",
            "5",
        ],
    );
    let mut witnesses = Witnesses::join(gw.addr, Auth::Strict).await;
    let mut bystanders = Vec::new();
    for i in 0..20 {
        let transport = if i % 2 == 0 {
            Transport::Websocket
        } else {
            Transport::Polling
        };
        bystanders.push(member(gw.addr, Auth::Strict, transport, &format!("bystander{i}")).await);
    }
    let rss_before = gw.rss_bytes();
    let started = Instant::now();

    // A. One connection, one token: 5 rounds of CONNECT, join, 100 messages, DISCONNECT.
    let mallory = auth_payload(&tokens::valid("mallory"));
    let mut a = WsAttacker::open(gw.addr, "").await;
    for round in 0..5 {
        a.connect_chat(Some(&mallory)).await;
        a.text(&join_frame("mallory")).await;
        for i in 0..100 {
            a.text(&send_message_frame(round * 100 + i)).await;
        }
        a.text("41/chat,").await;
    }
    // B. Four connections with one other token: join, 100 messages, then 200 renames each.
    let eve = auth_payload(&tokens::valid("eve"));
    let mut floods = Vec::new();
    for c in 0..4 {
        let mut ws = WsAttacker::open(gw.addr, "").await;
        ws.connect_chat(Some(&eve)).await;
        ws.text(&join_frame("eve")).await;
        for i in 0..100 {
            ws.text(&send_message_frame(1000 + c * 100 + i)).await;
        }
        floods.push(ws);
    }
    for ws in &mut floods {
        for _ in 0..200 {
            ws.text(&join_frame("eve")).await;
        }
    }
    let counts = count_broadcasts(&mut witnesses.watcher, &["mallory", "eve"]).await;
    let elapsed = started.elapsed().as_secs_f64();
    let [(mallory_msgs, mallory_joins), (eve_msgs, eve_joins)] = counts[..] else {
        unreachable!()
    };
    eprintln!(
        "in {elapsed:.2}s: mallory {mallory_msgs} messages {mallory_joins} joins; \
         eve {eve_msgs} messages {eve_joins} joins"
    );
    let message_bound = burst + rate * elapsed;
    let join_bound = join_burst + join_rate * elapsed;
    for (who, msgs, joins) in [
        ("mallory", mallory_msgs, mallory_joins),
        ("eve", eve_msgs, eve_joins),
    ] {
        // Joins take from the event bucket too (section 7.4), and from the join bucket.
        let events = msgs + joins;
        assert!(
            events >= burst as usize,
            "{who}: the burst itself is allowed ({msgs} messages, {joins} joins)"
        );
        assert!(
            (events as f64) <= message_bound,
            "{who}: {msgs} messages and {joins} joins from one token in {elapsed:.2}s \
             (bound {message_bound:.1})"
        );
        assert!(
            joins >= 1 && (joins as f64) <= join_bound,
            "{who}: {joins} joins in {elapsed:.2}s (bound {join_bound:.1})"
        );
    }

    // C. One connection, a new subject on every CONNECT: the connection's own buckets hold.
    let started = Instant::now();
    let mut rotator = WsAttacker::open(gw.addr, "").await;
    for round in 0..5 {
        let token = auth_payload(&tokens::valid(&format!("rotating{round}")));
        rotator.connect_chat(Some(&token)).await;
        rotator.text(&join_frame("rotator")).await;
        for i in 0..60 {
            rotator
                .text(&send_message_frame(5000 + round * 100 + i))
                .await;
        }
        rotator.text("41/chat,").await;
    }
    let counts = count_broadcasts(&mut witnesses.watcher, &["rotator"]).await;
    let elapsed = started.elapsed().as_secs_f64();
    let rotated = counts[0].0;
    eprintln!("rotator: {rotated} messages in {elapsed:.2}s");
    assert!(
        (rotated as f64) <= burst + rate * elapsed,
        "{rotated} messages through one connection with 5 tokens in {elapsed:.2}s"
    );

    let text = gw.metrics().await;
    let limited = metric(
        &text,
        "chorus_gateway_refused_events_total{reason=\"rate_limited\"}",
    );
    assert!(limited >= 1000.0, "rate_limited counted {limited}");
    assert_eq!(
        metric(&text, "chorus_gateway_slow_consumer_disconnects_total"),
        0.0,
        "{text}"
    );
    // Every bystander is still connected and receives the talker's messages.
    witnesses.exchange(5).await;
    for b in &mut bystanders {
        let mut seen = 0;
        while seen < 5 {
            let msg = b.next_msg().await;
            if msg.name().as_deref() == Some("newMessage")
                && msg.arg()["username"] == json!("talker")
            {
                seen += 1;
            }
        }
    }
    drop(floods);
    finish(gw, Auth::Strict, rss_before, "strict floods").await;
}

/// CONNECT/DISCONNECT cycling on one connection is cut at
/// `--max-connects-per-conn` (100), so it cannot queue thousands of
/// `onlineUsers` snapshots; a client that reconnects a few times is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_cycling_cannot_amplify_snapshots() {
    let gw = spawn(Auth::Seed, &[]);
    let mut witnesses = Witnesses::join(gw.addr, Auth::Seed).await;
    // 40 joined users with 1,000-character names: each snapshot is ~40 KB, so
    // 100 of them stay under the outgoing queue's byte bound (16 MiB) and it is
    // the CONNECT limit, not the queue, that stops the attacker.
    let long = "n".repeat(1000);
    let mut users = Vec::new();
    for i in 0..40 {
        let mut c = WsAttacker::open(gw.addr, &format!("token={}", tokens::valid("u"))).await;
        c.connect_chat(None).await;
        c.text(&format!(
            r#"42/chat,["joinChat",{{"username":"{long}{i}"}}]"#
        ))
        .await;
        users.push(c);
    }
    let rss_before = gw.rss_bytes();
    // A polite client reconnects the namespace 5 times on one connection.
    let mut polite = WsAttacker::open(gw.addr, "").await;
    for _ in 0..5 {
        polite.connect_chat(None).await;
        polite.text("41/chat,").await;
    }
    assert!(!polite.closed_within(Duration::from_millis(300)).await);
    // Four attackers POST 1,000 CONNECT/DISCONNECT pairs each, without reading.
    let cycles = "40/chat,\x1e41/chat,\x1e".repeat(1000);
    let cycles = cycles.trim_end_matches('\x1e');
    for _ in 0..4 {
        let poll = PollAttacker::open(gw.addr, "").await;
        poll.post(cycles).await;
        assert!(
            poll.closed_within(WAIT).await,
            "cycling did not close the session"
        );
    }
    let mut ws = WsAttacker::open(gw.addr, "").await;
    for _ in 0..150 {
        ws.text("40/chat,").await;
        ws.text("41/chat,").await;
    }
    assert!(ws.closed_within(WAIT).await);
    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "chorus_gateway_abuse_total{reason=\"connect_cycles\"}"
        ),
        5.0
    );
    assert_eq!(
        metric(&text, "chorus_gateway_slow_consumer_disconnects_total"),
        0.0
    );
    witnesses.exchange(5).await;
    drop(users);
    finish(gw, Auth::Seed, rss_before, "connect cycling").await;
}

/// JWT attacks on the strict handshake: each is refused with INVALID_TOKEN
/// (or NO_TOKEN) and counted; none crashes the gateway. A validly signed
/// token with an astronomically far `exp` is accepted without overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_jwt_attacks_are_refused_and_counted() {
    let gw = spawn(Auth::Strict, &[]);
    let mut witnesses = Witnesses::join(gw.addr, Auth::Strict).await;
    let rss_before = gw.rss_bytes();
    let invalid = [
        ("alg none", tokens::alg_none()),
        (
            "HS384 when only HS256 is allowed",
            tokens::valid_alg(jsonwebtoken::Algorithm::HS384),
        ),
        (
            "HS512 when only HS256 is allowed",
            tokens::valid_alg(jsonwebtoken::Algorithm::HS512),
        ),
        ("RS256 header, HMAC signature", tokens::header_alg("RS256")),
        ("ES256 header", tokens::header_alg("ES256")),
        ("wrong key", tokens::wrong_secret()),
        ("expired", tokens::expired()),
        ("not yet valid", tokens::not_yet_valid()),
        ("no exp", tokens::without_exp()),
        ("JSON string payload", tokens::string_payload()),
        ("bare string payload", tokens::bare_string()),
        ("array payload", tokens::json_payload(&json!([1, 2]))),
        ("number payload", tokens::json_payload(&json!(7))),
        (
            "exp not a number",
            tokens::json_payload(&json!({"sub": "a", "exp": "never"})),
        ),
        ("garbage", tokens::garbage()),
        ("four segments", format!("{}.x", tokens::valid("a"))),
        (
            "huge token, bad signature",
            format!("{}x", tokens::huge(200_000)),
        ),
        ("deep JSON header", tokens::signed_raw(&nest(5000), b"{}")),
    ];
    for (what, token) in &invalid {
        let transport = if what.len() % 2 == 0 {
            Transport::Websocket
        } else {
            Transport::Polling
        };
        let mut c = RawClient::connect(gw.addr, transport, "", &[]).await;
        let reply = c.join_ns("/chat", Some(&auth_payload(token))).await;
        assert_eq!(
            reply.frame, r#"44/chat,{"message":"无效的认证令牌","data":{"code":"INVALID_TOKEN"}}"#,
            "{what}"
        );
        c.expect_quiet().await;
    }
    // Accepted without overflow: exp 10^19 and u64::MAX, and a 200 KB valid token.
    for (what, token) in [
        ("exp 1e19", tokens::huge_exp()),
        ("exp u64::MAX", tokens::max_exp()),
        (
            "exp 1e17 (representable, 3 billion years away)",
            tokens::json_payload(&json!({"sub": "far", "exp": 100_000_000_000_000_000u64})),
        ),
        ("200 KB valid token", tokens::huge(200_000)),
    ] {
        let mut c = RawClient::connect(gw.addr, Transport::Websocket, "", &[]).await;
        let reply = c.join_ns("/chat", Some(&auth_payload(&token))).await;
        assert!(
            reply.frame.starts_with("40/chat,{\"sid\""),
            "{what}: {}",
            reply.frame
        );
    }
    // Different identities in query and header: the query wins, the header is
    // never read; a valid header does not rescue an invalid query token.
    let valid = tokens::valid("q");
    let bearer_bad = format!("Bearer {}", tokens::wrong_secret());
    let mut c = RawClient::connect(
        gw.addr,
        Transport::Polling,
        &format!("token={valid}"),
        &[("Authorization", &bearer_bad)],
    )
    .await;
    let reply = c.join_ns("/chat", None).await;
    assert!(
        reply.frame.starts_with("40/chat,{\"sid\""),
        "{}",
        reply.frame
    );
    let bearer_good = format!("Bearer {valid}");
    let mut c = RawClient::connect(
        gw.addr,
        Transport::Websocket,
        &format!("token={}", tokens::expired()),
        &[("Authorization", &bearer_good)],
    )
    .await;
    let reply = c.join_ns("/chat", None).await;
    assert!(reply.frame.contains("INVALID_TOKEN"), "{}", reply.frame);
    // No token anywhere.
    let mut c = RawClient::ws(gw.addr).await;
    let reply = c.join_ns("/chat", None).await;
    assert!(reply.frame.contains("NO_TOKEN"), "{}", reply.frame);

    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "chorus_gateway_refused_handshakes_total{reason=\"invalid_token\"}"
        ),
        (invalid.len() + 1) as f64
    );
    assert_eq!(
        metric(
            &text,
            "chorus_gateway_refused_handshakes_total{reason=\"no_token\"}"
        ),
        1.0
    );
    witnesses.exchange(5).await;
    finish(gw, Auth::Strict, rss_before, "JWT attacks").await;
}

/// Whether the seed gateway lets `token` through its guard: a `joinChat`
/// answered by `joined` (accepted) or by `exception` (refused).
async fn seed_accepts(addr: SocketAddr, token: &str) -> bool {
    let mut c =
        RawClient::connect(addr, Transport::Websocket, &format!("token={token}"), &[]).await;
    c.connect_chat().await;
    c.emit("joinChat", &[r#"{"username":"probe"}"#]).await;
    loop {
        let msg = c.next_msg().await;
        match msg.name().as_deref() {
            Some("joined") => {
                assert_eq!(msg.arg()["message"], json!(JOINED_TEXT));
                return true;
            }
            Some("exception") => return false,
            _ => {}
        }
    }
}

/// Runs `mint-token.mjs` with `args` and returns its JSON output lines.
async fn node_tokens(args: Vec<String>, lines: usize) -> Vec<Value> {
    let mut node = JsClient::spawn_script("mint-token.mjs", &args, &[]);
    let mut out = Vec::new();
    for _ in 0..lines {
        let line = node.next_line_within(support::js::JS_WAIT).await;
        out.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")));
    }
    out
}

/// The seed guard accepts exactly what Node's `jsonwebtoken.verify` accepts,
/// for tokens minted by Node's `jsonwebtoken` and by our own test minter alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_accepts_exactly_what_node_jsonwebtoken_accepts() {
    let gw = spawn(Auth::Seed, &[]);
    let kinds = [
        "valid",
        "hs384",
        "hs512",
        "expired",
        "nbf",
        "wrong-secret",
        "no-exp",
        "string",
        "buffer-array",
        "huge-exp",
        "alg-none",
    ];
    let mut args = vec!["mint".to_owned(), SECRET.to_owned()];
    args.extend(kinds.iter().map(|k| (*k).to_owned()));
    let minted = node_tokens(args, kinds.len()).await;
    let mut tokens: Vec<(String, String)> = minted
        .iter()
        .map(|m| {
            (
                format!("node:{}", m["kind"].as_str().expect("a kind")),
                m["token"].as_str().expect("a token").to_owned(),
            )
        })
        .collect();
    tokens.extend([
        ("ours:valid".to_owned(), tokens::valid("a")),
        (
            "ours:hs384".to_owned(),
            tokens::valid_alg(jsonwebtoken::Algorithm::HS384),
        ),
        (
            "ours:hs512".to_owned(),
            tokens::valid_alg(jsonwebtoken::Algorithm::HS512),
        ),
        ("ours:expired".to_owned(), tokens::expired()),
        ("ours:nbf".to_owned(), tokens::not_yet_valid()),
        ("ours:wrong-secret".to_owned(), tokens::wrong_secret()),
        ("ours:no-exp".to_owned(), tokens::without_exp()),
        ("ours:json-string".to_owned(), tokens::string_payload()),
        ("ours:bare-string".to_owned(), tokens::bare_string()),
        ("ours:array".to_owned(), tokens::json_payload(&json!([1]))),
        ("ours:huge-exp".to_owned(), tokens::huge_exp()),
        ("ours:alg-none".to_owned(), tokens::alg_none()),
        ("ours:rs256-header".to_owned(), tokens::header_alg("RS256")),
        ("ours:garbage".to_owned(), tokens::garbage()),
        (
            "ours:bare-null".to_owned(),
            tokens::signed_raw(r#"{"alg":"HS256"}"#, b"null"),
        ),
        (
            "ours:typ-jwt-null".to_owned(),
            tokens::signed_raw(r#"{"alg":"HS256","typ":"JWT"}"#, b"null"),
        ),
        (
            "ours:typ-jwt-bare".to_owned(),
            tokens::signed_raw(r#"{"alg":"HS256","typ":"JWT"}"#, b"bare"),
        ),
        (
            "ours:bare-expired-object".to_owned(),
            tokens::signed_raw(r#"{"alg":"HS256"}"#, br#"{"exp":1}"#),
        ),
    ]);
    let mut args = vec!["verify".to_owned(), SECRET.to_owned()];
    args.extend(tokens.iter().map(|(_, t)| t.clone()));
    let verdicts = node_tokens(args, tokens.len()).await;
    let mut table = Vec::new();
    for ((what, token), node) in tokens.iter().zip(&verdicts) {
        let node_ok = node["ok"] == json!(true);
        let ours = seed_accepts(gw.addr, token).await;
        table.push(format!("{what}: node {node_ok}, seed {ours} ({node})"));
        assert_eq!(ours, node_ok, "{what}: node says {node}, seed says {ours}");
    }
    eprintln!("{}", table.join("\n"));
    // The issue's case, spelled out: Node signs the bare text and NestJS accepts it.
    let string = tokens
        .iter()
        .find(|(w, _)| w == "node:string")
        .expect("node:string");
    assert!(string
        .1
        .starts_with("eyJhbGciOiJIUzI1NiJ9.anVzdC1hLXN0cmluZw."));
    assert!(seed_accepts(gw.addr, &string.1).await);
    assert_eq!(gw.terminate().code(), Some(0));
}
