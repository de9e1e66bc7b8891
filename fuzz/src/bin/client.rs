//! The driver's client engine (`chorus::client::Client::connect`) against a
//! hostile server on 127.0.0.1 that answers with the fuzz input: its HTTP
//! framing (status line, headers, `Content-Length`, chunked bodies), its
//! websocket framing, and the Engine.IO / Socket.IO packets inside.
//!
//! Input: one flag byte, then parts separated by a line holding `%%`.
//! - bits 0-1: transport (0 websocket, 1 polling, 2 polling then upgrade);
//! - bit 2: HTTP answers are the raw parts (whole responses) rather than a
//!   well-formed `200` head around each part;
//! - bit 3: after a websocket handshake (done right by the harness) the parts
//!   are written raw (the input writes the frames) rather than each part
//!   wrapped in one unmasked text frame (`b…`: a binary frame).
//!
//! Each HTTP request takes the next part; when the parts run out the server
//! closes every connection. Invariants: no panic anywhere, the connect
//! finishes within its timeout, and a connected client notices the closed
//! server within a bound.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus::client::{Client, ClientConfig, CloseReason, Handler, Incoming, Transport};
use chorus_fuzz::{find, split, PART};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The client's connect timeout: generous, it only bounds a stuck client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connected client may take to notice the server has gone.
const NOTICE_CLOSE: Duration = Duration::from_secs(10);
/// How long the server waits for the next request on a connection.
const NEXT_REQUEST: Duration = Duration::from_millis(200);
/// The most request bytes the server reads before answering.
const MAX_REQUEST: usize = 64 * 1024;

struct Sink;

impl Handler for Sink {
    fn on_message(&mut self, _at: Instant, message: Incoming<'_>) {
        if let Incoming::Event { name, args, .. } = message {
            std::hint::black_box((name.len(), args.len()));
        }
    }
    fn on_closed(&mut self, _at: Instant, reason: CloseReason) {
        std::hint::black_box(reason.to_string());
    }
}

type Parts = Arc<Mutex<VecDeque<Vec<u8>>>>;

fn next(parts: &Parts) -> Option<Vec<u8>> {
    parts.lock().expect("not poisoned").pop_front()
}

/// Reads one request head (and its body, by `Content-Length`); `None` at EOF.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let body_len = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0)
                .min(MAX_REQUEST);
            while buf.len() < end + 4 + body_len {
                if stream.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
            }
            buf.drain(..end + 4 + body_len);
            return Some(head);
        }
        if buf.len() > MAX_REQUEST || stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// One unmasked server-to-client websocket frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

async fn serve(mut stream: TcpStream, parts: Parts, flags: u8) {
    let mut buf = Vec::new();
    // A client stuck on an incomplete answer sends nothing more: give up on
    // the connection then (closing it), rather than wait for its timeout.
    while let Ok(Some(head)) =
        tokio::time::timeout(NEXT_REQUEST, read_request(&mut stream, &mut buf)).await
    {
        if let Some(key) = header(&head, "sec-websocket-key") {
            let accept = derive_accept_key(key.as_bytes());
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            while let Some(part) = next(&parts) {
                let bytes = if flags & 8 != 0 {
                    part
                } else if let Some(rest) = part.strip_prefix(b"b") {
                    frame(0x2, rest)
                } else {
                    frame(0x1, &part)
                };
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            return;
        }
        let Some(part) = next(&parts) else {
            return;
        };
        let response = if flags & 4 != 0 {
            part
        } else {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                part.len()
            )
            .into_bytes();
            r.extend_from_slice(&part);
            r
        };
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

fn main() {
    chorus_fuzz::abort_on_panic();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("bound");
    let listener = Arc::new(listener);
    afl::fuzz_nohook!(|data: &[u8]| {
        let Some((&flags, rest)) = data.split_first() else {
            return;
        };
        let parts: Parts = Arc::new(Mutex::new(
            split(rest, PART).into_iter().map(<[u8]>::to_vec).collect(),
        ));
        let transport = match flags & 3 {
            0 => Transport::Websocket,
            1 => Transport::Polling,
            _ => Transport::PollingUpgrade,
        };
        let mut config = ClientConfig::new(format!("http://{addr}"))
            .namespace("/chat")
            .transport(transport);
        config.connect_timeout = CONNECT_TIMEOUT;
        runtime.block_on(async {
            let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
            let server = {
                let listener = listener.clone();
                let parts = parts.clone();
                let conns = conns.clone();
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let task = tokio::spawn(serve(stream, parts.clone(), flags));
                        conns
                            .lock()
                            .expect("not poisoned")
                            .push(task.abort_handle());
                    }
                })
            };
            let started = Instant::now();
            let result = Client::connect(&config, Sink).await;
            assert!(
                started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(5),
                "connect overran its timeout"
            );
            if let Ok((client, _)) = result {
                // The parts run out and the server closes: the client must notice.
                parts.lock().expect("not poisoned").clear();
                let deadline = Instant::now() + NOTICE_CLOSE;
                let mut noticed = client.is_closed();
                while !noticed && Instant::now() < deadline {
                    let _ = client.emit("sendMessage", &[r#"{"message":"x"}"#]).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    noticed = client.is_closed();
                }
                assert!(noticed, "the client did not notice the server had closed");
                drop(client);
            }
            server.abort();
            let _ = server.await;
            for conn in conns.lock().expect("not poisoned").drain(..) {
                conn.abort();
            }
        });
    });
}
