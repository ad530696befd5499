//! `kuma-cp raft certs`: the documented step that gives a cluster its CA and each peer its
//! certificate. Run it once for the initial peers, copy each peer's files to it, and run it again
//! with the same directory (which keeps the CA) for every peer added later.

use std::io::Write;
use std::path::{Path, PathBuf};

use kuma_ca::ClusterCa;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Ca(kuma_ca::CaError),
    #[error(
        "{dir} has {present} but not {missing}: restore it, or use an empty directory for a new CA"
    )]
    HalfCa { dir: PathBuf, present: &'static str, missing: &'static str },
}

impl From<kuma_ca::CaError> for CertsError {
    fn from(e: kuma_ca::CaError) -> CertsError {
        CertsError::Ca(e)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |error| CertsError::Io { path: path.to_path_buf(), error }
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(if private { 0o600 } else { 0o644 });
    options.open(path).and_then(|mut f| f.write_all(contents.as_bytes())).map_err(io(path))
}

/// Writes `ca.crt` and `ca.key` (unless present: then they are reused) and `peer-<id>.crt` /
/// `peer-<id>.key` for every id into `dir`. Returns what it wrote, for the user.
pub fn generate(dir: &Path, ids: &[u64]) -> Result<Vec<PathBuf>, CertsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let mut written = Vec::new();
    let ca = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => ClusterCa::from_pem(
            &std::fs::read_to_string(&ca_cert).map_err(io(&ca_cert))?,
            &std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?,
        )?,
        (false, false) => {
            let ca = ClusterCa::generate()?;
            write(&ca_cert, &ca.ca.cert_pem, false)?;
            write(&ca_key, &ca.ca.key_pem, true)?;
            written.extend([ca_cert, ca_key]);
            ca
        }
        (true, false) => {
            return Err(CertsError::HalfCa {
                dir: dir.into(),
                present: "ca.crt",
                missing: "ca.key",
            })
        }
        (false, true) => {
            return Err(CertsError::HalfCa {
                dir: dir.into(),
                present: "ca.key",
                missing: "ca.crt",
            })
        }
    };
    for id in ids {
        let peer = ca.issue_peer(*id)?;
        let (cert, key) = (dir.join(format!("peer-{id}.crt")), dir.join(format!("peer-{id}.key")));
        write(&cert, &peer.cert_pem, false)?;
        write(&key, &peer.key_pem, true)?;
        written.extend([cert, key]);
    }
    Ok(written)
}
