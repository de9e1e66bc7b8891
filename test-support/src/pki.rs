//! Certificates for the TLS tests, made by the test with `rcgen`: a CA, a
//! server certificate it signs for `localhost` and `127.0.0.1`, and a second,
//! unrelated CA; written as PEM files into a fresh temporary directory that
//! is removed when the [`Pki`] drops.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The PEM files of one test's certificates.
pub struct Pki {
    /// The temporary directory holding them.
    pub dir: PathBuf,
    /// The CA's certificate.
    pub ca: PathBuf,
    /// The CA's certificate, as PEM text (for the JS client's `ca` option).
    pub ca_pem: String,
    /// The server's certificate (signed by `ca`).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// A CA that signed nothing here: trusting it alone must refuse the server.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("a self-signed CA").pem();
    (params, key, pem)
}

impl Pki {
    /// Fresh certificates in a new directory named after `tag`.
    pub fn new(tag: &str) -> Pki {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("chorus-tls-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let (ca_params, ca_key, ca_pem) = ca("chorus test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("a server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "chorus test gateway");
        let server = params
            .signed_by(&server_key, &issuer)
            .expect("a server certificate");
        let (_, _, other_pem) = ca("an unrelated CA");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        Pki {
            ca: write("ca.pem", &ca_pem),
            cert: write("server.pem", &server.pem()),
            key: write("server-key.pem", &server_key.serialize_pem()),
            other_ca: write("other-ca.pem", &other_pem),
            ca_pem,
            dir,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
