//! A hostile Socket.IO server for driver tests: plain tokio on 127.0.0.1
//! port 0, speaking just enough HTTP, websocket and Engine.IO to misbehave at
//! one chosen layer. Everything it does is bounded: it writes at most
//! [`WRITE_CAP`] bytes to one connection and stops when the client goes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The most bytes the server writes to one connection in any mode.
pub const WRITE_CAP: usize = 256 << 20;
/// The most bytes of a request head the server reads.
const HEAD_CAP: usize = 64 << 10;

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts TCP connections and never answers (reads and drops what comes).
    Silent,
    /// Accepts TCP connections and closes them at once.
    CloseAtOnce,
    /// Answers every request with bytes that are not HTTP.
    HttpGarbage,
    /// Answers every request with `503 Service Unavailable`.
    HttpRefuse,
    /// Websocket: an open packet announcing `pingInterval` and `pingTimeout`
    /// of 18446744073709551615 ms.
    AbsurdPing,
    /// Websocket: an open packet of 1 MiB.
    HugeOpen,
    /// Websocket: a valid session (open, CONNECT answered, `onlineUsers`),
    /// then garbage: connection `k` gets garbage kind `k % 5` (invalid UTF-8
    /// text, a reserved opcode, an undecodable Engine.IO packet, random
    /// bytes, a frame header announcing 2^63 - 1 bytes).
    GarbageFrames,
    /// Websocket: a valid session, then `451000000000000000-/chat,["onlineUsers"]`.
    AttachmentBomb,
    /// Polling: a valid session, then a poll answered with the chunk size
    /// `ffffffffffffffff` and bytes after it.
    ChunkSizeBomb,
    /// Polling: a valid session, then a poll answered with
    /// `Content-Length: 1000000000000` and bytes until the client goes.
    HugeContentLength,
    /// Polling: a valid session, then a poll answered with a chunked body
    /// whose 64 KiB chunks never end.
    EndlessBody,
    /// Websocket: a valid session, then 32 more `onlineUsers` events of
    /// 256 KiB each (arrays of zeros), the event the flow waits for.
    HugeEvents,
    /// Websocket: a valid session, then a million ACKs for ids the client
    /// never used.
    AckFlood,
    /// Answers every request with a header line that never ends.
    EndlessHeader,
    /// Websocket: a valid session, then a binary event announcing 10
    /// attachments (the most allowed) and 10 binary frames of 2 MiB each.
    AttachmentFlood,
    /// Polling: a valid session whose POSTs after the first (the CONNECT)
    /// are never answered.
    PostNeverAnswered,
    /// Websocket: a valid session, then the server stops reading (with a
    /// 4 KiB receive buffer) and sends pings carrying 100 bytes without pause,
    /// each asking for a pong as large.
    PingFloodNoRead,
    /// Websocket: a valid session with pings every 300 ms (timeout 300 ms);
    /// three pings, then silence with the connection left open.
    StopsPinging,
    /// Websocket: a valid session with pings every 300 ms, answering
    /// `joinChat` with `joined`; each connection is closed after a random
    /// 300 to 1500 ms.
    RandomClose,
}

/// A running hostile server; stops when dropped.
pub struct Hostile {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Hostile {
    /// Starts a server misbehaving as `mode` on 127.0.0.1 port 0.
    pub async fn start(mode: Mode) -> Self {
        let socket = TcpSocket::new_v4().expect("a socket");
        if mode == Mode::PingFloodNoRead {
            // A small receive window, so that what the client writes backs up soon.
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        }
        socket
            .bind("127.0.0.1:0".parse().expect("an address"))
            .expect("bind");
        let listener = socket.listen(1024).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let k = count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let _ = serve(mode, k, stream).await;
                });
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many TCP connections it accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Io = std::io::Result<()>;

/// One connection, `k`-th accepted.
async fn serve(mode: Mode, k: usize, mut s: TcpStream) -> Io {
    match mode {
        Mode::Silent => return drain(&mut s).await,
        Mode::CloseAtOnce => return Ok(()),
        _ => {}
    }
    let Some(req) = read_request(&mut s).await? else {
        return Ok(());
    };
    match mode {
        Mode::HttpGarbage => {
            s.write_all(b"\x00\x01garbage \xff\xfe not HTTP at all\r\n\r\n")
                .await?;
            drain(&mut s).await
        }
        Mode::HttpRefuse => {
            s.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n",
            )
            .await
        }
        Mode::EndlessHeader => {
            s.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ").await?;
            stream_blocks(&mut s, &[b'a'; 4096], None).await
        }
        Mode::ChunkSizeBomb
        | Mode::HugeContentLength
        | Mode::EndlessBody
        | Mode::PostNeverAnswered => serve_polling(mode, s, req).await,
        _ if !req.websocket => {
            // Websocket modes answer polling with a 400, as socket.io does
            // for an unknown transport.
            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await
        }
        _ => serve_websocket(mode, k, s, req).await,
    }
}

/// What the server looked at in a request.
struct Request {
    websocket: bool,
    ws_key: Option<String>,
    has_sid: bool,
    is_post: bool,
    content_length: usize,
}

/// Reads one request head (and a POST's body); `None` when the client went.
async fn read_request(s: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > HEAD_CAP {
            return Ok(None);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let first = head.lines().next().unwrap_or_default().to_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let req = Request {
        websocket: first.contains("transport=websocket"),
        ws_key: header("sec-websocket-key"),
        has_sid: first.contains("sid="),
        is_post: first.starts_with("POST"),
        content_length: header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    // Read and drop the body.
    let mut have = buf.len() - head_end;
    while have < req.content_length.min(HEAD_CAP) {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        have += n;
    }
    Ok(Some(req))
}

/// Reads and drops everything until the client goes.
async fn drain(s: &mut TcpStream) -> Io {
    let mut sink = [0u8; 4096];
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}

/// An open packet with these ping settings and `pad` extra bytes of padding.
fn open_packet(ping_interval: &str, ping_timeout: &str, upgrades: &str, pad: usize) -> String {
    let padding = if pad == 0 {
        String::new()
    } else {
        format!(",\"pad\":\"{}\"", "p".repeat(pad))
    };
    format!(
        "0{{\"sid\":\"hostile-sid\",\"upgrades\":[{upgrades}],\"pingInterval\":{ping_interval},\"pingTimeout\":{ping_timeout},\"maxPayload\":1000000{padding}}}"
    )
}

/// The CONNECT answer and the `onlineUsers` event a gateway sends after it.
const CONNECTED: [&str; 2] = [
    "40/chat,{\"sid\":\"hostile-socket-00000\"}",
    "42/chat,[\"onlineUsers\",[]]",
];

/// The polling modes: a handshake, one poll with the CONNECT answer, then
/// the bomb on the next poll. POST connections get `ok`.
async fn serve_polling(mode: Mode, mut s: TcpStream, first: Request) -> Io {
    let mut req = first;
    let mut polls = 0;
    let mut posts = 0;
    loop {
        if req.is_post && mode == Mode::PostNeverAnswered && posts > 0 {
            return drain(&mut s).await;
        }
        if req.is_post {
            posts += 1;
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
            )
            .await?;
        } else if !req.has_sid {
            let open = open_packet("25000", "20000", "", 0);
            write_response(&mut s, &open).await?;
        } else {
            polls += 1;
            if polls == 1 {
                write_response(&mut s, &CONNECTED.join("\x1e")).await?;
            } else if mode == Mode::PostNeverAnswered {
                // Hold the poll, as a gateway with nothing to send does.
                return drain(&mut s).await;
            } else {
                return bomb(mode, &mut s).await;
            }
        }
        match read_request(&mut s).await? {
            Some(next) => req = next,
            None => return Ok(()),
        }
    }
}

async fn write_response(s: &mut TcpStream, body: &str) -> Io {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await
}

/// The answer to a poll that no client should survive by allocating.
async fn bomb(mode: Mode, s: &mut TcpStream) -> Io {
    let block = vec![b'x'; 64 << 10];
    match mode {
        Mode::ChunkSizeBomb => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
            )
            .await?;
            stream_blocks(s, &block, None).await
        }
        Mode::HugeContentLength => {
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000000000\r\n\r\n")
                .await?;
            stream_blocks(s, &block, None).await
        }
        _ => {
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await?;
            stream_blocks(s, &block, Some(b"10000\r\n")).await
        }
    }
}

/// Writes `block` (each time after `prefix` and followed by CRLF, when a
/// prefix is given) until the client goes or [`WRITE_CAP`] bytes were written.
async fn stream_blocks(s: &mut TcpStream, block: &[u8], prefix: Option<&[u8]>) -> Io {
    let mut written = 0;
    while written < WRITE_CAP {
        if let Some(p) = prefix {
            s.write_all(p).await?;
        }
        s.write_all(block).await?;
        if prefix.is_some() {
            s.write_all(b"\r\n").await?;
        }
        written += block.len();
    }
    Ok(())
}

/// An unmasked server frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n < 65536 => {
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

fn text(payload: &str) -> Vec<u8> {
    frame(0x1, payload.as_bytes())
}

/// Reads one masked client frame: its opcode and payload (up to 1 MiB);
/// `None` when the client went or sent something else.
async fn read_frame<R: AsyncRead + Unpin>(s: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 2];
    if s.read_exact(&mut h).await.is_err() {
        return Ok(None);
    }
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > 1 << 20 {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    Ok(Some((h[0] & 0x0f, payload)))
}

/// Reads client frames until a text frame starting with `prefix`; `false`
/// when the client went first.
async fn await_text(s: &mut TcpStream, prefix: &str) -> std::io::Result<bool> {
    while let Some((opcode, payload)) = read_frame(s).await? {
        if opcode == 0x8 {
            return Ok(false);
        }
        if opcode == 0x1 && payload.starts_with(prefix.as_bytes()) {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn serve_websocket(mode: Mode, k: usize, mut s: TcpStream, req: Request) -> Io {
    let key = req.ws_key.unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    s.write_all(answer.as_bytes()).await?;
    let fast = matches!(mode, Mode::StopsPinging | Mode::RandomClose);
    let open = match mode {
        Mode::AbsurdPing => open_packet("18446744073709551615", "18446744073709551615", "", 0),
        Mode::HugeOpen => open_packet("25000", "20000", "", 1 << 20),
        _ if fast => open_packet("300", "300", "", 0),
        _ => open_packet("25000", "20000", "", 0),
    };
    s.write_all(&text(&open)).await?;
    if matches!(mode, Mode::AbsurdPing | Mode::HugeOpen) {
        // A client that accepted this open packet would go on to CONNECT.
        if await_text(&mut s, "40").await? {
            for packet in CONNECTED {
                s.write_all(&text(packet)).await?;
            }
        }
        return drain(&mut s).await;
    }
    if !await_text(&mut s, "40").await? {
        return Ok(());
    }
    for packet in CONNECTED {
        s.write_all(&text(packet)).await?;
    }
    match mode {
        Mode::GarbageFrames => {
            // Let the flow get going, then break the protocol.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let garbage: Vec<u8> = match k % 5 {
                0 => frame(0x1, b"42/chat,[\"x\xff\xfe\"]"),
                1 => frame(0x3, b"reserved opcode"),
                2 => text("9not an engine.io packet"),
                3 => (0..4096u32)
                    .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                    .collect(),
                _ => {
                    let mut f = vec![0x81, 127];
                    f.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
                    f
                }
            };
            s.write_all(&garbage).await?;
            drain(&mut s).await
        }
        Mode::AttachmentBomb => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.write_all(&text("451000000000000000-/chat,[\"onlineUsers\"]"))
                .await?;
            drain(&mut s).await
        }
        Mode::AttachmentFlood => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let placeholders: Vec<String> = (0..10)
                .map(|n| format!("{{\"_placeholder\":true,\"num\":{n}}}"))
                .collect();
            let header = format!("4510-/chat,[\"files\",{}]", placeholders.join(","));
            s.write_all(&text(&header)).await?;
            let attachment = frame(0x2, &vec![7u8; 2 << 20]);
            for _ in 0..10 {
                s.write_all(&attachment).await?;
            }
            drain(&mut s).await
        }
        Mode::HugeEvents => {
            let zeros = vec!["0"; 128 << 10].join(",");
            let event = text(&format!("42/chat,[\"onlineUsers\",[{zeros}]]"));
            for _ in 0..32 {
                s.write_all(&event).await?;
            }
            drain(&mut s).await
        }
        Mode::AckFlood => {
            let mut batch = Vec::with_capacity(64 << 10);
            for id in 1_000_000u64..2_000_000 {
                batch.extend(text(&format!("43/chat,{id}[\"unsolicited\"]")));
                if batch.len() > 60 << 10 {
                    s.write_all(&batch).await?;
                    batch.clear();
                }
            }
            s.write_all(&batch).await?;
            drain(&mut s).await
        }
        Mode::PingFloodNoRead => {
            let ping = text(&format!("2{}", "p".repeat(100)));
            let mut written = 0;
            while written < WRITE_CAP {
                s.write_all(&ping).await?;
                written += ping.len();
            }
            Ok(())
        }
        Mode::StopsPinging => {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                s.write_all(&text("2")).await?;
            }
            drain(&mut s).await
        }
        _ => random_close(k, s).await,
    }
}

/// A plausible gateway (pings, `joined` for `joinChat`) until a random moment
/// between 300 and 1500 ms after the CONNECT, when it closes the connection.
async fn random_close(k: usize, s: TcpStream) -> Io {
    let (mut read, mut write) = s.into_split();
    let (joins, mut joined) = tokio::sync::mpsc::channel::<()>(16);
    let reader = tokio::spawn(async move {
        while let Ok(Some((opcode, payload))) = read_frame(&mut read).await {
            if opcode == 0x1 && payload.starts_with(b"42/chat,[\"joinChat\"") {
                let _ = joins.send(()).await;
            }
        }
    });
    let life = Duration::from_millis(300 + (k as u64 * 7919) % 1200);
    let ends = tokio::time::Instant::now() + life;
    let mut ping = tokio::time::interval(Duration::from_millis(300));
    let result = loop {
        tokio::select! {
            () = tokio::time::sleep_until(ends) => break Ok(()),
            _ = ping.tick() => {
                if let Err(e) = write.write_all(&text("2")).await {
                    break Err(e);
                }
            }
            got = joined.recv() => {
                if got.is_none() {
                    break Ok(());
                }
                let answer = text("42/chat,[\"joined\",{\"username\":\"x\",\"message\":\"ok\"}]");
                if let Err(e) = write.write_all(&answer).await {
                    break Err(e);
                }
            }
        }
    };
    reader.abort();
    result
}
