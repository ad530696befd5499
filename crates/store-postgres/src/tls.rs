//! The rustls client configuration for each `TlsMode`, on the ring provider like the rest of the
//! workspace. `verify-ca` checks the chain to the configured CA but not the host name (as libpq's
//! `sslmode=verify-ca`); `verify-full` checks both; `require` checks neither.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::{PostgresError, TlsConfig, TlsMode};

/// The client TLS configuration of `tls` (also built for `disable`, where it is never used).
pub(crate) fn client_config(tls: &TlsConfig) -> Result<ClientConfig, PostgresError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match tls.mode {
        TlsMode::Disable | TlsMode::Require => {
            Arc::new(AnyCertificate { provider: provider.clone() })
        }
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let ca_path = tls.ca_path.as_deref().ok_or_else(|| PostgresError::Tls {
                path: Default::default(),
                reason: format!("mode {} needs caPath", tls.mode),
            })?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_path)? {
                roots.add(cert).map_err(|e| tls_error(ca_path, e))?;
            }
            let chain =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| tls_error(ca_path, e))?;
            if tls.mode == TlsMode::VerifyFull {
                chain
            } else {
                Arc::new(ChainOnly { chain })
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PostgresError::Tls { path: Default::default(), reason: e.to_string() })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.cert_path, &tls.key_path) {
        (Some(cert_path), Some(key_path)) => {
            let certs = read_certs(cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| tls_error(key_path, e))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| tls_error(cert_path, e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PostgresError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn tls_error(path: &Path, e: impl std::fmt::Display) -> PostgresError {
    PostgresError::Tls { path: path.to_path_buf(), reason: e.to_string() }
}

/// `require`: any certificate, as long as the server proves it holds its key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

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
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check, except that the certificate need not name the host.
#[derive(Debug)]
struct ChainOnly {
    chain: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // webpki checks the chain before the name, so a name error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
