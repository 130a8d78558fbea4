//! The bottle's certificate authority, minted per launch on the host. Its key
//! goes to the sidecar only (mode 0600 in the state dir); the agent gets the
//! certificate, and the preflight shows its SHA-256 fingerprint.

use secret::Secret;
use sha2::{Digest, Sha256};

pub struct BottleCa {
    pub cert_pem: String,
    pub key_pem: Secret<String>,
    /// SHA-256 of the DER certificate, uppercase hex pairs joined by ':'.
    pub fingerprint: String,
}

impl std::fmt::Debug for BottleCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BottleCa")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl BottleCa {
    /// A fresh CA named after the bottle, valid for 30 days.
    pub fn mint(identity: &str) -> Result<BottleCa, crate::BackendError> {
        let err = |e: rcgen::Error| crate::BackendError::Ca(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("bot-bottle {identity} CA"),
        );
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "bot-bottle");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        let cert = params.self_signed(&key).map_err(err)?;
        let digest = Sha256::digest(cert.der());
        let fingerprint = digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        Ok(BottleCa {
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
            fingerprint,
        })
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
}
