//! `InstallError`: wrong flags or certificate files of `kumactl install control-plane`. Each
//! message is one line naming the flag, the value and what to do; a file that cannot be read or a
//! certificate that cannot be generated has its cause as its `source`, printed after it.

use std::path::PathBuf;

/// Why `kumactl install control-plane` printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "--namespace {value:?} is not a valid namespace name ({reason}): use at most 63 \
         lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    Namespace { value: String, reason: &'static str },
    #[error("--replicas {value:?} is not valid: give a whole number, 1 or more")]
    Replicas { value: String },
    #[error("{flag} {value:?} is not an image reference: give one like kuma-rs/kuma-cp:2.0.0")]
    Image { flag: &'static str, value: String },
    #[error(
        "--tls-cert, --tls-key and --ca-cert go together ({missing} not given): give all \
         three, or none and kumactl generates them"
    )]
    TlsFlags { missing: String },
    #[error("could not read {flag} {path} (give a readable PEM file)")]
    ReadFile { flag: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{flag} {path} holds no {what} in PEM form")]
    NoPem { flag: &'static str, path: PathBuf, what: &'static str },
    #[error("--tls-key {path} cannot be used: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "--tls-key {key} is not the key of the certificate in --tls-cert {cert}: give the key \
         the certificate was issued for"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "the certificate in --tls-cert {cert} is not valid for {name} from the CA in --ca-cert \
         {ca} ({reason}): the apiserver calls the webhook at that name and trusts only that CA"
    )]
    NotValidForService { cert: PathBuf, ca: PathBuf, name: String, reason: String },
    #[error("could not generate the admission webhook's certificate")]
    Generate(#[from] rcgen::Error),
}
