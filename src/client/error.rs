//! Everything that can go wrong while connecting or talking to a server.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_protocol::{DecodeError, Version};

/// How a [`ClientError::SessionUnknown`] (and a session it ended) begins.
pub const SESSION_UNKNOWN: &str = "HTTP 400 Session ID unknown";

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configured URL cannot be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve to any address.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// `host:port` as configured.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The TCP connection was refused or the address is unreachable.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address we tried.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The server answered the polling handshake or websocket upgrade with an
    /// unexpected HTTP status.
    #[error("handshake failed with HTTP {status}: {body}")]
    Handshake {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, for the error message.
        body: String,
    },
    /// A polling request reached a node that does not know the session
    /// (`400 {"code":1,"message":"Session ID unknown"}`): behind a load
    /// balancer, the sign of a cluster without sticky sessions.
    #[error("{SESSION_UNKNOWN}: the polling session reached a node that did not open it; the load balancer must pin a polling session to one node (sticky sessions)")]
    SessionUnknown,
    /// The TLS handshake failed (certificate, protocol, or the peer closed).
    #[error(transparent)]
    Tls(#[from] super::TlsFailure),
    /// The TLS settings cannot be used (e.g. no system roots).
    #[error(transparent)]
    TlsSetup(#[from] super::TlsSetupError),
    /// The server refused the namespace with a CONNECT_ERROR packet.
    #[error("namespace {nsp} refused the connection: {data}")]
    ConnectRefused {
        /// The namespace we tried to join.
        nsp: String,
        /// The server's JSON payload, e.g. `{"message":"Invalid namespace"}`.
        data: String,
    },
    /// The server speaks the other socket.io version (an open packet of the
    /// other Engine.IO revision, or a refusal of ours); named in one line.
    #[error("{}", .server.mismatch_line())]
    Version {
        /// The version the server speaks.
        server: Version,
    },
    /// A connect phase did not finish in time.
    #[error("timed out after {after:?} during {phase}")]
    Timeout {
        /// The phase that was running.
        phase: &'static str,
        /// The configured connect timeout.
        after: Duration,
    },
    /// The server sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A packet could not be decoded.
    #[error("undecodable packet: {0}")]
    Decode(#[from] DecodeError),
    /// The connection is closed; nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
    /// The server sent more than a bound of [`super::Limits`] allows.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// A socket error on an established connection.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// A short name for this kind of failure, for metric names
    /// (`errors.connect.<reason>`): `timeout`, `refused`, `limit.ws_frame_size`, ….
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "invalid_url",
            Self::Resolve { .. } => "resolve",
            Self::Connect { .. } => "tcp_connect",
            Self::Handshake { .. } => "handshake_status",
            Self::SessionUnknown => "session_unknown",
            Self::Tls(e) => e.reason.metric_name(),
            Self::TlsSetup(_) => "tls.settings",
            Self::ConnectRefused { .. } => "refused",
            Self::Timeout { .. } => "timeout",
            Self::Version { .. } => "version",
            Self::Protocol(_) | Self::Decode(_) => "protocol",
            Self::Closed => "closed",
            Self::Limit(e) => e.limit.metric_name(),
            Self::Io(_) => "io",
        }
    }

    /// A refused handshake named by the version the server speaks: a
    /// socket.io 3+ server answers the `EIO=3` of a [`Version::V2`] client
    /// with HTTP 400 `{"code":5,"message":"Unsupported protocol version"}`.
    pub(crate) fn named_version(self, ours: Version) -> Self {
        match self {
            Self::Handshake { status: 400, body }
                if ours == Version::V2 && body.contains("\"code\":5") =>
            {
                Self::Version {
                    server: Version::V4,
                }
            }
            other => other,
        }
    }

    /// A decode error, with a version mismatch turned into [`Self::Version`].
    pub(crate) fn from_decode(error: DecodeError) -> Self {
        match error {
            DecodeError::Version(server) => Self::Version { server },
            other => Self::Decode(other),
        }
    }

    /// The open packet is read through a transport whose own size bounds are
    /// lowered to the open packet's: a breach of one of `transport_limits`
    /// there is named as the open packet's.
    pub(crate) fn into_open_packet_breach(self, transport_limits: &[Limit]) -> Self {
        match self {
            Self::Limit(breach) if transport_limits.contains(&breach.limit) => LimitExceeded {
                limit: Limit::OpenPacketSize,
                ..breach
            }
            .into(),
            other => other,
        }
    }
}

/// One of the bounds of [`super::Limits`] on what a server may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`super::Limits::max_http_head`]: bytes of an HTTP response head.
    HttpHeadSize,
    /// [`super::Limits::max_http_headers`]: headers in an HTTP response.
    HttpHeaderCount,
    /// [`super::Limits::max_http_body`]: bytes of an HTTP response body
    /// (its `Content-Length`, one chunk, or the chunks together).
    HttpBodySize,
    /// [`super::Limits::max_ws_frame`]: bytes of one websocket frame.
    WsFrameSize,
    /// [`super::Limits::max_ws_message`]: bytes of one websocket message, fragments together.
    WsMessageSize,
    /// [`super::Limits::max_open_packet`]: bytes of the Engine.IO open packet.
    OpenPacketSize,
    /// [`super::Limits::max_attachments`]: binary attachments announced by one packet.
    Attachments,
    /// [`super::Limits::max_attachment_bytes`]: bytes of one packet's attachments together.
    AttachmentBytes,
    /// [`super::Limits::max_binary_header`]: bytes of the packet announcing attachments.
    BinaryHeaderSize,
    /// [`super::Limits::max_ping_interval`]: the open packet's `pingInterval` (ms).
    PingInterval,
    /// [`super::Limits::max_ping_timeout`]: the open packet's `pingTimeout` (ms).
    PingTimeout,
    /// [`super::Limits::io_timeout`]: milliseconds a POST's answer or a websocket write took.
    IoTimeout,
    /// [`super::Limits::max_pending_replies`]: pongs and acks queued for a server that does not read.
    PendingReplies,
}

impl Limit {
    /// The name in metrics: `limit.<bound>`, e.g. `limit.http_body_size`.
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::HttpHeadSize => "limit.http_head_size",
            Self::HttpHeaderCount => "limit.http_header_count",
            Self::HttpBodySize => "limit.http_body_size",
            Self::WsFrameSize => "limit.ws_frame_size",
            Self::WsMessageSize => "limit.ws_message_size",
            Self::OpenPacketSize => "limit.open_packet_size",
            Self::Attachments => "limit.attachments",
            Self::AttachmentBytes => "limit.attachment_bytes",
            Self::BinaryHeaderSize => "limit.binary_header_size",
            Self::PingInterval => "limit.ping_interval",
            Self::PingTimeout => "limit.ping_timeout",
            Self::IoTimeout => "limit.io_timeout",
            Self::PendingReplies => "limit.pending_replies",
        }
    }

    /// What the bound is on, in words.
    fn describe(self) -> &'static str {
        match self {
            Self::HttpHeadSize => "HTTP response head bytes",
            Self::HttpHeaderCount => "HTTP response headers",
            Self::HttpBodySize => "HTTP response body bytes",
            Self::WsFrameSize => "websocket frame bytes",
            Self::WsMessageSize => "websocket message bytes",
            Self::OpenPacketSize => "open packet bytes",
            Self::Attachments => "binary attachments in one packet",
            Self::AttachmentBytes => "bytes of one packet's attachments",
            Self::BinaryHeaderSize => "bytes of a binary packet's header",
            Self::PingInterval => "pingInterval ms",
            Self::PingTimeout => "pingTimeout ms",
            Self::IoTimeout => "ms waiting on the server",
            Self::PendingReplies => "replies queued for the server",
        }
    }
}

/// The server went over one of the client's bounds; what it sent was dropped
/// unread (or unallocated) and the connection closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server went over a client limit: {} {actual} > {max} ({})", limit.describe(), limit.metric_name())]
pub struct LimitExceeded {
    /// Which bound.
    pub limit: Limit,
    /// What the server sent or announced (`u128` holds any announced number; at least `max + 1`).
    pub actual: u128,
    /// The bound.
    pub max: u128,
}

impl LimitExceeded {
    /// `actual` of `limit` over `max`.
    pub fn new(limit: Limit, actual: impl Into<u128>, max: impl Into<u128>) -> Self {
        Self {
            limit,
            actual: actual.into(),
            max: max.into(),
        }
    }

    /// Fails with this breach when `actual > max`.
    pub fn check(limit: Limit, actual: usize, max: usize) -> Result<(), LimitExceeded> {
        if actual > max {
            Err(Self::new(limit, actual as u64, max as u64))
        } else {
            Ok(())
        }
    }
}
