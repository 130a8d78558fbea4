//! The bottle's certificate authority and the leaf certificates the proxy
//! presents. The CA is minted per launch on the host; its key goes to the
//! sidecar only (mode 0600 in the state dir); the agent gets the certificate,
//! and the preflight shows its SHA-256 fingerprint. In the sidecar,
//! [`LeafIssuer`] signs a short-lived leaf per CONNECT host, cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secret::Secret;
use sha2::{Digest, Sha256};

/// A CA that could not be made, read or used to sign.
#[derive(Debug, thiserror::Error)]
#[error("certificate authority: {0}")]
pub struct CaError(pub String);

/// One bottle's CA: the agent trusts it, the proxy mints leaves from it.
pub struct BottleCa {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: Secret<String>,
    /// SHA-256 of the DER certificate, uppercase hex pairs joined by ':'.
    pub fingerprint: String,
}

impl std::fmt::Debug for BottleCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BottleCa").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl BottleCa {
    /// A fresh CA named after the bottle, valid for 30 days.
    pub fn mint(identity: &str) -> Result<BottleCa, CaError> {
        let err = |e: rcgen::Error| CaError(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("bot-bottle {identity} CA"));
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "bot-bottle");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let cert = params.self_signed(&key).map_err(err)?;
        let digest = Sha256::digest(cert.der());
        let fingerprint = digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        Ok(BottleCa { cert_pem: cert.pem(), key_pem: Secret::new(key.serialize_pem()), fingerprint })
    }
}

/// Signs leaf certificates for CONNECT hosts with the bottle's CA.
pub struct LeafIssuer {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// One key pair for every leaf: minting RSA/ECDSA keys per host is the
    /// slow part, and the leaves are only ever trusted through this CA.
    leaf_key: rcgen::KeyPair,
    cache: Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>,
}

impl std::fmt::Debug for LeafIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafIssuer").finish_non_exhaustive()
    }
}

/// Leaves live a day: long enough for any session, short if one leaks.
const LEAF_VALIDITY_HOURS: i64 = 24;

impl LeafIssuer {
    /// From the CA certificate and key, PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &Secret<String>) -> Result<LeafIssuer, CaError> {
        let err = |e: rcgen::Error| CaError(e.to_string());
        let ca_key = rcgen::KeyPair::from_pem(key_pem.expose()).map_err(err)?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(cert_pem, ca_key).map_err(err)?;
        let leaf_key = rcgen::KeyPair::generate().map_err(err)?;
        Ok(LeafIssuer { issuer, leaf_key, cache: Mutex::new(HashMap::new()) })
    }

    /// The certified key for `host` (SAN = host), minted once and cached:
    /// for routed hosts, a set the manifest bounds.
    pub fn leaf(&self, host: &str) -> Result<Arc<rustls::sign::CertifiedKey>, CaError> {
        let host = host.to_ascii_lowercase();
        if let Some(hit) = self.cache.lock().map_err(|_| CaError("leaf cache poisoned".into()))?.get(&host) {
            return Ok(hit.clone());
        }
        let certified = self.leaf_uncached(&host)?;
        self.cache.lock().map_err(|_| CaError("leaf cache poisoned".into()))?.insert(host, certified.clone());
        Ok(certified)
    }

    /// A certified key for `host` minted now and not kept: for names the
    /// agent chooses (a refusal answered inside TLS), which must not grow
    /// the cache.
    pub fn leaf_uncached(&self, host: &str) -> Result<Arc<rustls::sign::CertifiedKey>, CaError> {
        let host = host.to_ascii_lowercase();
        let err = |e: rcgen::Error| CaError(e.to_string());
        let mut params = rcgen::CertificateParams::new(vec![host.clone()]).map_err(err)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, host.clone());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::hours(LEAF_VALIDITY_HOURS);
        let cert = params.signed_by(&self.leaf_key, &self.issuer).map_err(err)?;
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(self.leaf_key.serialize_der().into());
        let signing = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| CaError(e.to_string()))?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signing)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mints_distinct_cas_with_fingerprints() {
        let a = BottleCa::mint("dev-abcde").unwrap();
        let b = BottleCa::mint("dev-abcde").unwrap();
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(!format!("{a:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn leaves_are_cached_per_host() {
        let ca = BottleCa::mint("x").unwrap();
        let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let a = issuer.leaf("API.example.com").unwrap();
        let b = issuer.leaf("api.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &issuer.leaf("other.example.com").unwrap()));
    }

    #[test]
    fn names_the_agent_makes_up_do_not_grow_the_cache() {
        let ca = BottleCa::mint("x").unwrap();
        let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        for i in 0..50 {
            issuer.leaf_uncached(&format!("n{i}.unrouted.example")).unwrap();
        }
        assert_eq!(issuer.cache.lock().unwrap().len(), 0);
        issuer.leaf("api.example.com").unwrap();
        assert_eq!(issuer.cache.lock().unwrap().len(), 1);
    }
}
