//! Benchmark helper: a synthetic Engine.IO v4 / Socket.IO v5 server that
//! blasts pre-encoded `newMessage` broadcasts at every connected client as
//! fast as the sockets take them, so that `chorus run` can be measured
//! against a sender that is not the bottleneck.
//!
//! Every message carries the run engine's correlation mark
//! (` #chorus/<vu>/<seq>/<intended µs>/<sent µs>`, from fake sender 0, in
//! order, with zero times), so the receivers take the full receive path:
//! parse the first argument, find the mark, record two latency values and
//! update the ledger. The latencies are meaningless here (the server does
//! not know the run's epoch); only the delivery count per second matters.
//!
//! The whole stream is encoded once, framed as websocket text frames, and
//! written to each client with large `write_all`s once `--clients` clients
//! have joined the namespace. Connections stay open until the client closes
//! them; the process exits when all have, or after `--max-s`. Driven by
//! `bench/run.sh`; see `bench/README.md`.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_protocol::engineio::{self, OpenPacket};
use chorus_protocol::socketio::{self, PacketType};
use clap::Parser;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// A 36-character stand-in for the `{{uuid}}` of the shipped scenarios' messages.
const PAYLOAD: &str = "5f0c2c1e-8a4b-4d7e-9c3a-2b6f1e0d9a87";
/// Bytes per `write_all` of the pre-encoded stream.
const WRITE_SLICE: usize = 64 * 1024;

/// Why serving one client (or starting) failed.
#[derive(Debug, thiserror::Error)]
enum SenderError {
    /// A socket or system call failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The upgrade request is not HTTP.
    #[error("bad upgrade request: {0}")]
    Http(#[from] httparse::Error),
    /// A websocket frame header is invalid.
    #[error("bad frame: {0}")]
    Frame(#[from] tokio_tungstenite::tungstenite::Error),
    /// A text frame is not an Engine.IO / Socket.IO packet.
    #[error("bad packet: {0}")]
    Decode(#[from] chorus_protocol::DecodeError),
    /// A text frame is not UTF-8.
    #[error(transparent)]
    Utf8(#[from] std::str::Utf8Error),
    /// A frame length does not fit in memory.
    #[error(transparent)]
    Length(#[from] std::num::TryFromIntError),
    /// A task failed, or `main` went away.
    #[error("task failed: {0}")]
    Task(String),
    /// The client did something other than the connect sequence.
    #[error("{0}")]
    Protocol(String),
}

/// A synthetic gateway that floods its clients with `newMessage` broadcasts.
#[derive(Parser)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:3100")]
    addr: SocketAddr,
    /// The namespace clients join.
    #[arg(long, default_value = "/chat")]
    namespace: String,
    /// Start sending once this many clients have joined.
    #[arg(long)]
    clients: usize,
    /// Messages sent to every client.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Exit after this many seconds whatever happens.
    #[arg(long, default_value_t = 180)]
    max_s: u64,
}

/// What the connection tasks report to `main`.
#[derive(Default)]
struct Progress {
    joined: AtomicUsize,
    sent_all: AtomicUsize,
    closed: AtomicUsize,
}

/// Appends `text` as one unmasked, final websocket text frame.
fn push_frame(out: &mut Vec<u8>, text: &str) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    header
        .format(text.len() as u64, out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(text.as_bytes());
}

/// The framed stream of `count` marked `newMessage` broadcasts.
fn encode_stream(nsp: &str, count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text = String::new();
    for seq in 0..count {
        let arg = serde_json::json!({
            "username": "blaster",
            "message": format!("{PAYLOAD} {seq} #chorus/0/{seq}/0/0"),
            "timestamp": "2026-01-01T00:00:00.000Z",
        })
        .to_string();
        let event = socketio::encode_event(nsp, None, "newMessage", &[&arg]);
        text.clear();
        engineio::Packet::Message(&event).encode_into(&mut text);
        push_frame(&mut out, &text);
    }
    out
}

/// Reads the next client frame (unmasked) into `payload`; returns its opcode.
async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    payload: &mut Vec<u8>,
) -> Result<OpCode, SenderError> {
    loop {
        let mut cursor = Cursor::new(&buf[..]);
        if let Some((header, len)) = FrameHeader::parse(&mut cursor)? {
            let start = cursor.position() as usize;
            let end = start + usize::try_from(len)?;
            if buf.len() >= end {
                payload.clear();
                payload.extend_from_slice(&buf[start..end]);
                if let Some(mask) = header.mask {
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= mask[i % 4];
                    }
                }
                buf.drain(..end);
                return Ok(header.opcode);
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(SenderError::Protocol(
                "the client closed the connection".into(),
            ));
        }
    }
}

/// The websocket upgrade: reads the request, answers 101.
async fn upgrade(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), SenderError> {
    loop {
        if stream.read_buf(buf).await? == 0 {
            return Err(SenderError::Protocol("closed during the handshake".into()));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(head_len) = request.parse(buf)? else {
            continue;
        };
        let key = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
            .ok_or_else(|| SenderError::Protocol("no Sec-WebSocket-Key".into()))?
            .value;
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key)
        );
        buf.drain(..head_len);
        stream.write_all(response.as_bytes()).await?;
        return Ok(());
    }
}

/// One client: handshake, open packet, namespace CONNECT, then the stream.
async fn serve(
    mut stream: TcpStream,
    id: usize,
    nsp: Arc<str>,
    blast: Arc<[u8]>,
    mut start: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> Result<(), SenderError> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut payload = Vec::new();
    upgrade(&mut stream, &mut buf).await?;
    let sid = format!("blast{id}");
    let open = OpenPacket {
        sid: sid.clone(),
        upgrades: Vec::new(),
        // No heartbeat during the benchmark.
        ping_interval: 600_000,
        ping_timeout: 600_000,
        max_payload: 1_000_000,
    };
    let mut out = Vec::new();
    push_frame(&mut out, &open.encode());
    stream.write_all(&out).await?;

    let opcode = read_frame(&mut stream, &mut buf, &mut payload).await?;
    let text = std::str::from_utf8(&payload)?;
    let engineio::Packet::Message(sio) = engineio::Packet::decode(text)? else {
        return Err(SenderError::Protocol(format!(
            "expected the namespace CONNECT, got {text:?} ({opcode:?})"
        )));
    };
    let packet = socketio::Packet::decode(sio)?;
    if packet.kind != PacketType::Connect || packet.nsp != &*nsp {
        return Err(SenderError::Protocol(format!(
            "expected a CONNECT to {nsp}, got {sio:?}"
        )));
    }
    let data = format!(r#"{{"sid":"{sid}"}}"#);
    let mut answer = String::from("4");
    socketio::encode_into(&mut answer, PacketType::Connect, &nsp, None, 0, Some(&data));
    out.clear();
    push_frame(&mut out, &answer);
    stream.write_all(&out).await?;

    let (mut read, mut write) = stream.into_split();
    // Until the client sends its close frame (or goes away), ignore what it sends.
    let reader = tokio::spawn(async move {
        while let Ok(opcode) = read_frame(&mut read, &mut buf, &mut payload).await {
            if opcode == OpCode::Control(Control::Close) {
                break;
            }
        }
    });
    progress.joined.fetch_add(1, Relaxed);
    start
        .wait_for(|s| *s)
        .await
        .map_err(|e| SenderError::Task(e.to_string()))?;
    for slice in blast.chunks(WRITE_SLICE) {
        write.write_all(slice).await?;
    }
    progress.sent_all.fetch_add(1, Relaxed);
    reader.await.map_err(|e| SenderError::Task(e.to_string()))?;
    Ok(())
}

/// Polls `done` every 10 ms until it holds or `deadline` passes.
async fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), SenderError> {
    let args = Args::parse();
    rlimit::increase_nofile_limit(u64::MAX)?;
    let nsp: Arc<str> = args.namespace.as_str().into();
    let blast: Arc<[u8]> = encode_stream(&nsp, args.messages).into();
    let listener = TcpListener::bind(args.addr).await?;
    println!(
        "listening on {} : {} messages ({} bytes) to each of {} clients",
        listener.local_addr()?,
        args.messages,
        blast.len(),
        args.clients
    );
    let (start_tx, start_rx) = watch::channel(false);
    let progress = Arc::new(Progress::default());
    let accept = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut id = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let (nsp, blast, start, progress) = (
                    nsp.clone(),
                    blast.clone(),
                    start_rx.clone(),
                    progress.clone(),
                );
                tokio::spawn(async move {
                    if let Err(err) = serve(stream, id, nsp, blast, start, progress.clone()).await {
                        eprintln!("client {id}: {err}");
                    }
                    progress.closed.fetch_add(1, Relaxed);
                });
                id += 1;
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(args.max_s);
    wait_until(deadline, || progress.joined.load(Relaxed) >= args.clients).await;
    let started = Instant::now();
    start_tx.send_replace(true);
    println!("{} clients joined; sending", progress.joined.load(Relaxed));
    wait_until(deadline, || progress.sent_all.load(Relaxed) >= args.clients).await;
    let written = started.elapsed().as_secs_f64();
    let sent = progress.sent_all.load(Relaxed) as u64 * args.messages;
    println!(
        "handed {sent} deliveries to the kernel in {written:.2} s ({:.0}/s; the receive rate is what chorus measures)",
        sent as f64 / written
    );
    wait_until(deadline, || {
        progress.closed.load(Relaxed) >= progress.joined.load(Relaxed)
    })
    .await;
    accept.abort();
    println!(
        "{} connections closed; exiting",
        progress.closed.load(Relaxed)
    );
    Ok(())
}
