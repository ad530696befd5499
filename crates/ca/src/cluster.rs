//! The cluster CA: a self-signed CA that issues one certificate per peer. Every peer certificate
//! names the fixed server name `kuma-raft` (peers verify each other against the CA, not against
//! addresses, so peers may move) and serves for both server and client authentication.

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The name in every peer certificate, and the name peers check when they connect.
pub const PEER_SERVER_NAME: &str = "kuma-raft";

const CA_COMMON_NAME: &str = "kuma-rs Raft peers CA";
const CA_YEARS: i32 = 10;
const PEER_YEARS: i32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("could not generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate is not a CA certificate (basic constraints CA:true is missing)")]
    NotACa,
    #[error("the certificate is not valid PEM X.509: {0}")]
    Parse(String),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("IssuedCert").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The CA of one cluster.
#[derive(Debug)]
pub struct ClusterCa {
    pub ca: IssuedCert,
}

fn validity(params: &mut CertificateParams, years: i32) {
    let today = Utc::now().date_naive();
    // Day 28 at most: every month has it, in every year.
    let day = today.day().min(28) as u8;
    params.not_before = rcgen::date_time_ymd(today.year(), today.month() as u8, day);
    params.not_after = rcgen::date_time_ymd(today.year() + years, today.month() as u8, day);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl ClusterCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<ClusterCa, CaError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        validity(&mut params, CA_YEARS);
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa { ca: IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() } })
    }

    /// The CA from its PEM certificate and key (as written by `generate`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, CaError> {
        KeyPair::from_pem(key_pem)?;
        Ok(ClusterCa {
            ca: IssuedCert { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() },
        })
    }

    /// A certificate for peer `id`, valid for server and client authentication.
    pub fn issue_peer(&self, id: u64) -> Result<IssuedCert, CaError> {
        let ca_key = KeyPair::from_pem(&self.ca.key_pem)?;
        // The issuer's name and key are what the chain needs; its parameters are rebuilt.
        let issuer = Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec![PEER_SERVER_NAME.to_string(), format!("peer-{id}")])?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("kuma-cp peer {id}"));
        params.distinguished_name = name;
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, PEER_YEARS);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_issues_peer_certificates_and_never_prints_keys() {
        let ca = ClusterCa::generate().unwrap();
        assert!(ca.ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let peer = ca.issue_peer(3).unwrap();
        assert!(peer.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{peer:?}").contains("PRIVATE KEY"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        let reloaded = ClusterCa::from_pem(&ca.ca.cert_pem, &ca.ca.key_pem).unwrap();
        assert!(reloaded.issue_peer(4).is_ok());
    }
}
