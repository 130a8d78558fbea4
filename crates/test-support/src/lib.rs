//! What the workspace's tests and benchmarks share, so that each does not
//! write it again: a test CA that issues TLS server certificates for
//! loopback upstreams ([`TestCa`]), and the accept loop every loopback
//! test server runs ([`accept_each`]).
//!
//! For tests only (`publish = false`): it panics on what a test would
//! fail on anyway, and knows nothing of bot-bottle.

#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;

/// A certificate authority for test upstreams: the proxy under test is told
/// to trust [`TestCa::cert_pem`] (`--upstream-ca`), the upstream serves a
/// certificate it issued.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A server certificate and its key, PEM, as other servers load them.
pub struct LeafPem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS #8).
    pub key: String,
}

impl TestCa {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("a CA certificate");
        TestCa { cert_pem: cert.pem(), issuer: rcgen::Issuer::new(params, key) }
    }

    fn issue(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names).expect("params").signed_by(&key, &self.issuer).expect("signed");
        (cert, key)
    }

    /// A certificate for `names` and its key, PEM.
    pub fn leaf_pem(&self, names: &[&str]) -> LeafPem {
        let (cert, key) = self.issue(names);
        LeafPem { cert: cert.pem(), key: key.serialize_pem() }
    }

    /// A TLS acceptor serving a certificate for `names` (ring, the safe
    /// default protocol versions, no client auth).
    pub fn acceptor(&self, names: &[&str]) -> tokio_rustls::TlsAcceptor {
        let (cert, key) = self.issue(names);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("a server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// Accept on `listener` for as long as the runtime lives, each connection
/// on its own task running `each` (a failed accept is skipped).
pub fn accept_each<F, Fut>(listener: tokio::net::TcpListener, each: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            tokio::spawn(each(tcp));
        }
    });
}
