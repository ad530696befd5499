//! `WebhookTls`: the TLS files of the admission webhook server (kuma-cp's port 5443), which the
//! apiserver calls at `kuma-control-plane.<namespace>.svc`. Either generated here (a CA and a
//! server certificate, ECDSA P-256, with rcgen) or read from the user's files and checked the way
//! the apiserver will check them: the key belongs to the certificate, and the certificate chains
//! to the CA and names the Service. A mistake shows up here, not as pods failing to be created.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;

use super::error::InstallError;

/// The Service in front of kuma-cp; the webhook's certificate is issued for it.
pub(crate) const SERVICE_NAME: &str = "kuma-control-plane";

/// How long generated certificates are valid: ten years.
pub(crate) const GENERATED_VALIDITY: Duration = Duration::from_secs(3652 * 24 * 60 * 60);

/// Generated certificates start an hour early, for clocks of the cluster that run behind.
const CLOCK_SKEW: Duration = Duration::from_secs(60 * 60);

/// The webhook server's certificate and key, and the CA the apiserver trusts for it (PEM).
pub(crate) struct WebhookTls {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) ca_pem: String,
}

impl std::fmt::Debug for WebhookTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("WebhookTls")
            .field("cert_pem", &self.cert_pem)
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// The DNS names the webhook's certificate carries; the apiserver dials the first.
pub(crate) fn service_dns_names(namespace: &str) -> [String; 3] {
    [
        format!("{SERVICE_NAME}.{namespace}.svc"),
        format!("{SERVICE_NAME}.{namespace}"),
        SERVICE_NAME.to_string(),
    ]
}

/// The three files of `--tls-cert`, `--tls-key` and `--ca-cert`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsFiles<'a> {
    pub(crate) cert: &'a Path,
    pub(crate) key: &'a Path,
    pub(crate) ca: &'a Path,
}

impl WebhookTls {
    /// A new CA and a server certificate for the Service in `namespace`, both valid for ten
    /// years. The CA's key is not kept: running the install again makes a new pair.
    pub(crate) fn generate(namespace: &str) -> Result<WebhookTls, InstallError> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = common_name("kuma-control-plane admission webhook CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut ca_params);
        let ca_pem = ca_params.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let [svc, ..] = service_dns_names(namespace);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(service_dns_names(namespace).to_vec())?;
        params.distinguished_name = common_name(&svc);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params);
        let cert_pem = params.signed_by(&key, &issuer)?.pem();
        Ok(WebhookTls { cert_pem, key_pem: key.serialize_pem(), ca_pem })
    }

    /// Reads the user's files and checks them for the Service in `namespace`.
    pub(crate) fn from_files(
        files: TlsFiles<'_>,
        namespace: &str,
    ) -> Result<WebhookTls, InstallError> {
        let read = |flag: &'static str, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| InstallError::ReadFile {
                flag,
                path: path.to_path_buf(),
                source,
            })
        };
        let tls = WebhookTls {
            cert_pem: read("--tls-cert", files.cert)?,
            key_pem: read("--tls-key", files.key)?,
            ca_pem: read("--ca-cert", files.ca)?,
        };
        tls.check(files, namespace)?;
        Ok(tls)
    }

    /// The key belongs to the first certificate, and that certificate (with any intermediates
    /// after it) chains to the CA and is valid now for `kuma-control-plane.<namespace>.svc`.
    fn check(&self, files: TlsFiles<'_>, namespace: &str) -> Result<(), InstallError> {
        let no_pem =
            |flag, path: &Path, what| InstallError::NoPem { flag, path: path.to_path_buf(), what };
        let chain = certificates(&self.cert_pem)
            .ok_or_else(|| no_pem("--tls-cert", files.cert, "certificate"))?;
        let cas = certificates(&self.ca_pem)
            .ok_or_else(|| no_pem("--ca-cert", files.ca, "certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|_| no_pem("--tls-key", files.key, "private key"))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let bad_key = |e: rustls::Error| InstallError::BadKey {
            path: files.key.to_path_buf(),
            reason: e.to_string(),
        };
        let signing_key = provider.key_provider.load_private_key(key).map_err(bad_key)?;
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            CertifiedKey::new(chain.clone(), signing_key).keys_match()
        {
            return Err(InstallError::KeyMismatch {
                cert: files.cert.to_path_buf(),
                key: files.key.to_path_buf(),
            });
        }

        let [name, ..] = service_dns_names(namespace);
        let invalid = |reason: String| InstallError::NotValidForService {
            cert: files.cert.to_path_buf(),
            ca: files.ca.to_path_buf(),
            name: name.clone(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            roots.add(ca).map_err(|e| invalid(format!("the CA cannot be read: {}", reason(e))))?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let server_name = ServerName::try_from(name.clone()).map_err(|e| invalid(e.to_string()))?;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .map_err(|e| invalid(reason(e)))?;
        Ok(())
    }
}

/// Every certificate of a PEM text, or `None` when it holds none (or a broken one).
fn certificates(pem: &str) -> Option<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>();
    certs.ok().filter(|certs| !certs.is_empty())
}

/// rustls words certificate errors as a TLS client sees them ("invalid peer certificate: ...");
/// here there is no peer, only the certificate.
fn reason(e: rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(e) => e.to_string(),
        e => e.to_string(),
    }
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn set_validity(params: &mut CertificateParams) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + now + GENERATED_VALIDITY;
}
