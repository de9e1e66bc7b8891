//! What a client connects to and how.

use std::net::IpAddr;
use std::time::Duration;

use chorus_protocol::engineio::OpenPacket;
use chorus_protocol::Version;

use super::error::{ClientError, Limit, LimitExceeded};
use super::tls::Tls;

/// The Engine.IO transport a client uses. Scenarios name it in kebab-case
/// (`websocket`, `polling`, `polling-upgrade`); conformance cases spell the
/// last one `upgrade` (their own deserializer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// A websocket from the start (`transport=websocket`).
    #[default]
    Websocket,
    /// HTTP long-polling only.
    Polling,
    /// HTTP long-polling first, then the `2probe`/`3probe`/`5` upgrade to websocket.
    PollingUpgrade,
}

/// The settings of one client connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` or `ws://host:port`; `https://` or `wss://` for TLS.
    pub url: String,
    /// The TLS setup for a secure URL, shared by every client of a run (one
    /// session cache); `None` trusts the system's roots.
    pub tls: Option<Tls>,
    /// The socket.io version the server speaks: 4 (Engine.IO v4, the
    /// default) or 2 (Engine.IO v3: `EIO=3`, client-sent pings, `b64=1`
    /// polling, the token in the query rather than in `auth`).
    pub version: Version,
    /// The Engine.IO path, `/socket.io/` by default.
    pub path: String,
    /// The Socket.IO namespace, `/` by default.
    pub namespace: String,
    /// The transport.
    pub transport: Transport,
    /// Extra query parameters for every request (e.g. `token`), unencoded.
    pub query: Vec<(String, String)>,
    /// Extra HTTP headers for the handshake and every polling request.
    pub headers: Vec<(String, String)>,
    /// JSON sent in the namespace CONNECT packet (`40/chat,{"token":"…"}`);
    /// socket.io 2.x has no such payload, so [`Version::V2`] does not send it.
    pub auth: Option<String>,
    /// The bound on the whole connect sequence.
    pub connect_timeout: Duration,
    /// The local address to bind before connecting, to spread connections over 127.0.0.x.
    pub local_ip: Option<IpAddr>,
    /// The websocket read buffer capacity kept between frames.
    pub read_buffer_size: usize,
    /// The websocket write buffer capacity kept between frames.
    pub write_buffer_size: usize,
    /// The bounds on what the server may send.
    pub limits: Limits,
    /// Ask the kernel for receive timestamps on the client's sockets
    /// (Linux); when false, or where refused, frames are dated by the time
    /// chorus read them.
    pub kernel_rx_timestamps: bool,
}

/// The bounds on everything a server controls. A server that goes over one
/// ends that client's connection with [`super::ClientError::Limit`] (while
/// connecting) or [`super::CloseReason::Limit`] (afterwards), never with a
/// crash or an allocation of the size it announced. The defaults are far above
/// what a real Socket.IO gateway sends (socket.io's own `maxHttpBufferSize` is
/// 1 MB, its pings 25 s + 20 s) and bound what one client can be made to hold
/// to about the largest message (16 MiB) plus its buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes of one HTTP response head, status line and headers: 64 KiB.
    pub max_http_head: usize,
    /// The most headers in one HTTP response: 64.
    pub max_http_headers: usize,
    /// The most bytes of one HTTP response body (a polling payload): 16 MiB.
    /// A larger `Content-Length` is refused before anything is read; chunks
    /// count together.
    pub max_http_body: usize,
    /// The most bytes of one websocket frame's payload: 16 MiB. The length
    /// field is checked before any buffer is grown for it.
    pub max_ws_frame: usize,
    /// The most bytes of one websocket message, its fragments together: 16 MiB.
    pub max_ws_message: usize,
    /// The most bytes of the Engine.IO open packet (real ones are about 100): 64 KiB.
    pub max_open_packet: usize,
    /// The most binary attachments one Socket.IO packet may announce: 10,
    /// socket.io-parser's own `maxAttachments`, so what a real client accepts.
    pub max_attachments: usize,
    /// The most bytes of one packet's attachments together: 4 MiB. They are
    /// handed to the handler as JSON arrays of byte values, up to 4 bytes of
    /// text for each byte received.
    pub max_attachment_bytes: usize,
    /// The most bytes of the text packet that announces binary attachments
    /// (it is parsed as a whole to put them in place): 64 KiB.
    pub max_binary_header: usize,
    /// The largest `pingInterval` the open packet may announce: 1 hour
    /// (socket.io's default is 25 s). A larger one refuses the connection
    /// rather than wait for pings that long.
    pub max_ping_interval: Duration,
    /// The largest `pingTimeout` the open packet may announce: 1 hour
    /// (socket.io's default is 20 s).
    pub max_ping_timeout: Duration,
    /// How long the server may take to answer a polling POST, or to take a
    /// websocket frame off our hands (a server that stops reading): 30 s.
    pub io_timeout: Duration,
    /// The most pongs and acks queued for a server while a write to it is in
    /// progress (a server that floods pings but does not read): 4096.
    pub max_pending_replies: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_http_head: 64 << 10,
            max_http_headers: 64,
            max_http_body: 16 << 20,
            max_ws_frame: 16 << 20,
            max_ws_message: 16 << 20,
            max_open_packet: 64 << 10,
            max_attachments: 10,
            max_attachment_bytes: 4 << 20,
            max_binary_header: 64 << 10,
            max_ping_interval: Duration::from_secs(3600),
            max_ping_timeout: Duration::from_secs(3600),
            io_timeout: Duration::from_secs(30),
            max_pending_replies: 4096,
        }
    }
}

/// Parses the open packet's JSON as `version` writes it and checks the ping
/// interval and timeout it announces against `limits` (they are added to
/// instants later). An open packet of the other version is
/// [`ClientError::Version`].
pub(crate) fn parse_open(
    data: &str,
    limits: &Limits,
    version: Version,
) -> Result<OpenPacket, ClientError> {
    LimitExceeded::check(Limit::OpenPacketSize, data.len(), limits.max_open_packet)?;
    let open = OpenPacket::parse_as(version, data).map_err(ClientError::from_decode)?;
    for (limit, announced, max) in [
        (
            Limit::PingInterval,
            open.ping_interval,
            limits.max_ping_interval,
        ),
        (
            Limit::PingTimeout,
            open.ping_timeout,
            limits.max_ping_timeout,
        ),
    ] {
        let max = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        if announced > max {
            return Err(LimitExceeded::new(limit, announced, max).into());
        }
    }
    Ok(open)
}

impl ClientConfig {
    /// The defaults for a server at `url`: websocket, path `/socket.io/`,
    /// namespace `/`, 10 s connect timeout, 4 KiB buffers, the default [`Limits`].
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: None,
            version: Version::V4,
            path: "/socket.io/".into(),
            namespace: "/".into(),
            transport: Transport::Websocket,
            query: Vec::new(),
            headers: Vec::new(),
            auth: None,
            connect_timeout: Duration::from_secs(10),
            local_ip: None,
            read_buffer_size: 4096,
            write_buffer_size: 4096,
            limits: Limits::default(),
            kernel_rx_timestamps: true,
        }
    }

    /// Sets the namespace.
    pub fn namespace(mut self, nsp: impl Into<String>) -> Self {
        self.namespace = nsp.into();
        self
    }

    /// Sets the transport.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Sets the socket.io version the server speaks.
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Sets the CONNECT `auth` JSON payload.
    pub fn auth(mut self, json: impl Into<String>) -> Self {
        self.auth = Some(json.into());
        self
    }

    /// Sets the bounds on what the server may send.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the TLS setup for secure URLs.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Adds a query parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Adds an HTTP header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The host and port of the URL.
    pub(crate) fn authority(&self) -> Result<Authority<'_>, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl {
            url: self.url.clone(),
            reason,
        };
        let (rest, tls) = [
            ("http://", false),
            ("ws://", false),
            ("https://", true),
            ("wss://", true),
        ]
        .iter()
        .find_map(|&(scheme, tls)| Some((self.url.strip_prefix(scheme)?, tls)))
        .ok_or_else(|| invalid("the scheme must be http://, ws://, https:// or wss://"))?;
        let host_header = rest.split('/').next().unwrap_or_default();
        if host_header.is_empty() {
            return Err(invalid("no host"));
        }
        // The port follows the last colon, unless that colon is inside an IPv6 literal.
        let (name, port) = match host_header.rsplit_once(':') {
            Some((name, port)) if !port.ends_with(']') => (
                name,
                port.parse()
                    .map_err(|_| invalid("the port is not a number"))?,
            ),
            _ => (host_header, if tls { 443 } else { 80 }),
        };
        Ok(Authority {
            host_header,
            name: name.trim_start_matches('[').trim_end_matches(']'),
            port,
            tls,
        })
    }

    /// The request target for one Engine.IO request: path, `EIO=4` (or `3`),
    /// the transport (v3 polling asks for text payloads with `b64=1`), the
    /// session id once known, then the configured query.
    pub(crate) fn target(&self, transport: &str, sid: Option<&str>) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(&self.path);
        out.push_str("?EIO=");
        out.push_str(self.version.eio_query());
        out.push_str("&transport=");
        out.push_str(transport);
        if self.version == Version::V2 && transport == "polling" {
            out.push_str("&b64=1");
        }
        if let Some(sid) = sid {
            out.push_str("&sid=");
            percent_encode_into(&mut out, sid);
        }
        for (name, value) in &self.query {
            out.push('&');
            percent_encode_into(&mut out, name);
            out.push('=');
            percent_encode_into(&mut out, value);
        }
        out
    }
}

/// The server part of the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Authority<'a> {
    /// `host[:port]` as written, for the `Host` header.
    pub host_header: &'a str,
    /// The host name or IP address, without brackets.
    pub name: &'a str,
    /// The port, 80 (443 for TLS) when not written.
    pub port: u16,
    /// Whether the scheme is `https://` or `wss://`.
    pub tls: bool,
}

/// Appends `text` with everything but RFC 3986 unreserved characters percent-encoded.
fn percent_encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_authorities() {
        let auth = |url: &str| {
            ClientConfig::new(url)
                .authority()
                .map(|a| (a.host_header.to_owned(), a.name.to_owned(), a.port))
        };
        assert_eq!(
            auth("http://127.0.0.1:3000").unwrap(),
            ("127.0.0.1:3000".into(), "127.0.0.1".into(), 3000)
        );
        assert_eq!(
            auth("ws://localhost/x").unwrap(),
            ("localhost".into(), "localhost".into(), 80)
        );
        assert_eq!(
            auth("ws://[::1]:81").unwrap(),
            ("[::1]:81".into(), "::1".into(), 81)
        );
        assert_eq!(auth("ws://[::1]").unwrap().2, 80);
        assert_eq!(auth("https://x").unwrap().2, 443);
        assert_eq!(auth("wss://h:8443/").unwrap().2, 8443);
        assert!(ClientConfig::new("wss://h").authority().unwrap().tls);
        assert!(!ClientConfig::new("ws://h").authority().unwrap().tls);
        assert!(auth("ftp://x").is_err());
        assert!(auth("http://h:port").is_err());
        assert!(auth("http:///").is_err());
    }

    #[test]
    fn builds_targets_with_encoded_query() {
        let cfg = ClientConfig::new("http://h:1").query("token", "a b&c=d");
        assert_eq!(
            cfg.target("polling", Some("s-1")),
            "/socket.io/?EIO=4&transport=polling&sid=s-1&token=a%20b%26c%3Dd"
        );
        assert_eq!(
            ClientConfig::new("http://h:1").target("websocket", None),
            "/socket.io/?EIO=4&transport=websocket"
        );
        let v2 = ClientConfig::new("http://h:1")
            .version(Version::V2)
            .query("token", "t");
        assert_eq!(
            v2.target("polling", None),
            "/socket.io/?EIO=3&transport=polling&b64=1&token=t"
        );
        assert_eq!(
            v2.target("websocket", Some("s")),
            "/socket.io/?EIO=3&transport=websocket&sid=s&token=t"
        );
    }

    #[test]
    fn an_open_packet_of_the_other_version_is_named() {
        let l = Limits::default();
        let v3 = r#"{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":5000}"#;
        let err = parse_open(v3, &l, Version::V4).unwrap_err();
        assert_eq!(err.reason(), "version");
        assert_eq!(
            err.to_string(),
            "the server speaks Engine.IO v3 (socket.io 2.x): set `socketio.version: 2`"
        );
        assert!(parse_open(v3, &l, Version::V2).is_ok());
        let err = parse_open(&open_json("1", "1"), &l, Version::V2).unwrap_err();
        assert_eq!(err.reason(), "version");
    }

    fn open_json(interval: &str, timeout: &str) -> String {
        format!(
            r#"{{"sid":"s","upgrades":[],"pingInterval":{interval},"pingTimeout":{timeout},"maxPayload":1000000}}"#
        )
    }

    fn limit_of(result: Result<OpenPacket, ClientError>) -> Limit {
        match result {
            Err(ClientError::Limit(b)) => b.limit,
            other => panic!("expected a limit breach, got {other:?}"),
        }
    }

    #[test]
    fn absurd_ping_settings_are_refused_by_name() {
        let l = Limits::default();
        let open = parse_open(&open_json("25000", "20000"), &l, Version::V4).unwrap();
        assert_eq!((open.ping_interval, open.ping_timeout), (25000, 20000));
        let max = "3600000";
        assert!(parse_open(&open_json(max, max), &l, Version::V4).is_ok());
        let huge = u64::MAX.to_string();
        assert_eq!(
            limit_of(parse_open(&open_json(&huge, "20000"), &l, Version::V4)),
            Limit::PingInterval
        );
        assert_eq!(
            limit_of(parse_open(&open_json("25000", &huge), &l, Version::V4)),
            Limit::PingTimeout
        );
        assert_eq!(
            limit_of(parse_open(&open_json("3600001", "1"), &l, Version::V4)),
            Limit::PingInterval
        );
        // Past u64: not an open packet at all.
        assert!(matches!(
            parse_open(&open_json("18446744073709551616", "1"), &l, Version::V4),
            Err(ClientError::Decode(_))
        ));
    }

    #[test]
    fn the_open_packet_is_bounded() {
        let l = Limits {
            max_open_packet: 200,
            ..Limits::default()
        };
        let padded = open_json("1", "1").replace(
            "\"sid\"",
            &format!("\"pad\":\"{}\",\"sid\"", "p".repeat(200)),
        );
        assert_eq!(
            limit_of(parse_open(&padded, &l, Version::V4)),
            Limit::OpenPacketSize
        );
        assert!(parse_open(&open_json("1", "1"), &l, Version::V4).is_ok());
    }
}
