//! A minimal Redis client (RESP2) for the cluster link: commands as arrays
//! of bulk strings, replies parsed with bounds. Everything Redis sends is
//! peer input: a reply larger than the configured bound, nested deeper than
//! [`MAX_DEPTH`] or malformed is an error, never a panic or an unbounded
//! allocation.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Deepest nesting of arrays in a reply (pub/sub pushes are 2 deep).
const MAX_DEPTH: usize = 4;
/// Longest status, error or integer line.
const MAX_LINE: usize = 4096;

/// Why talking to Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The connection failed or closed.
    #[error("redis connection: {0}")]
    Io(#[from] std::io::Error),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis sent something that is not RESP, or over a bound.
    #[error("bad reply from redis: {0}")]
    Protocol(&'static str),
    /// Redis answered with an error.
    #[error("redis error: {0}")]
    Server(String),
    /// The cluster URL is not `redis://HOST:PORT`.
    #[error("cluster URL must be redis://HOST:PORT, not {0:?}")]
    Url(String),
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `:n`.
    Int(i64),
    /// `$n` (None for the nil bulk).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for the nil array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bytes of a bulk reply.
    pub fn into_bulk(self) -> Option<Vec<u8>> {
        match self {
            Self::Bulk(b) => b,
            _ => None,
        }
    }

    /// The elements of an array reply.
    pub fn into_array(self) -> Vec<Reply> {
        match self {
            Self::Array(Some(items)) => items,
            _ => Vec::new(),
        }
    }
}

/// `HOST:PORT` of `redis://HOST:PORT` (an optional trailing `/` or `/0` allowed).
pub fn host_port(url: &str) -> Result<String, RespError> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| RespError::Url(url.to_owned()))?;
    let rest = rest
        .strip_suffix("/0")
        .or_else(|| rest.strip_suffix('/'))
        .unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@']) || !rest.contains(':') {
        return Err(RespError::Url(url.to_owned()));
    }
    Ok(rest.to_owned())
}

/// Appends one command (an array of bulk strings) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads replies from one connection, each at most `max_bytes` in all.
pub struct Reader<R> {
    inner: BufReader<R>,
    max_bytes: usize,
}

impl<R: AsyncRead + Unpin + Send> Reader<R> {
    /// A reader bounding every reply to `max_bytes`.
    pub fn new(inner: R, max_bytes: usize) -> Self {
        Self {
            inner: BufReader::new(inner),
            max_bytes,
        }
    }

    /// The next reply; an error reply is [`RespError::Server`].
    pub async fn read(&mut self) -> Result<Reply, RespError> {
        let mut budget = self.max_bytes;
        self.value(0, &mut budget).await
    }

    async fn line(&mut self, budget: &mut usize) -> Result<String, RespError> {
        let mut line = Vec::new();
        let mut limited = (&mut self.inner).take(MAX_LINE as u64 + 2);
        let n = limited.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(RespError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if !line.ends_with(b"\r\n") {
            return Err(RespError::Protocol("line too long or not CRLF-terminated"));
        }
        *budget = budget
            .checked_sub(n)
            .ok_or(RespError::Protocol("reply over the size bound"))?;
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| RespError::Protocol("line is not UTF-8"))
    }

    fn value<'a>(
        &'a mut self,
        depth: usize,
        budget: &'a mut usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, RespError>> + Send + 'a>>
    {
        Box::pin(async move {
            let line = self.line(budget).await?;
            let (kind, rest) = line
                .split_at_checked(1)
                .ok_or(RespError::Protocol("empty line"))?;
            let int = || {
                rest.parse::<i64>()
                    .map_err(|_| RespError::Protocol("bad integer"))
            };
            match kind {
                "+" => Ok(Reply::Status(rest.to_owned())),
                "-" => Err(RespError::Server(rest.to_owned())),
                ":" => Ok(Reply::Int(int()?)),
                "$" => {
                    let len = int()?;
                    if len < 0 {
                        return Ok(Reply::Bulk(None));
                    }
                    let len =
                        usize::try_from(len).map_err(|_| RespError::Protocol("bad length"))?;
                    let total = len.saturating_add(2);
                    *budget = budget
                        .checked_sub(total)
                        .ok_or(RespError::Protocol("reply over the size bound"))?;
                    let mut data = vec![0; total];
                    self.inner.read_exact(&mut data).await?;
                    if !data.ends_with(b"\r\n") {
                        return Err(RespError::Protocol("bulk not CRLF-terminated"));
                    }
                    data.truncate(len);
                    Ok(Reply::Bulk(Some(data)))
                }
                "*" => {
                    let len = int()?;
                    if len < 0 {
                        return Ok(Reply::Array(None));
                    }
                    if depth >= MAX_DEPTH {
                        return Err(RespError::Protocol("reply nested too deep"));
                    }
                    let len =
                        usize::try_from(len).map_err(|_| RespError::Protocol("bad length"))?;
                    // Each element takes at least 3 bytes of the budget: no huge preallocation.
                    if len.saturating_mul(3) > *budget {
                        return Err(RespError::Protocol("reply over the size bound"));
                    }
                    // Grown as elements arrive, not trusted up front.
                    let mut items = Vec::with_capacity(len.min(1024));
                    for _ in 0..len {
                        items.push(self.value(depth + 1, budget).await?);
                    }
                    Ok(Reply::Array(Some(items)))
                }
                _ => Err(RespError::Protocol("unknown reply type")),
            }
        })
    }
}

/// A request/response connection.
pub struct Client {
    reader: Reader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    timeout: Duration,
}

/// Connects to `addr` (`HOST:PORT`) within `timeout`.
pub async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, RespError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| RespError::Timeout(timeout))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Client {
    /// Wraps a connection; every call waits at most `timeout` for its reply.
    pub fn new(stream: TcpStream, max_bytes: usize, timeout: Duration) -> Self {
        let (r, w) = stream.into_split();
        Self {
            reader: Reader::new(r, max_bytes),
            writer: w,
            timeout,
        }
    }

    /// Sends one command and waits for its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        let mut buf = Vec::new();
        command(&mut buf, args);
        let timeout = self.timeout;
        let exchange = async {
            self.writer.write_all(&buf).await?;
            self.reader.read().await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RespError::Timeout(timeout))?
    }

    /// The reader and writer halves, for a connection that stops being request/response.
    pub fn into_parts(self) -> (Reader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.reader, self.writer)
    }
}

/// Writes `bytes` and flushes.
pub async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), RespError> {
    w.write_all(bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8], max: usize) -> Result<Reply, RespError> {
        Reader::new(bytes, max).read().await
    }

    #[tokio::test]
    async fn replies_parse_within_bounds() {
        let push = b"*4\r\n$8\r\npmessage\r\n$1\r\np\r\n$1\r\nc\r\n$3\r\nabc\r\n";
        let reply = parse(push, 1024).await.expect("a push");
        assert_eq!(reply.into_array().len(), 4);
        assert_eq!(parse(b":7\r\n", 16).await.ok(), Some(Reply::Int(7)));
        assert_eq!(parse(b"$-1\r\n", 16).await.ok(), Some(Reply::Bulk(None)));
        assert!(matches!(
            parse(b"-ERR x\r\n", 16).await,
            Err(RespError::Server(_))
        ));
        // Over the bound, a huge declared length, too deep, garbage: errors, no allocation.
        assert!(parse(push, 20).await.is_err());
        assert!(parse(b"$999999999999\r\n", 64).await.is_err());
        assert!(parse(b"*99999999\r\n", 64).await.is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", 64)
            .await
            .is_err());
        assert!(parse(b"?\r\n", 64).await.is_err());
        assert!(parse(b"$3\r\nabcd\r\n", 64).await.is_err());
    }

    #[test]
    fn urls_name_a_host_and_port() {
        assert_eq!(
            host_port("redis://127.0.0.1:6379").ok().as_deref(),
            Some("127.0.0.1:6379")
        );
        assert_eq!(host_port("redis://h:1/").ok().as_deref(), Some("h:1"));
        for bad in [
            "http://h:1",
            "redis://",
            "redis://h",
            "redis://u:p@h:1",
            "redis://h:1/3",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }
}
