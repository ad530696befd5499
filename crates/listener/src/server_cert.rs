//! `ServerCert`: the certificate a TLS server presents, which can be set or replaced at any time.

use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("the certificate is not PEM: {0}")]
    Certificate(String),
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    #[error("the private key is not a PEM key: {0}")]
    Key(String),
    #[error("the private key cannot sign: {0}")]
    Signing(String),
}

/// The certificate chain and key a server presents; none until [`ServerCert::set_pem`].
#[derive(Default)]
pub struct ServerCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert").field("ready", &self.is_ready()).finish()
    }
}

impl ServerCert {
    pub fn new() -> Arc<ServerCert> {
        Arc::new(ServerCert::default())
    }

    /// Presents `chain_pem` (the server certificate first) with `key_pem` from now on.
    pub fn set_pem(&self, chain_pem: &str, key_pem: &str) -> Result<(), CertError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::Certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| CertError::Key(e.to_string()))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| CertError::Signing(e.to_string()))?;
        let certified = Arc::new(CertifiedKey::new(chain, signer));
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(certified);
        Ok(())
    }

    /// Whether a certificate is set.
    pub fn is_ready(&self) -> bool {
        self.current.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
