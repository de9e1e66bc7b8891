//! TLS for `https://` and `wss://` targets, through rustls (ring provider).
//!
//! A [`TlsConfig`] (the scenario's `tls:` block, or `--ca`/`--insecure`) is
//! turned once into a [`Tls`]: one shared `rustls::ClientConfig` behind an
//! `Arc`, so every client of a run draws on one session cache and a connect
//! storm resumes sessions instead of paying a full handshake each time.
//! Without a `ca`, the system's roots are trusted (rustls-native-certs: the
//! same store curl and OpenSSL use here, so a company CA installed in the OS
//! is honoured, and no root list is compiled into the binary).
//!
//! [`Stream`] is the connection a client reads and writes: plain TCP or TLS
//! over TCP, an enum so that the plaintext path stays a direct call (no boxed
//! trait object per read). A TLS stream is split through `tokio::io::split`
//! (one TLS state serves both directions); a plain one keeps tokio's owned,
//! lock-free halves.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::rx_time::{RxClock, RxReadHalf, RxTcp};

/// How a client sets up TLS: the scenario's `tls:` block. Relative paths are
/// resolved by whoever reads them (the scenario loader: from the scenario's
/// directory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (names and dates unchecked; the
    /// handshake signatures still are). For test gateways only.
    #[serde(default)]
    pub insecure: bool,
    /// The name sent as SNI and checked against the certificate, instead of
    /// the URL's host (e.g. a target given by IP address).
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM certificate chain to present to a server that asks for one (with `client_key`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Resume earlier sessions (TLS 1.3 tickets, TLS 1.2 session ids) so a
    /// reconnecting client skips the full handshake: on by default; off to
    /// measure what a storm of full handshakes costs.
    #[serde(default = "resume_by_default")]
    pub resume: bool,
}

fn resume_by_default() -> bool {
    true
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca: None,
            insecure: false,
            server_name: None,
            client_cert: None,
            client_key: None,
            resume: resume_by_default(),
        }
    }
}

/// The field of a [`TlsConfig`] a [`TlsSetupError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsField {
    /// `ca`.
    Ca,
    /// `server_name`.
    ServerName,
    /// `client_cert`.
    ClientCert,
    /// `client_key`.
    ClientKey,
    /// None in particular: the system's roots, or the settings together.
    Settings,
}

impl TlsField {
    /// The field's name in the scenario's `tls:` block (`tls` for [`TlsField::Settings`]).
    pub fn key(self) -> &'static str {
        match self {
            Self::Ca => "ca",
            Self::ServerName => "server_name",
            Self::ClientCert => "client_cert",
            Self::ClientKey => "client_key",
            Self::Settings => "tls",
        }
    }

    /// The dotted path in a scenario: `tls.ca`, …, or `tls`.
    fn path(self) -> String {
        match self {
            Self::Settings => "tls".to_owned(),
            field => format!("tls.{}", field.key()),
        }
    }
}

/// Why a [`TlsConfig`] cannot be turned into a [`Tls`]: shown as
/// `tls.<field>: <what>` (or `tls: <what>` when no one field is at fault).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", field.path())]
pub struct TlsSetupError {
    /// The setting at fault.
    pub field: TlsField,
    /// What is wrong with it.
    pub message: String,
}

impl TlsSetupError {
    fn new(field: TlsField, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A ready TLS client setup, cheap to clone: every clone shares one
/// `rustls::ClientConfig` and so one session-resumption cache.
#[derive(Clone)]
pub struct Tls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files `config` names and builds the shared client setup:
    /// ALPN `http/1.1`, SNI, in-memory session resumption (rustls's default
    /// cache of 256 servers) unless `resume` is off.
    pub fn new(config: &TlsConfig) -> Result<Tls, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::new(TlsField::Settings, e.to_string()))?;
        let builder = if config.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            let roots = match &config.ca {
                Some(path) => ca_roots(path)?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots)
        };
        let mut tls = match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, TlsField::ClientCert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| file_error(TlsField::ClientKey, key, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsSetupError::new(TlsField::ClientKey, e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(TlsSetupError::new(
                    TlsField::ClientCert,
                    "client_cert needs client_key",
                ))
            }
            (None, Some(_)) => {
                return Err(TlsSetupError::new(
                    TlsField::ClientKey,
                    "client_key needs client_cert",
                ))
            }
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !config.resume {
            tls.resumption = rustls::client::Resumption::disabled();
        }
        let server_name = config
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned())
                    .map_err(|e| TlsSetupError::new(TlsField::ServerName, format!("{name:?}: {e}")))
            })
            .transpose()?;
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            server_name,
        })
    }

    /// The process-wide default (system roots, no client certificate) for
    /// secure URLs configured without a [`Tls`]; built once, so its clients
    /// share one session cache too.
    pub(crate) fn system() -> Result<Tls, TlsSetupError> {
        static SYSTEM: OnceLock<Result<Tls, TlsSetupError>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| Tls::new(&TlsConfig::default()))
            .clone()
    }

    /// The TLS handshake over `tcp`, with SNI `host` unless a server name
    /// was configured.
    pub(crate) async fn connect(&self, host: &str, tcp: TcpStream) -> Result<Stream, TlsFailure> {
        self.connect_rx(host, RxTcp::new(tcp)).await
    }

    /// The TLS handshake over a socket already set up for receive times.
    pub(crate) async fn connect_rx(&self, host: &str, tcp: RxTcp) -> Result<Stream, TlsFailure> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|e| TlsFailure::new(TlsReason::Settings, e.to_string()))?,
        };
        let stream = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(TlsFailure::from_io)?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

fn file_error(field: TlsField, path: &Path, e: impl fmt::Display) -> TlsSetupError {
    TlsSetupError::new(field, format!("{}: {e}", path.display()))
}

fn read_certs(path: &Path, field: TlsField) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| file_error(field, path, e))?;
    if certs.is_empty() {
        return Err(file_error(field, path, "no PEM CERTIFICATE in it"));
    }
    Ok(certs)
}

fn ca_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, TlsField::Ca)? {
        roots
            .add(cert)
            .map_err(|e| file_error(TlsField::Ca, path, e))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none installed".to_owned(), ToString::to_string);
        return Err(TlsSetupError::new(
            TlsField::Settings,
            format!("no system root certificates ({why}): give the CA with --ca FILE or tls.ca"),
        ));
    }
    Ok(roots)
}

/// `insecure`: every certificate is accepted; the handshake signatures are
/// still checked, so the connection is encrypted to whoever holds the key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS handshake failed, as counted (`errors.connect.tls.<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsReason {
    /// The certificate's issuer is not trusted (`tls.unknown_ca`).
    UnknownCa,
    /// The certificate is not for the host name (`tls.name_mismatch`).
    NameMismatch,
    /// The certificate expired or is not valid yet (`tls.expired`).
    Expired,
    /// Any other certificate problem (`tls.bad_certificate`).
    BadCertificate,
    /// The server answered with something that is not TLS (`tls.not_tls`).
    NotTls,
    /// The server sent an alert, e.g. it wants a client certificate (`tls.alert`).
    Alert,
    /// The server closed the connection during the handshake (`tls.closed`).
    Closed,
    /// The host cannot be used as a TLS server name (`tls.settings`).
    Settings,
    /// Anything else (`tls.handshake`).
    Handshake,
}

impl TlsReason {
    /// The metric name: `tls.<reason>`.
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::UnknownCa => "tls.unknown_ca",
            Self::NameMismatch => "tls.name_mismatch",
            Self::Expired => "tls.expired",
            Self::BadCertificate => "tls.bad_certificate",
            Self::NotTls => "tls.not_tls",
            Self::Alert => "tls.alert",
            Self::Closed => "tls.closed",
            Self::Settings => "tls.settings",
            Self::Handshake => "tls.handshake",
        }
    }

    /// What to check, for the one line of a run in which no client connected.
    fn hint(self) -> &'static str {
        match self {
            Self::UnknownCa => {
                ": give the gateway's CA with --ca FILE (tls.ca in the scenario), or --insecure for a test gateway"
            }
            Self::NameMismatch => {
                ": connect by the certificate's name, or set tls.server_name to it"
            }
            Self::BadCertificate => {
                ": a self-signed certificate needs --insecure; else give the CA that signed it with --ca"
            }
            Self::NotTls => ": is the target plaintext (http:// or ws://)?",
            Self::Alert | Self::Closed => {
                ": does the gateway want a client certificate (tls.client_cert)?"
            }
            _ => "",
        }
    }
}

/// A failed TLS handshake: its counted reason and what rustls said.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed ({}): {message}{}", reason.metric_name(), reason.hint())]
pub struct TlsFailure {
    /// The counted reason.
    pub reason: TlsReason,
    /// What went wrong, in rustls's words.
    pub message: String,
}

impl TlsFailure {
    fn new(reason: TlsReason, message: String) -> Self {
        Self { reason, message }
    }

    /// Classifies what tokio-rustls returned (a rustls error inside an
    /// `io::Error`, or the socket's own error).
    fn from_io(err: io::Error) -> Self {
        let Some(tls) = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        else {
            let reason = match err.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe => TlsReason::Closed,
                _ => TlsReason::Handshake,
            };
            return Self::new(reason, err.to_string());
        };
        use rustls::Error as E;
        use CertificateError as C;
        let reason = match tls {
            E::InvalidCertificate(C::UnknownIssuer) => TlsReason::UnknownCa,
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                TlsReason::NameMismatch
            }
            E::InvalidCertificate(
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
            ) => TlsReason::Expired,
            E::InvalidCertificate(_) => TlsReason::BadCertificate,
            E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::PeerSentOversizedRecord => {
                TlsReason::NotTls
            }
            E::AlertReceived(_) => TlsReason::Alert,
            _ => TlsReason::Handshake,
        };
        Self::new(reason, tls.to_string())
    }
}

/// A client's connection: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plaintext.
    Plain(RxTcp),
    /// TLS (boxed once per connection: it is much larger than a socket).
    Tls(Box<TlsStream<RxTcp>>),
}

impl Stream {
    /// Plaintext over `tcp`, with kernel receive times asked for.
    pub fn plain(tcp: TcpStream) -> Stream {
        Stream::Plain(RxTcp::new(tcp))
    }

    /// The clock of the socket's reads (under TLS: of the TCP reads).
    pub fn clock(&self) -> RxClock {
        match self {
            Stream::Plain(tcp) => tcp.clock(),
            Stream::Tls(tls) => tls.get_ref().0.clock(),
        }
    }

    /// The reading and writing halves.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

/// The reading half of a [`Stream`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    /// Plaintext.
    Plain(RxReadHalf),
    /// TLS.
    Tls(tokio::io::ReadHalf<TlsStream<RxTcp>>),
}

/// The writing half of a [`Stream`].
#[derive(Debug)]
pub(crate) enum WriteHalf {
    /// Plaintext.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(tokio::io::WriteHalf<TlsStream<RxTcp>>),
}

/// Forwards `AsyncRead` to the variant.
macro_rules! forward_read {
    ($ty:ty) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

/// Forwards `AsyncWrite` to the variant.
macro_rules! forward_write {
    ($ty:ty) => {
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_flush(cx),
                    Self::Tls(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

forward_read!(Stream);
forward_read!(ReadHalf);
forward_write!(Stream);
forward_write!(WriteHalf);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_the_field() {
        let missing = TlsConfig {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = Tls::new(&missing).unwrap_err();
        assert_eq!(err.field, TlsField::Ca);
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let half = TlsConfig {
            insecure: true,
            client_cert: Some("c.pem".into()),
            ..TlsConfig::default()
        };
        assert_eq!(Tls::new(&half).unwrap_err().field, TlsField::ClientCert);
        let bad_name = TlsConfig {
            insecure: true,
            server_name: Some("not a name!".into()),
            ..TlsConfig::default()
        };
        assert_eq!(Tls::new(&bad_name).unwrap_err().field, TlsField::ServerName);
    }

    /// A TLS server from a fresh self-signed certificate (the gateway's own
    /// acceptor) that writes one byte on each connection, so that the client
    /// reads the session tickets sent after the handshake.
    async fn one_byte_server() -> (std::net::SocketAddr, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("chorus-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let acceptor = chorus_gateway::tls::acceptor(&cert_path, &key_path).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = tls.write_all(b"x").await;
                    let _ = tls.flush().await;
                    let _ = tls.read(&mut [0u8; 1]).await;
                });
            }
        });
        (addr, dir)
    }

    #[tokio::test]
    async fn clients_of_one_setup_resume_their_sessions() {
        use tokio::io::AsyncReadExt;
        let (addr, dir) = one_byte_server().await;
        let tls = Tls::new(&TlsConfig {
            ca: Some(dir.join("cert.pem")),
            ..TlsConfig::default()
        })
        .unwrap();
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let Stream::Tls(mut stream) = tls.connect("localhost", tcp).await.unwrap() else {
                panic!("a TLS stream");
            };
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
            kinds.push(stream.get_ref().1.handshake_kind());
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
        }
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(kinds, [Some(Full), Some(Resumed), Some(Resumed)]);
        // A separate setup has its own cache, and `resume: false` none.
        let other = Tls::new(&TlsConfig {
            ca: Some(dir.join("cert.pem")),
            resume: false,
            ..TlsConfig::default()
        })
        .unwrap();
        for _ in 0..2 {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let Stream::Tls(mut stream) = other.connect("localhost", tcp).await.unwrap() else {
                panic!("a TLS stream");
            };
            assert_eq!(stream.get_ref().1.handshake_kind(), Some(Full));
            stream.read_exact(&mut [0u8; 1]).await.unwrap();
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rustls_errors_become_counted_reasons() {
        let wrap =
            |e: rustls::Error| TlsFailure::from_io(io::Error::new(io::ErrorKind::InvalidData, e));
        let unknown = wrap(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(unknown.reason, TlsReason::UnknownCa);
        assert!(unknown.to_string().contains("--ca"), "{unknown}");
        assert_eq!(
            wrap(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
            ))
            .reason,
            TlsReason::NameMismatch
        );
        assert_eq!(
            TlsFailure::from_io(io::ErrorKind::UnexpectedEof.into()).reason,
            TlsReason::Closed
        );
    }
}
