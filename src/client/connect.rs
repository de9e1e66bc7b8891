//! The connect sequence: TCP, TLS for secure URLs, transport handshake, open
//! packet, namespace CONNECT.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_protocol::engineio::{self, OpenPacket};
use chorus_protocol::socketio;
use chorus_protocol::Version;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

use super::config::{parse_open, Authority, ClientConfig, Limits, Transport};
use super::error::{ClientError, Limit};
use super::handler::Handler;
use super::http::HttpConn;
use super::polling::{self, PollReader, PollRequest, PollWriter};
use super::rx_time::RxTcp;
use super::session::{Client, Control, ReadSide, Session, Shared, Writer};
use super::tls::{Stream, Tls};
use super::websocket::{self, WsMessage, WsReader};

/// How long each connect phase took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectTimings {
    /// Resolving the host and the TCP connect.
    pub tcp: Duration,
    /// The TLS handshake of the first connection; `None` for plaintext.
    pub tls: Option<Duration>,
    /// The websocket upgrade, or the polling handshake GET (which brings the open packet).
    pub handshake: Duration,
    /// Websocket: reading the open packet. Polling: connecting the POST connection.
    /// Polling-then-upgrade: the whole `2probe`/`3probe`/`5` upgrade.
    pub open: Duration,
    /// From sending the namespace CONNECT to its answer (received by the
    /// kernel, where it gives receive timestamps).
    pub namespace: Duration,
}

impl ConnectTimings {
    /// The whole connect latency.
    pub fn total(&self) -> Duration {
        self.tcp + self.tls.unwrap_or_default() + self.handshake + self.open + self.namespace
    }
}

/// The transport after the handshake and open packet.
struct Opened {
    read: ReadSide,
    writer: Writer,
    open: OpenPacket,
    /// Packets owed to the server already (pongs to pings seen during an upgrade).
    control: Vec<Control>,
    /// Records that arrived with the open packet (socket.io 2.x's CONNECT to
    /// `/` in a polling handshake), for the session to read first.
    early: Vec<String>,
    handshake_done: Instant,
}

impl Client {
    /// Connects to `config.namespace` and starts delivering to `handler`.
    /// The whole sequence is bounded by `config.connect_timeout`.
    pub async fn connect<H: Handler>(
        config: &ClientConfig,
        handler: H,
    ) -> Result<(Client, ConnectTimings), ClientError> {
        let mut phase = "tcp connect";
        let attempt = connect_phases(config, handler, &mut phase);
        match tokio::time::timeout(config.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                phase,
                after: config.connect_timeout,
            }),
        }
    }
}

async fn connect_phases<H: Handler>(
    config: &ClientConfig,
    handler: H,
    phase: &mut &'static str,
) -> Result<(Client, ConnectTimings), ClientError> {
    let start = Instant::now();
    let authority = config.authority()?;
    let addr = resolve(authority, config.local_ip).await?;
    let tcp = tcp_connect(addr, config.local_ip).await?;
    let tcp_done = Instant::now();
    *phase = "tls handshake";
    let stream = secure(config, authority, tcp).await?;
    let tls_done = Instant::now();

    *phase = "transport handshake";
    let opened = match config.transport {
        Transport::Websocket => open_websocket(config, authority, stream, phase).await?,
        Transport::Polling => open_polling(config, authority, addr, stream, phase).await?,
        Transport::PollingUpgrade => open_upgrade(config, authority, addr, stream, phase).await?,
    };
    let open_done = Instant::now();

    *phase = "namespace connect";
    let shared = Arc::new(Shared::new(
        opened.writer,
        &config.namespace,
        opened.control,
    ));
    let (tx, rx) = oneshot::channel();
    let session = Session::new(
        handler,
        shared.clone(),
        tx,
        &opened.open,
        &config.limits,
        config.version,
    );
    let mut client = Client {
        shared,
        sid: "".into(),
        reader: tokio::spawn(session.run(opened.read, opened.early)),
    };
    // socket.io 2.x joins `/` by itself: then there is nothing to send, and
    // the server's CONNECT answers all the same.
    let connect =
        socketio::connect_packet(config.version, &config.namespace, config.auth.as_deref());
    if let Some(connect) = connect {
        client.shared.send(&["4", &connect]).await?;
    }
    let (sid, answered) = rx.await.map_err(|_| ClientError::Closed)??;
    client.sid = sid.into();
    let timings = ConnectTimings {
        tcp: tcp_done - start,
        tls: authority.tls.then(|| tls_done - tcp_done),
        handshake: opened.handshake_done - tls_done,
        open: open_done - opened.handshake_done,
        namespace: answered.saturating_duration_since(open_done),
    };
    Ok((client, timings))
}

/// The first address of the host, of the local address's family when one is set.
async fn resolve(
    authority: Authority<'_>,
    local_ip: Option<IpAddr>,
) -> Result<SocketAddr, ClientError> {
    if let Ok(ip) = authority.name.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, authority.port));
    }
    let error = |source| ClientError::Resolve {
        host: authority.host_header.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((authority.name, authority.port))
        .await
        .map_err(error)?
        .collect();
    addrs
        .iter()
        .find(|a| local_ip.is_none_or(|l| l.is_ipv4() == a.is_ipv4()))
        .or(addrs.first())
        .copied()
        .ok_or_else(|| error(std::io::ErrorKind::NotFound.into()))
}

/// A TCP connection with `TCP_NODELAY`, from `local_ip` when set.
async fn tcp_connect(addr: SocketAddr, local_ip: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let connect = async {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = local_ip {
            defer_port_choice(&socket)?;
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    };
    connect
        .await
        .map_err(|source| ClientError::Connect { addr, source })
}

/// `tcp` as it is for a plaintext URL, after the TLS handshake for a secure
/// one (the configured [`Tls`], else the system's roots).
async fn secure(
    config: &ClientConfig,
    authority: Authority<'_>,
    tcp: TcpStream,
) -> Result<Stream, ClientError> {
    let tcp = match config.kernel_rx_timestamps {
        true => RxTcp::new(tcp),
        false => RxTcp::without_timestamps(tcp),
    };
    if !authority.tls {
        return Ok(Stream::Plain(tcp));
    }
    let system;
    let tls = match &config.tls {
        Some(tls) => tls,
        None => {
            system = Tls::system()?;
            &system
        }
    };
    Ok(tls.connect_rx(authority.name, tcp).await?)
}

/// One more connection to the server (polling's POST connection, the
/// upgrade's websocket), TLS included for a secure URL.
async fn open_stream(
    config: &ClientConfig,
    authority: Authority<'_>,
    addr: SocketAddr,
) -> Result<Stream, ClientError> {
    let tcp = tcp_connect(addr, config.local_ip).await?;
    secure(config, authority, tcp).await
}

/// Lets the kernel pick the source port at connect time rather than at bind
/// time (`IP_BIND_ADDRESS_NO_PORT`), so that ports in TIME_WAIT towards other
/// destinations can be reused and a bound source address serves its full
/// ephemeral range.
#[cfg(target_os = "linux")]
fn defer_port_choice(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn defer_port_choice(_socket: &TcpSocket) -> std::io::Result<()> {
    Ok(())
}

async fn open_websocket(
    config: &ClientConfig,
    authority: Authority<'_>,
    stream: Stream,
    phase: &mut &'static str,
) -> Result<Opened, ClientError> {
    let (mut reader, writer) = websocket::handshake(
        HttpConn::new(stream, config.read_buffer_size, config.limits),
        authority.host_header,
        &config.target("websocket", None),
        &config.headers,
        config.read_buffer_size,
        config.write_buffer_size,
    )
    .await
    .map_err(|e| e.named_version(config.version))?;
    let handshake_done = Instant::now();
    *phase = "open packet";
    let open = read_open(&mut reader, &config.limits, config.version).await?;
    Ok(Opened {
        read: ReadSide::Ws(reader),
        writer: Writer::Ws(writer),
        open,
        control: Vec::new(),
        early: Vec::new(),
        handshake_done,
    })
}

/// Reads the open packet, allowing it only `limits.max_open_packet` bytes.
async fn read_open(
    reader: &mut WsReader,
    limits: &Limits,
    version: Version,
) -> Result<OpenPacket, ClientError> {
    let sizes = reader.max_sizes();
    let small = limits.max_open_packet.min(sizes.0);
    reader.set_max_sizes((small, small));
    let read = reader.next().await;
    let (_, message) =
        read.map_err(|e| e.into_open_packet_breach(&[Limit::WsFrameSize, Limit::WsMessageSize]))?;
    let WsMessage::Text(text) = message else {
        return Err(ClientError::Protocol(format!(
            "expected the open packet, got {message:?}"
        )));
    };
    let engineio::Packet::Open(data) = engineio::Packet::decode(text)? else {
        return Err(ClientError::Protocol(format!(
            "expected the open packet, got {text:?}"
        )));
    };
    let open = parse_open(data, limits, version);
    reader.set_max_sizes(sizes);
    open
}

/// The polling handshake on `stream`; returns the connection, the open
/// packet and the records that came with it.
async fn polling_handshake(
    config: &ClientConfig,
    authority: Authority<'_>,
    stream: Stream,
) -> Result<(HttpConn, OpenPacket, Vec<String>, Arc<PollRequest>), ClientError> {
    let mut conn = HttpConn::new(stream, config.read_buffer_size, config.limits);
    let target = config.target("polling", None);
    let (open, early) = polling::handshake(
        &mut conn,
        authority.host_header,
        &target,
        &config.headers,
        config.version,
    )
    .await?;
    let request = Arc::new(PollRequest {
        host: authority.host_header.to_owned(),
        target: config.target("polling", Some(&open.sid)),
        headers: config.headers.clone(),
        version: config.version,
    });
    Ok((conn, open, early, request))
}

async fn open_polling(
    config: &ClientConfig,
    authority: Authority<'_>,
    addr: SocketAddr,
    stream: Stream,
    phase: &mut &'static str,
) -> Result<Opened, ClientError> {
    let (conn, open, early, request) = polling_handshake(config, authority, stream).await?;
    let handshake_done = Instant::now();
    *phase = "polling POST connection";
    let post = HttpConn::new(
        open_stream(config, authority, addr).await?,
        config.read_buffer_size,
        config.limits,
    );
    Ok(Opened {
        read: ReadSide::Polling(PollReader::new(conn, request.clone())),
        writer: Writer::Polling(PollWriter::new(post, request)),
        open,
        control: Vec::new(),
        early,
        handshake_done,
    })
}

/// Polling handshake, then the upgrade as the official client does it: a poll
/// stays pending while the websocket sends `2probe`; on `3probe` we wait for
/// that poll to come back (the server releases it with a noop), then send `5`.
async fn open_upgrade(
    config: &ClientConfig,
    authority: Authority<'_>,
    addr: SocketAddr,
    stream: Stream,
    phase: &mut &'static str,
) -> Result<Opened, ClientError> {
    let (conn, open, early, request) = polling_handshake(config, authority, stream).await?;
    let handshake_done = Instant::now();
    if !open.upgrades.iter().any(|u| u == "websocket") {
        return Err(ClientError::Protocol(
            "the server offers no websocket upgrade".into(),
        ));
    }
    *phase = "websocket upgrade";
    let mut poller = PollReader::new(conn, request);
    let probe = async {
        let stream = open_stream(config, authority, addr).await?;
        let (mut reader, mut writer) = websocket::handshake(
            HttpConn::new(stream, config.read_buffer_size, config.limits),
            authority.host_header,
            &config.target("websocket", Some(&open.sid)),
            &config.headers,
            config.read_buffer_size,
            config.write_buffer_size,
        )
        .await
        .map_err(|e| e.named_version(config.version))?;
        writer.send_text(&["2probe"]).await?;
        let (_, answer) = reader.next().await?;
        if answer != WsMessage::Text("3probe") {
            return Err(ClientError::Protocol(format!(
                "expected 3probe, got {answer:?}"
            )));
        }
        Ok((reader, writer))
    };
    let (polled, probed) = tokio::join!(poller.poll(), probe);
    let (reader, mut writer) = probed?;
    let (_, body) = polled?;
    let body = std::str::from_utf8(&body)
        .map_err(|_| ClientError::Protocol("polling body is not UTF-8".into()))?;
    let mut control = Vec::new();
    for record in engineio::payload_records(config.version, body) {
        match engineio::Packet::decode_as(config.version, record?)? {
            engineio::Packet::Noop => {}
            // Answered over the websocket once it carries the session.
            engineio::Packet::Ping(_) => control.push(Control::Text("3".into())),
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected {other:?} while upgrading"
                )))
            }
        }
    }
    writer.send_text(&["5"]).await?;
    Ok(Opened {
        read: ReadSide::Ws(reader),
        writer: Writer::Ws(writer),
        open,
        control,
        early,
        handshake_done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_from_the_chosen_loopback_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.3".parse().unwrap();
        let (stream, accepted) = tokio::join!(tcp_connect(addr, Some(source)), listener.accept());
        let stream = stream.unwrap();
        assert!(stream.nodelay().unwrap());
        assert_eq!(accepted.unwrap().1.ip(), source);
    }
}
