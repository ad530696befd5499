//! The control plane's own CA: generated once by the leader and replicated as a GlobalSecret, it
//! issues each peer the certificate that peer presents on the ports dataplanes talk to (bootstrap,
//! xDS, SDS), so kuma-dp and Envoy verify every peer against one CA.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::cluster::{CaError, IssuedCert};
use crate::mesh_ca::{certificate_uris, set_validity};

/// How long a generated control-plane CA is valid.
pub const CONTROL_PLANE_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a peer's server certificate is valid; a peer issues itself a new one at every start.
pub const CONTROL_PLANE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The control plane's CA, certificate and key in PEM.
#[derive(Clone)]
pub struct ControlPlaneCa {
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for ControlPlaneCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("ControlPlaneCa").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl ControlPlaneCa {
    /// A new self-signed CA with a fresh key.
    pub fn generate() -> Result<ControlPlaneCa, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "kuma-rs control plane CA");
        name.push(DnType::OrganizationName, "kuma-rs");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, CONTROL_PLANE_CA_VALIDITY);
        let cert = params.self_signed(&key)?;
        Ok(ControlPlaneCa { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// The CA from the bundle `bundle()` wrote (certificate, then key).
    pub fn from_bundle(bundle: &str) -> Result<ControlPlaneCa, CaError> {
        let (cert_pem, key_pem) = split_pem_bundle(bundle);
        let key = KeyPair::from_pem(&key_pem)?;
        if !certificate_uris(&cert_pem)?.1 {
            return Err(CaError::NotACa);
        }
        Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(ControlPlaneCa { cert_pem, key_pem })
    }

    /// Certificate then key, PEM: what is stored in the GlobalSecret.
    pub fn bundle(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }

    /// The CA certificate, PEM: what kuma-dp (`--ca-cert-file`) and Envoy trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid from now.
    pub fn issue_server(&self, names: &[String]) -> Result<IssuedCert, CaError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, KeyPair::from_pem(&self.key_pem)?)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, names.first().map_or("kuma-control-plane", String::as_str));
        params.distinguished_name = name;
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, CONTROL_PLANE_CERT_VALIDITY);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Splits PEM text into its certificate blocks and its private key block.
pub fn split_pem_bundle(pem: &str) -> (String, String) {
    let (mut certs, mut key) = (String::new(), String::new());
    let mut current = String::new();
    for line in pem.lines() {
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END ") {
            if line.contains("PRIVATE KEY") {
                key.push_str(&current);
            } else {
                certs.push_str(&current);
            }
            current.clear();
        }
    }
    (certs, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_round_trips_through_its_bundle_and_issues_server_certificates() {
        let ca = ControlPlaneCa::generate().unwrap();
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        let reloaded = ControlPlaneCa::from_bundle(&ca.bundle()).unwrap();
        assert_eq!(reloaded.cert_pem(), ca.cert_pem());
        let server =
            reloaded.issue_server(&["cp-1.example".to_string(), "10.0.0.1".to_string()]).unwrap();
        // The chain: the server certificate, then the CA.
        assert_eq!(server.cert_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(ControlPlaneCa::from_bundle(ca.cert_pem()).is_err(), "a bundle needs the key");
    }
}
