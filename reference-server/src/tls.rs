//! TLS for the gateway's one listener (`--tls-cert`/`--tls-key`): the PEM
//! files are read once at start into a rustls server configuration (ring
//! provider, ALPN `http/1.1`, stateless session tickets so resuming clients
//! skip the full handshake without the server keeping per-client state).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the gateway's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} {}: {reason}", path.display())]
pub struct TlsFileError {
    /// `certificate` or `key`.
    pub what: &'static str,
    /// The file given.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Builds the acceptor for the certificate chain at `cert` and the private
/// key at `key`, both PEM.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsFileError> {
    let fail = |what, path: &Path, reason: String| TlsFileError {
        what,
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| fail("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(fail("certificate", cert, "no CERTIFICATE in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| fail("key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| fail("key", key, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| fail("key", key, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
