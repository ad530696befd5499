//! The CA of a mesh and the SPIFFE identities it issues to dataplanes. A `builtin` CA is generated
//! once per mesh (its PEMs are then stored as Secrets); a `provided` one is the user's own
//! certificate and key. Identity certificates carry one URI SAN `spiffe://<mesh>/<service>` per
//! inbound service of the dataplane.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::cluster::{CaError, IssuedCert};

/// Validity of a builtin mesh CA (Kuma's default is 10 years).
pub const BUILTIN_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default lifetime of a dataplane certificate (Kuma: 30 days).
pub const DEFAULT_DP_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates are back-dated this much, so a peer whose clock is slightly behind accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The SPIFFE id of `service` in `mesh`: `spiffe://<mesh>/<service>`.
pub fn spiffe_id(mesh: &str, service: &str) -> String {
    format!("spiffe://{mesh}/{service}")
}

/// When a certificate issued at `issued` for `validity` should be replaced: at 4/5 of its life,
/// as Kuma does.
pub fn rotation_time(issued: SystemTime, validity: Duration) -> SystemTime {
    issued + validity.mul_f64(0.8)
}

/// A mesh's certificate authority: its certificate and private key, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct MeshCa {
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("MeshCa").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// Sets the validity of `params` to `[now - skew, now + validity]`, to the second.
pub(crate) fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + now + validity;
}

/// The URI SANs of a PEM certificate, and whether it is a CA.
pub fn certificate_uris(cert_pem: &str) -> Result<(Vec<String>, bool), CaError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| CaError::Parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| CaError::Parse(e.to_string()))?;
    let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|b| b.value.ca);
    let uris = match cert.subject_alternative_name().ok().flatten() {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok((uris, is_ca))
}

impl MeshCa {
    /// A new self-signed CA for `mesh` with a fresh key, valid from now for `validity`.
    pub fn generate(mesh: &str, validity: Duration) -> Result<MeshCa, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("kuma-rs mesh {mesh} CA"));
        name.push(DnType::OrganizationName, "kuma-rs");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // The CA's own URI SAN names the mesh, as Kuma's builtin CA does.
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{mesh}").try_into()?)];
        set_validity(&mut params, validity);
        let cert = params.self_signed(&key)?;
        Ok(MeshCa { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A CA from its PEM certificate and key (a provided CA, or a builtin one read back). The
    /// certificate must parse and be a CA, and the key must parse.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<MeshCa, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        if !certificate_uris(cert_pem)?.1 {
            return Err(CaError::NotACa);
        }
        Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(MeshCa { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() })
    }

    /// The CA certificate, PEM: what every dataplane of the mesh trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM: only for storing it as a Secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// An identity certificate for a dataplane of `mesh` serving `services`, valid from now for
    /// `validity`, usable for TLS server and client authentication.
    pub fn issue_identity(
        &self,
        mesh: &str,
        services: &[&str],
        validity: Duration,
    ) -> Result<IssuedCert, CaError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, KeyPair::from_pem(&self.key_pem)?)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, services.first().copied().unwrap_or(mesh));
        params.distinguished_name = name;
        params.subject_alt_names = services
            .iter()
            .map(|s| Ok(SanType::URI(spiffe_id(mesh, s).try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut params, validity);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// A self-signed server certificate for `names` (DNS names or IP addresses), valid for
/// `validity`: what the SDS server presents when no certificate is configured.
pub fn self_signed_server_cert(names: &[&str], validity: Duration) -> Result<IssuedCert, CaError> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, names.first().copied().unwrap_or("kuma-control-plane"));
    params.distinguished_name = name;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, validity);
    let cert = params.self_signed(&key)?;
    Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builtin_ca_issues_identities_naming_each_service_and_never_prints_its_key() {
        let ca = MeshCa::generate("demo", BUILTIN_CA_VALIDITY).unwrap();
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        let reloaded = MeshCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let identity =
            reloaded.issue_identity("demo", &["web", "admin"], Duration::from_secs(60)).unwrap();
        let (sans, is_ca) = certificate_uris(&identity.cert_pem).unwrap();
        assert_eq!(sans, ["spiffe://demo/web", "spiffe://demo/admin"]);
        assert!(!is_ca);
        assert!(!format!("{identity:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_provided_certificate_that_is_not_a_ca_is_refused() {
        let ca = MeshCa::generate("demo", BUILTIN_CA_VALIDITY).unwrap();
        let leaf = ca.issue_identity("demo", &["web"], Duration::from_secs(60)).unwrap();
        assert!(matches!(MeshCa::from_pem(&leaf.cert_pem, &leaf.key_pem), Err(CaError::NotACa)));
        assert!(MeshCa::from_pem("garbage", ca.key_pem()).is_err());
    }

    #[test]
    fn rotation_is_due_at_four_fifths_of_the_lifetime() {
        let t0 = SystemTime::UNIX_EPOCH;
        assert_eq!(rotation_time(t0, Duration::from_secs(100)), t0 + Duration::from_secs(80));
    }
}
