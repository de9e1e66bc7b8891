//! The websocket transport: the upgrade handshake and client-side framing.
//!
//! tungstenite's `FrameHeader` does the bit-level header work and its handshake
//! helpers make and check the keys, but the buffers are ours: tungstenite 0.28
//! reserves the whole payload of a large frame inside its read `BytesMut` and
//! keeps that allocation for the life of the connection (later frames are split
//! off the same block), so one 1 MB `onlineUsers` list would pin 1 MB on every
//! client. Here a frame larger than the configured buffer grows the buffer only
//! until it has been handled; then the buffer goes back to its configured size.

use std::io::Cursor;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::error::{ClientError, Limit, LimitExceeded};
use super::http::{status_error, HttpConn};
use super::rx_time::{RxClock, RxTime};
use super::tls::{ReadHalf, WriteHalf};

/// The largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// Upgrades an HTTP connection to a websocket at `target`.
pub(crate) async fn handshake(
    mut conn: HttpConn,
    host: &str,
    target: &str,
    headers: &[(String, String)],
    read_buffer: usize,
    write_buffer: usize,
) -> Result<(WsReader, WsWriter), ClientError> {
    let key = generate_key();
    let mut all = Vec::with_capacity(headers.len() + 4);
    all.extend(
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key.as_str()),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned())),
    );
    all.extend_from_slice(headers);
    conn.send_request("GET", target, host, &all, &[]).await?;
    let head = conn.read_head().await?;
    if head.status != 101 {
        let body = conn.read_body(&head).await.unwrap_or_default();
        return Err(status_error(head.status, &body));
    }
    if head.ws_accept.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(ClientError::Protocol("wrong Sec-WebSocket-Accept".into()));
    }
    let limits = *conn.limits();
    let (stream, rest, rx) = conn.into_parts();
    let clock = stream.clock();
    let (read, write) = stream.into_split();
    let mut buf = Vec::with_capacity(read_buffer.max(rest.len()));
    buf.extend_from_slice(&rest);
    Ok((
        WsReader {
            half: read,
            buf,
            start: 0,
            consumed: 0,
            keep: read_buffer,
            message: Vec::new(),
            message_opcode: None,
            message_ready: false,
            clock,
            rx,
            max_frame: limits.max_ws_frame,
            max_message: limits.max_ws_message,
        },
        WsWriter {
            half: write,
            buf: Vec::new(),
            keep: write_buffer,
            io_timeout: limits.io_timeout,
        },
    ))
}

/// One websocket message, borrowed from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsMessage<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping, to be answered with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A close frame and its status code, if any.
    Close(Option<u16>),
}

/// The reading half of a websocket.
#[derive(Debug)]
pub(crate) struct WsReader {
    half: ReadHalf,
    /// Bytes read; `buf[start..]` is not yet handed out.
    buf: Vec<u8>,
    start: usize,
    /// Bytes of the last handed-out frame, dropped on the next call.
    consumed: usize,
    /// The capacity kept between frames.
    keep: usize,
    /// A fragmented message being put together, and its opcode.
    message: Vec<u8>,
    message_opcode: Option<Data>,
    /// Whether `message` holds a complete message handed out by the last call.
    message_ready: bool,
    /// The socket's receive clock.
    clock: RxClock,
    /// When the read that completed the current frame was received.
    rx: RxTime,
    /// The largest frame payload accepted.
    max_frame: usize,
    /// The largest message accepted, fragments together.
    max_message: usize,
}

impl WsReader {
    /// The largest frame and message the reader accepts.
    pub fn max_sizes(&self) -> (usize, usize) {
        (self.max_frame, self.max_message)
    }

    /// Changes the largest frame and message the reader accepts (e.g. only
    /// the open packet's bound before the open packet).
    pub fn set_max_sizes(&mut self, (frame, message): (usize, usize)) {
        self.max_frame = frame;
        self.max_message = message;
    }

    /// Reads the next message. Returns it with when the read that completed
    /// it was received (its last byte). Pongs from the server are skipped.
    pub async fn next(&mut self) -> Result<(RxTime, WsMessage<'_>), ClientError> {
        self.release();
        loop {
            let Some((header, len)) = self.parse_header()? else {
                self.fill(0).await?;
                continue;
            };
            let head_len = header.len(len as u64);
            if self.buf.len() - self.start < head_len + len {
                self.fill(head_len + len).await?;
                continue;
            }
            let payload_start = self.start + head_len;
            self.consumed = head_len + len;
            let is_final = header.is_final;
            match header.opcode {
                OpCode::Control(Control::Pong) => {
                    self.release();
                    continue;
                }
                OpCode::Control(Control::Ping) => {
                    return Ok((
                        self.rx,
                        WsMessage::Ping(&self.buf[payload_start..payload_start + len]),
                    ))
                }
                OpCode::Control(Control::Close) => {
                    let payload = &self.buf[payload_start..payload_start + len];
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok((self.rx, WsMessage::Close(code)));
                }
                OpCode::Data(Data::Continue) => {
                    let Some(opcode) = self.message_opcode else {
                        return Err(ClientError::Protocol(
                            "continuation without a message".into(),
                        ));
                    };
                    self.append_fragment(payload_start, len)?;
                    if !is_final {
                        self.release();
                        continue;
                    }
                    self.message_opcode = None;
                    self.message_ready = true;
                    return Self::message(self.rx, opcode, &self.message);
                }
                OpCode::Data(opcode @ (Data::Text | Data::Binary)) => {
                    if self.message_opcode.is_some() {
                        return Err(ClientError::Protocol(
                            "new message inside a fragmented one".into(),
                        ));
                    }
                    if !is_final {
                        self.message_opcode = Some(opcode);
                        self.append_fragment(payload_start, len)?;
                        self.release();
                        continue;
                    }
                    LimitExceeded::check(Limit::WsMessageSize, len, self.max_message)?;
                    return Self::message(
                        self.rx,
                        opcode,
                        &self.buf[payload_start..payload_start + len],
                    );
                }
                other => return Err(ClientError::Protocol(format!("unexpected opcode {other}"))),
            }
        }
    }

    /// The capacity of the read buffers (what an idle connection keeps).
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity() + self.message.capacity()
    }

    fn message(
        at: RxTime,
        opcode: Data,
        bytes: &[u8],
    ) -> Result<(RxTime, WsMessage<'_>), ClientError> {
        Ok(match opcode {
            Data::Text => (
                at,
                WsMessage::Text(
                    std::str::from_utf8(bytes)
                        .map_err(|_| ClientError::Protocol("text frame is not UTF-8".into()))?,
                ),
            ),
            _ => (at, WsMessage::Binary(bytes)),
        })
    }

    /// Parses the header at `start`, checking what a server may send.
    fn parse_header(&self) -> Result<Option<(FrameHeader, usize)>, ClientError> {
        let mut cursor = Cursor::new(&self.buf[self.start..]);
        let parsed = FrameHeader::parse(&mut cursor)
            .map_err(|e| ClientError::Protocol(format!("bad websocket frame: {e}")))?;
        let Some((header, len)) = parsed else {
            return Ok(None);
        };
        if header.mask.is_some() || header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(ClientError::Protocol(
                "masked or extended frame from the server".into(),
            ));
        }
        if matches!(header.opcode, OpCode::Control(_))
            && (!header.is_final || len > MAX_CONTROL as u64)
        {
            return Err(ClientError::Protocol(format!(
                "control frame of {len} bytes or fragmented"
            )));
        }
        // Checked before any buffer is grown for the frame.
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= self.max_frame)
            .ok_or_else(|| LimitExceeded::new(Limit::WsFrameSize, len, self.max_frame as u64))?;
        Ok(Some((header, len)))
    }

    fn append_fragment(&mut self, from: usize, len: usize) -> Result<(), ClientError> {
        LimitExceeded::check(
            Limit::WsMessageSize,
            self.message.len().saturating_add(len),
            self.max_message,
        )?;
        self.message.extend_from_slice(&self.buf[from..from + len]);
        Ok(())
    }

    /// Drops what the last call handed out and gives back memory grown for a large frame.
    fn release(&mut self) {
        self.start += std::mem::take(&mut self.consumed);
        if self.start == self.buf.len() {
            self.start = 0;
            self.buf.clear();
            if self.buf.capacity() > self.keep {
                self.buf = Vec::with_capacity(self.keep);
            }
        }
        if std::mem::take(&mut self.message_ready) {
            self.message.clear();
            if self.message.capacity() > self.keep {
                self.message = Vec::new();
            }
        }
    }

    /// Reads at least one more byte so that `buf[start..]` can hold `need` bytes.
    async fn fill(&mut self, need: usize) -> Result<(), ClientError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let want = need.max(self.buf.len() + 1).max(self.keep);
        if self.buf.capacity() < want {
            self.buf.reserve_exact(want - self.buf.len());
        } else if self.buf.capacity() > 2 * want {
            // Left over from a large frame that was followed by a partial one.
            self.buf.shrink_to(want);
        }
        let n = self.half.read_buf(&mut self.buf).await?;
        self.rx = self.clock.time(Instant::now());
        if n == 0 {
            return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }
}

/// The writing half of a websocket: masks and writes whole frames.
#[derive(Debug)]
pub(crate) struct WsWriter {
    half: WriteHalf,
    buf: Vec<u8>,
    keep: usize,
    /// How long one frame may take to be handed to the socket.
    io_timeout: std::time::Duration,
}

impl WsWriter {
    /// Writes one text frame whose payload is the concatenation of `parts`.
    /// Returns the instant the frame was handed to the socket.
    pub async fn send_text(&mut self, parts: &[&str]) -> Result<Instant, ClientError> {
        self.send(OpCode::Data(Data::Text), parts.iter().map(|p| p.as_bytes()))
            .await
    }

    /// Answers a websocket ping.
    pub async fn send_pong(&mut self, payload: &[u8]) -> Result<Instant, ClientError> {
        self.send(OpCode::Control(Control::Pong), [payload]).await
    }

    /// Sends a close frame (1000) and shuts the write side down.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        self.send(
            OpCode::Control(Control::Close),
            [&1000u16.to_be_bytes()[..]],
        )
        .await?;
        self.half.shutdown().await?;
        Ok(())
    }

    async fn send<'a>(
        &mut self,
        opcode: OpCode,
        parts: impl IntoIterator<Item = &'a [u8]> + Clone,
    ) -> Result<Instant, ClientError> {
        let len: usize = parts.clone().into_iter().map(<[u8]>::len).sum();
        let mask: [u8; 4] = rand::random();
        let header = FrameHeader {
            opcode,
            mask: Some(mask),
            ..FrameHeader::default()
        };
        self.buf.clear();
        self.buf.reserve(header.len(len as u64) + len);
        header
            .format(len as u64, &mut self.buf)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let start = self.buf.len();
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        for (i, b) in self.buf[start..].iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        let write = async {
            self.half.write_all(&self.buf).await?;
            // TLS may keep records back after `write_all`; TCP's flush does nothing.
            self.half.flush().await
        };
        let result = tokio::time::timeout(self.io_timeout, write).await;
        let at = Instant::now();
        if self.buf.capacity() > self.keep {
            self.buf = Vec::new();
        }
        match result {
            Ok(written) => written?,
            Err(_) => return Err(io_timeout(self.io_timeout).into()),
        }
        Ok(at)
    }
}

/// The breach for a server that did not take or answer a request within `after`.
pub(crate) fn io_timeout(after: std::time::Duration) -> LimitExceeded {
    let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    LimitExceeded::new(Limit::IoTimeout, ms.saturating_add(1), ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Limits;
    use tokio::net::{TcpListener, TcpStream};

    /// An unmasked server frame.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
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

    /// A reader and writer over a real loopback connection, and the server side.
    async fn pair() -> (WsReader, WsWriter, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let client = crate::client::rx_time::RxTcp::without_timestamps(client);
        let clock = client.clock();
        let (read, write) = client.into_split();
        let reader = WsReader {
            half: ReadHalf::Plain(read),
            buf: Vec::with_capacity(4096),
            start: 0,
            consumed: 0,
            keep: 4096,
            message: Vec::new(),
            message_opcode: None,
            message_ready: false,
            rx: clock.time(Instant::now()),
            clock,
            max_frame: Limits::default().max_ws_frame,
            max_message: Limits::default().max_ws_message,
        };
        let writer = WsWriter {
            half: WriteHalf::Plain(write),
            buf: Vec::new(),
            keep: 4096,
            io_timeout: Limits::default().io_timeout,
        };
        (reader, writer, server)
    }

    #[tokio::test]
    async fn large_frame_does_not_leave_a_large_buffer() {
        let (mut reader, _writer, mut server) = pair().await;
        let big = "x".repeat(1 << 20);
        let mut bytes = frame(0x1, true, big.as_bytes());
        bytes.extend(frame(0x1, true, b"42[\"small\"]"));
        tokio::spawn(async move {
            server.write_all(&bytes).await.unwrap();
            server
        });
        let (_, m) = reader.next().await.unwrap();
        assert_eq!(m, WsMessage::Text(&big));
        assert!(reader.buffer_capacity() >= 1 << 20);
        let (_, m) = reader.next().await.unwrap();
        assert_eq!(m, WsMessage::Text("42[\"small\"]"));
        // The next read releases the small frame; the buffer is back to its size.
        reader.release();
        assert!(
            reader.buffer_capacity() <= 4096,
            "{}",
            reader.buffer_capacity()
        );
    }

    #[tokio::test]
    async fn reassembles_fragments_and_reports_control_frames() {
        let (mut reader, _writer, mut server) = pair().await;
        let mut bytes = frame(0x1, false, b"42[\"a");
        bytes.extend(frame(0x9, true, b"hb"));
        bytes.extend(frame(0x0, true, b"b\"]"));
        bytes.extend(frame(0xA, true, b""));
        bytes.extend(frame(0x2, true, &[1, 2]));
        bytes.extend(frame(0x8, true, &1009u16.to_be_bytes()));
        server.write_all(&bytes).await.unwrap();
        assert_eq!(reader.next().await.unwrap().1, WsMessage::Ping(b"hb"));
        assert_eq!(
            reader.next().await.unwrap().1,
            WsMessage::Text("42[\"ab\"]")
        );
        assert_eq!(reader.next().await.unwrap().1, WsMessage::Binary(&[1, 2]));
        assert_eq!(reader.next().await.unwrap().1, WsMessage::Close(Some(1009)));
    }

    #[tokio::test]
    async fn writes_masked_frames() {
        let (_reader, mut writer, mut server) = pair().await;
        writer.send_text(&["4", "2[\"e\"]"]).await.unwrap();
        let mut got = [0u8; 2 + 4 + 7];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got[0], 0x81);
        assert_eq!(got[1], 0x80 | 7);
        let mask = [got[2], got[3], got[4], got[5]];
        let payload: Vec<u8> = got[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        assert_eq!(payload, b"42[\"e\"]");
    }

    fn breach(err: ClientError) -> (Limit, u128) {
        match err {
            ClientError::Limit(b) => (b.limit, b.actual),
            other => panic!("expected a limit breach, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_huge_length_field_is_refused_before_any_buffer_grows() {
        let (mut reader, _writer, mut server) = pair().await;
        let mut header = vec![0x81, 127];
        header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        server.write_all(&header).await.unwrap();
        let err = reader.next().await.unwrap_err();
        assert_eq!(breach(err), (Limit::WsFrameSize, u128::from(u64::MAX >> 1)));
        assert!(
            reader.buffer_capacity() <= 8192,
            "{}",
            reader.buffer_capacity()
        );
    }

    #[tokio::test]
    async fn frames_and_messages_are_bounded_by_the_configured_sizes() {
        let (mut reader, _writer, mut server) = pair().await;
        reader.set_max_sizes((8, 12));
        let mut bytes = frame(0x1, true, b"12345678");
        bytes.extend(frame(0x1, false, b"abcdefgh"));
        bytes.extend(frame(0x0, false, b"ijkl"));
        bytes.extend(frame(0x0, true, b"m"));
        server.write_all(&bytes).await.unwrap();
        assert_eq!(reader.next().await.unwrap().1, WsMessage::Text("12345678"));
        // 8 + 4 fit; the 13th byte does not.
        let err = reader.next().await.unwrap_err();
        assert_eq!(breach(err), (Limit::WsMessageSize, 13));

        let (mut reader, _writer, mut server) = pair().await;
        reader.set_max_sizes((8, 12));
        server
            .write_all(&frame(0x1, true, b"123456789"))
            .await
            .unwrap();
        assert_eq!(
            breach(reader.next().await.unwrap_err()),
            (Limit::WsFrameSize, 9)
        );

        // A message bound below the frame bound holds for unfragmented frames too.
        let (mut reader, _writer, mut server) = pair().await;
        reader.set_max_sizes((8, 4));
        server.write_all(&frame(0x1, true, b"12345")).await.unwrap();
        assert_eq!(
            breach(reader.next().await.unwrap_err()),
            (Limit::WsMessageSize, 5)
        );
    }

    #[tokio::test]
    async fn oversized_or_fragmented_control_frames_are_refused() {
        let (mut reader, _writer, mut server) = pair().await;
        server
            .write_all(&frame(0x9, true, &[0; 126]))
            .await
            .unwrap();
        assert!(matches!(reader.next().await, Err(ClientError::Protocol(_))));
        let (mut reader, _writer, mut server) = pair().await;
        server.write_all(&frame(0x9, false, b"hb")).await.unwrap();
        assert!(matches!(reader.next().await, Err(ClientError::Protocol(_))));
    }

    #[tokio::test]
    async fn a_server_that_stops_reading_times_the_write_out() {
        let (_reader, mut writer, _server) = pair().await;
        writer.io_timeout = std::time::Duration::from_millis(300);
        // The server never reads: the socket buffers fill, then the write waits.
        let big = "x".repeat(1 << 20);
        let mut result = Ok(Instant::now());
        for _ in 0..64 {
            result = writer.send_text(&[&big]).await;
            if result.is_err() {
                break;
            }
        }
        assert_eq!(breach(result.unwrap_err()).0, Limit::IoTimeout);
    }
}
