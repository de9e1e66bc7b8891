//! A minimal HTTP/1.1 client over one keep-alive TCP connection: enough for
//! Engine.IO long-polling and the websocket upgrade request.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rx_time::{RxClock, RxTime};
use super::tls::Stream;

use super::config::Limits;
use super::error::{ClientError, Limit, LimitExceeded};

/// The most bytes of an error body we keep for an error message.
const ERROR_BODY_LIMIT: usize = 200;

/// The parts of a response head we use.
#[derive(Debug)]
pub(crate) struct Head {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, when present.
    pub content_length: Option<usize>,
    /// Whether the body is `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Sec-WebSocket-Accept`, when present.
    pub ws_accept: Option<String>,
}

/// One HTTP/1.1 connection, with the bytes read past the last response.
#[derive(Debug)]
pub(crate) struct HttpConn {
    stream: Stream,
    buf: Vec<u8>,
    keep: usize,
    limits: Limits,
    clock: RxClock,
    /// When the latest read returned (its receive time is the clock's).
    read_at: Instant,
}

impl HttpConn {
    /// Wraps a connected stream; `keep` is the buffer capacity kept between
    /// responses, `limits` bound what a response may hold.
    pub fn new(stream: Stream, keep: usize, limits: Limits) -> Self {
        let clock = stream.clock();
        Self {
            stream,
            buf: Vec::new(),
            keep,
            limits,
            read_at: Instant::now(),
            clock,
        }
    }

    /// The bounds this connection reads with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the bounds for the responses that follow (e.g. a smaller body
    /// bound for the handshake, whose body is only the open packet).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Writes one request; `body` is sent as `text/plain` when not empty.
    pub async fn send_request(
        &mut self,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), ClientError> {
        let mut req = Vec::with_capacity(256 + body.len());
        req.extend_from_slice(format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n").as_bytes());
        for (name, value) in headers {
            req.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if method == "POST" {
            req.extend_from_slice(
                format!(
                    "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.stream.write_all(&req).await?;
        // TLS may keep records back after `write_all`; TCP's flush does nothing.
        self.stream.flush().await?;
        Ok(())
    }

    /// Sends a request and reads the whole response. Returns when the read
    /// that completed the body was received, the status and the body.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(RxTime, u16, Vec<u8>), ClientError> {
        self.send_request(method, target, host, headers, body)
            .await?;
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        let at = self.clock.time(self.read_at);
        if self.buf.is_empty() && self.buf.capacity() > self.keep {
            self.buf = Vec::new();
        }
        Ok((at, head.status, body))
    }

    /// Reads a response head and leaves what follows it in the buffer.
    pub async fn read_head(&mut self) -> Result<Head, ClientError> {
        loop {
            match parse_head(&self.buf, &self.limits)? {
                Some((len, head)) => {
                    self.buf.drain(..len);
                    return Ok(head);
                }
                None => self.fill().await?,
            }
        }
    }

    /// Reads the body that `head` announces.
    pub async fn read_body(&mut self, head: &Head) -> Result<Vec<u8>, ClientError> {
        if head.chunked {
            return self.read_chunked().await;
        }
        let len = head.content_length.unwrap_or(0);
        while self.buf.len() < len {
            self.fill().await?;
        }
        let rest = self.buf.split_off(len);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// Reads a `Transfer-Encoding: chunked` body.
    async fn read_chunked(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            let (start, size) = loop {
                match parse_chunk(&self.buf, body.len(), &self.limits)? {
                    Some(chunk) => break chunk,
                    None => self.fill().await?,
                }
            };
            // The chunk and its trailing CRLF (for the last chunk: the final CRLF).
            let end = start + size;
            while self.buf.len() < end + 2 {
                self.fill().await?;
            }
            if &self.buf[end..end + 2] != b"\r\n" {
                return Err(ClientError::Protocol(
                    "HTTP chunk not followed by CRLF".into(),
                ));
            }
            body.extend_from_slice(&self.buf[start..end]);
            self.buf.drain(..end + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }

    /// Reads more bytes into the buffer; the end of the stream is an error.
    async fn fill(&mut self) -> Result<(), ClientError> {
        self.buf.reserve(self.keep.max(1024));
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        self.read_at = Instant::now();
        Ok(())
    }

    /// The stream, the bytes already read past the last response head, and
    /// when the latest read was received.
    pub fn into_parts(self) -> (Stream, Vec<u8>, RxTime) {
        let rx = self.clock.time(self.read_at);
        (self.stream, self.buf, rx)
    }
}

/// Parses a response head at the start of `buf`: its length and what we use
/// of it, `None` while incomplete. A head over `limits.max_http_head` bytes
/// (complete or not), with more than `limits.max_http_headers` headers, or
/// announcing a body over `limits.max_http_body` is a [`LimitExceeded`].
fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(usize, Head)>, ClientError> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_http_headers];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            LimitExceeded::check(Limit::HttpHeadSize, buf.len(), limits.max_http_head)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(LimitExceeded::new(
                Limit::HttpHeaderCount,
                limits.max_http_headers as u64 + 1,
                limits.max_http_headers as u64,
            )
            .into())
        }
        // A TLS record (an alert or a handshake) where HTTP was expected.
        Err(_) if matches!(buf, [0x15 | 0x16, 0x03, ..]) => {
            return Err(ClientError::Protocol(
                "the server answered in TLS: use an https:// or wss:// target".into(),
            ))
        }
        Err(e) => return Err(ClientError::Protocol(format!("bad HTTP response: {e}"))),
    };
    LimitExceeded::check(Limit::HttpHeadSize, len, limits.max_http_head)?;
    let mut head = Head {
        status: resp.code.unwrap_or_default(),
        content_length: None,
        chunked: false,
        ws_accept: None,
    };
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            let announced: u64 = value
                .trim()
                .parse()
                .map_err(|_| ClientError::Protocol(format!("bad Content-Length {value:?}")))?;
            let len = usize::try_from(announced)
                .ok()
                .filter(|&n| n <= limits.max_http_body)
                .ok_or_else(|| {
                    LimitExceeded::new(Limit::HttpBodySize, announced, limits.max_http_body as u64)
                })?;
            head.content_length = Some(len);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            head.ws_accept = Some(value.trim().to_owned());
        }
    }
    Ok(Some((len, head)))
}

/// Parses the chunk-size line at the start of `buf`, when `so_far` bytes of
/// the body have been read: where the chunk's data starts and its size,
/// `None` while the line is incomplete. A chunk that would take the body over
/// `limits.max_http_body`, or a size line longer than `limits.max_http_head`,
/// is a [`LimitExceeded`]; no arithmetic is done on the announced size before
/// it has been bounded.
fn parse_chunk(
    buf: &[u8],
    so_far: usize,
    limits: &Limits,
) -> Result<Option<(usize, usize)>, ClientError> {
    match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete((start, size))) => {
            let room = limits.max_http_body.saturating_sub(so_far);
            let size = usize::try_from(size)
                .ok()
                .filter(|&n| n <= room)
                .ok_or_else(|| {
                    LimitExceeded::new(
                        Limit::HttpBodySize,
                        u128::from(size) + so_far as u128,
                        limits.max_http_body as u64,
                    )
                })?;
            Ok(Some((start, size)))
        }
        Ok(httparse::Status::Partial) => {
            LimitExceeded::check(Limit::HttpHeadSize, buf.len(), limits.max_http_head)?;
            Ok(None)
        }
        Err(_) => Err(ClientError::Protocol("bad HTTP chunk size".into())),
    }
}

/// The error for an unexpected status, with the start of the body.
pub(crate) fn status_error(status: u16, body: &[u8]) -> ClientError {
    let end = body.len().min(ERROR_BODY_LIMIT);
    // Engine.IO's `{"code":1,"message":"Session ID unknown"}`.
    if status == 400 && is_session_unknown(&body[..end]) {
        return ClientError::SessionUnknown;
    }
    ClientError::Handshake {
        status,
        body: String::from_utf8_lossy(&body[..end]).into_owned(),
    }
}

/// Whether an HTTP 400 body is Engine.IO's "Session ID unknown" (code 1).
fn is_session_unknown(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct EngineError<'a> {
        code: Option<u64>,
        message: Option<&'a str>,
    }
    serde_json::from_slice::<EngineError<'_>>(body)
        .is_ok_and(|e| e.code == Some(1) || e.message == Some("Session ID unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn an_unknown_session_is_its_own_error() {
        let body = br#"{"code":1,"message":"Session ID unknown"}"#;
        assert!(matches!(
            status_error(400, body),
            ClientError::SessionUnknown
        ));
        assert!(status_error(400, body)
            .to_string()
            .contains("sticky sessions"));
        assert!(matches!(
            status_error(400, br#"{"code":3,"message":"Bad request"}"#),
            ClientError::Handshake { status: 400, .. }
        ));
        assert!(matches!(
            status_error(404, body),
            ClientError::Handshake { status: 404, .. }
        ));
    }

    fn limits() -> Limits {
        Limits::default()
    }

    fn breach(err: ClientError) -> (Limit, u128) {
        match err {
            ClientError::Limit(b) => (b.limit, b.actual),
            other => panic!("expected a limit breach, got {other:?}"),
        }
    }

    #[test]
    fn chunk_sizes_are_bounded_before_any_arithmetic() {
        let l = limits();
        assert_eq!(parse_chunk(b"1a\r\n", 0, &l).unwrap(), Some((4, 26)));
        assert_eq!(parse_chunk(b"0\r\n\r\n", 0, &l).unwrap(), Some((3, 0)));
        assert_eq!(parse_chunk(b"1a", 0, &l).unwrap(), None);
        // The largest size httparse accepts: refused, not added to anything.
        let (limit, actual) = breach(parse_chunk(b"ffffffffffffffff\r\n", 0, &l).unwrap_err());
        assert_eq!(limit, Limit::HttpBodySize);
        assert_eq!(actual, u128::from(u64::MAX));
        // Seventeen digits do not fit in 64 bits: a protocol error.
        assert!(matches!(
            parse_chunk(b"10000000000000000\r\n", 0, &l),
            Err(ClientError::Protocol(_))
        ));
        // Chunks count together: one byte over what is left is refused.
        let max = l.max_http_body;
        let line = format!("{:x}\r\n", 11);
        assert!(parse_chunk(line.as_bytes(), max - 11, &l)
            .unwrap()
            .is_some());
        let (limit, _) = breach(parse_chunk(line.as_bytes(), max - 10, &l).unwrap_err());
        assert_eq!(limit, Limit::HttpBodySize);
    }

    #[test]
    fn a_chunk_size_line_that_never_ends_is_bounded() {
        let l = Limits {
            max_http_head: 64,
            ..limits()
        };
        let mut line = b"1;ext=".to_vec();
        line.extend(std::iter::repeat_n(b'a', 40));
        assert_eq!(parse_chunk(&line, 0, &l).unwrap(), None);
        line.extend(std::iter::repeat_n(b'a', 40));
        assert_eq!(
            breach(parse_chunk(&line, 0, &l).unwrap_err()).0,
            Limit::HttpHeadSize
        );
    }

    #[test]
    fn a_tls_answer_to_plaintext_is_named() {
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
        let err = parse_head(&alert, &limits()).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn content_length_is_capped() {
        let l = limits();
        let head = |cl: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
        let (len, h) = parse_head(head("12").as_bytes(), &l).unwrap().unwrap();
        assert_eq!(len, head("12").len());
        assert_eq!(h.content_length, Some(12));
        let max = l.max_http_body.to_string();
        assert_eq!(
            parse_head(head(&max).as_bytes(), &l)
                .unwrap()
                .unwrap()
                .1
                .content_length,
            Some(l.max_http_body)
        );
        let (limit, actual) = breach(parse_head(head("1000000000000").as_bytes(), &l).unwrap_err());
        assert_eq!((limit, actual), (Limit::HttpBodySize, 1_000_000_000_000));
        // Over u64: not a number we can use at all.
        assert!(matches!(
            parse_head(head("99999999999999999999999").as_bytes(), &l),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_head(head("-1").as_bytes(), &l),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn header_count_and_size_are_bounded() {
        let l = Limits {
            max_http_headers: 4,
            max_http_head: 256,
            ..limits()
        };
        let with = |n: usize| {
            let mut h = String::from("HTTP/1.1 200 OK\r\n");
            for i in 0..n {
                h.push_str(&format!("X-{i}: y\r\n"));
            }
            h + "\r\n"
        };
        assert!(parse_head(with(4).as_bytes(), &l).unwrap().is_some());
        assert_eq!(
            breach(parse_head(with(5).as_bytes(), &l).unwrap_err()),
            (Limit::HttpHeaderCount, 5)
        );
        // A head that never ends: bounded while still partial.
        let mut partial = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
        partial.extend(std::iter::repeat_n(b'a', 200));
        assert_eq!(parse_head(&partial, &l).unwrap().map(|(n, _)| n), None);
        partial.extend(std::iter::repeat_n(b'a', 100));
        assert_eq!(
            breach(parse_head(&partial, &l).unwrap_err()).0,
            Limit::HttpHeadSize
        );
        // And a complete head over the bound too.
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "b".repeat(300));
        assert_eq!(
            breach(parse_head(big.as_bytes(), &l).unwrap_err()).0,
            Limit::HttpHeadSize
        );
    }

    /// A connection to a loopback server that writes `response` and then
    /// keeps the socket open.
    async fn conn_to(response: Vec<u8>, limits: Limits) -> HttpConn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.write_all(&response).await;
            // Hold the connection until the client goes.
            let mut sink = [0u8; 64];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        HttpConn::new(
            Stream::plain(TcpStream::connect(addr).await.unwrap()),
            4096,
            limits,
        )
    }

    #[tokio::test]
    async fn reads_chunked_bodies_and_refuses_a_huge_chunk() {
        let ok = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n";
        let mut conn = conn_to(ok.to_vec(), limits()).await;
        let head = conn.read_head().await.unwrap();
        assert_eq!(conn.read_body(&head).await.unwrap(), b"abcde");

        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
        let mut conn = conn_to(huge.to_vec(), limits()).await;
        let head = conn.read_head().await.unwrap();
        let err = conn.read_body(&head).await.unwrap_err();
        assert_eq!(breach(err).0, Limit::HttpBodySize);
    }

    #[tokio::test]
    async fn a_never_ending_chunked_body_stops_at_the_body_bound() {
        // 64 chunks of 1 KiB against a 16 KiB bound: refused after the 16th.
        let l = Limits {
            max_http_body: 16 << 10,
            ..limits()
        };
        let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..64 {
            response.extend_from_slice(b"400\r\n");
            response.extend(std::iter::repeat_n(b'x', 1024));
            response.extend_from_slice(b"\r\n");
        }
        let mut conn = conn_to(response, l).await;
        let head = conn.read_head().await.unwrap();
        let err = conn.read_body(&head).await.unwrap_err();
        assert_eq!(breach(err), (Limit::HttpBodySize, 17 << 10));
        assert!(conn.buf.capacity() < 64 << 10, "{}", conn.buf.capacity());
    }

    #[tokio::test]
    async fn a_chunk_without_its_crlf_is_a_protocol_error() {
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n";
        let mut conn = conn_to(bad.to_vec(), limits()).await;
        let head = conn.read_head().await.unwrap();
        assert!(matches!(
            conn.read_body(&head).await,
            Err(ClientError::Protocol(_))
        ));
    }
}
