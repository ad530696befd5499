//! `kuma-cp raft certs`: the documented step that gives a cluster its CA and each peer its
//! certificate. Run it once for the initial peers, copy each peer's files to it, and run it again
//! with the same directory (which keeps the CA) for every peer added later.

use std::io::Write;
use std::path::{Path, PathBuf};

use kuma_ca::ClusterCa;

/// Why `kuma-cp raft certs` wrote nothing (or not everything). A file that cannot be created,
/// read or written says which and what to do; the cause is the `source`, printed after it once.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("could not {action} {path} (give --dir a directory you can read and write)")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Ca(#[from] kuma_ca::CaError),
    #[error(
        "{dir} has {present} but not {missing}: restore it, or use an empty directory for a new CA"
    )]
    HalfCa { dir: PathBuf, present: &'static str, missing: &'static str },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CertsError + 'a {
    move |source| CertsError::Io { action, path: path.to_path_buf(), source }
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(if private { 0o600 } else { 0o644 });
    options.open(path).and_then(|mut f| f.write_all(contents.as_bytes())).map_err(io("write", path))
}

/// Writes `ca.crt` and `ca.key` (unless present: then they are reused) and `peer-<id>.crt` /
/// `peer-<id>.key` for every id into `dir`. Returns what it wrote, for the user.
pub fn generate(dir: &Path, ids: &[u64]) -> Result<Vec<PathBuf>, CertsError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let mut written = Vec::new();
    let ca = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => ClusterCa::from_pem(
            &std::fs::read_to_string(&ca_cert).map_err(io("read", &ca_cert))?,
            &std::fs::read_to_string(&ca_key).map_err(io("read", &ca_key))?,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// kuma-cp prints an error with `{:#}`: the message with what to do, then the cause once.
    #[test]
    fn a_directory_that_cannot_be_made_is_named_with_what_to_do_and_the_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = generate(&file.join("certs"), &[1]).unwrap_err();
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            format!(
                "could not create {}/certs (give --dir a directory you can read and write): Not a \
                 directory (os error 20)",
                file.display()
            )
        );
    }
}
