//! A minimal HTTP/1.1 client over one keep-alive TCP connection: enough for
//! Engine.IO long-polling and the websocket upgrade request.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::ClientError;

/// The most response headers we parse.
const MAX_HEADERS: usize = 32;
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
    stream: TcpStream,
    buf: Vec<u8>,
    keep: usize,
}

impl HttpConn {
    /// Wraps a connected stream; `keep` is the buffer capacity kept between responses.
    pub fn new(stream: TcpStream, keep: usize) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            keep,
        }
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
        Ok(())
    }

    /// Sends a request and reads the whole response. Returns the instant the
    /// body was completely read, the status and the body.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        host: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(Instant, u16, Vec<u8>), ClientError> {
        self.send_request(method, target, host, headers, body)
            .await?;
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        let at = Instant::now();
        if self.buf.is_empty() && self.buf.capacity() > self.keep {
            self.buf = Vec::new();
        }
        Ok((at, head.status, body))
    }

    /// Reads a response head and leaves what follows it in the buffer.
    pub async fn read_head(&mut self) -> Result<Head, ClientError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let mut head = Head {
                        status: resp.code.unwrap_or_default(),
                        content_length: None,
                        chunked: false,
                        ws_accept: None,
                    };
                    for h in resp.headers.iter() {
                        let value = String::from_utf8_lossy(h.value);
                        if h.name.eq_ignore_ascii_case("content-length") {
                            head.content_length = value.trim().parse().ok();
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            head.chunked = value.to_ascii_lowercase().contains("chunked");
                        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
                            head.ws_accept = Some(value.trim().to_owned());
                        }
                    }
                    self.buf.drain(..len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => self.fill().await?,
                Err(e) => return Err(ClientError::Protocol(format!("bad HTTP response: {e}"))),
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
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((start, size))) => break (start, size as usize),
                    Ok(httparse::Status::Partial) => self.fill().await?,
                    Err(_) => return Err(ClientError::Protocol("bad HTTP chunk size".into())),
                }
            };
            // The chunk and its trailing CRLF (for the last chunk: the final CRLF).
            while self.buf.len() < start + size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[start..start + size]);
            self.buf.drain(..start + size + 2);
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
        Ok(())
    }

    /// The stream and the bytes already read past the last response head.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }
}

/// The error for an unexpected status, with the start of the body.
pub(crate) fn status_error(status: u16, body: &[u8]) -> ClientError {
    let end = body.len().min(ERROR_BODY_LIMIT);
    ClientError::Handshake {
        status,
        body: String::from_utf8_lossy(&body[..end]).into_owned(),
    }
}
