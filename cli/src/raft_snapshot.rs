//! `kumactl raft snapshot save FILE`: a consistent snapshot of the replicated state, fetched from
//! `GET /status/raft/snapshot` of any peer (admin only) and written atomically: a temporary file
//! beside FILE, synced, renamed over FILE, and the directory synced. A half-written or damaged
//! answer never becomes FILE.
//!
//! The file format belongs to kuma-cp (`kuma-cp raft restore` reads it; see the Raft crate's
//! `backup` module). kumactl reads only what it checks and prints: the first line (format and
//! version), the header's log position, resource count, body length and SHA-256, which it
//! recomputes.

use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest::{digest, SHA256};
use serde::Deserialize;

use crate::client::ApiClient;
use crate::error::CliError;

/// `GET` here answers a snapshot file.
const SNAPSHOT: [&str; 3] = ["status", "raft", "snapshot"];
/// How a snapshot file starts; the version follows.
const FORMAT_PREFIX: &str = "kuma-raft-snapshot v";

/// kumactl's reading of a snapshot file's header.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Header {
    index: u64,
    term: u64,
    resources: u64,
    body_bytes: u64,
    sha256: String,
}

/// Why a snapshot was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "the control plane at {url} sent a damaged snapshot ({reason}); nothing was written: \
         save again"
    )]
    Damaged { url: String, reason: String },
    #[error(
        "could not write the snapshot to {path} (nothing was written to it; check that its \
         directory exists and is writable)"
    )]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// Checks a whole snapshot file as kuma-cp sent it, returning its header.
fn check(bytes: &[u8]) -> Result<Header, String> {
    let line_end = |bytes: &[u8]| bytes.iter().position(|b| *b == b'\n');
    let first = line_end(bytes).ok_or("it has no header")?;
    let magic = std::str::from_utf8(&bytes[..first]).unwrap_or_default();
    if !magic.starts_with(FORMAT_PREFIX) {
        return Err("it does not start with the snapshot format's name".to_string());
    }
    let rest = &bytes[first + 1..];
    let second = line_end(rest).ok_or("it ends inside its header")?;
    let header: Header = serde_json::from_slice(&rest[..second])
        .map_err(|e| format!("its header does not read: {e}"))?;
    let body = &rest[second + 1..];
    if body.len() as u64 != header.body_bytes {
        return Err(format!(
            "{} bytes of data where its header announces {}",
            body.len(),
            header.body_bytes
        ));
    }
    let sum: String = digest(&SHA256, body).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if sum != header.sha256 {
        return Err(format!("its data has sha256 {sum}, its header says {}", header.sha256));
    }
    Ok(header)
}

/// Writes `bytes` to `path` so that `path` is either what it was or all of `bytes`, on disk.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Created readable by its owner only: a snapshot holds every secret of the mesh.
    let mut temp =
        tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".part").tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    // The rename itself is durable once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// `raft snapshot save FILE`.
pub(crate) async fn save(
    client: &ApiClient,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let bytes = client.get_bytes(&SNAPSHOT).await.map_err(|e| {
        if e.is_not_found() {
            CliError::NotReplicated { url: client.base_url().to_string() }
        } else {
            e.into()
        }
    })?;
    let header = check(&bytes)
        .map_err(|reason| SnapshotError::Damaged { url: client.base_url().to_string(), reason })?;
    write_atomically(path, &bytes)
        .map_err(|error| SnapshotError::Write { path: path.to_path_buf(), error })?;
    writeln!(
        out,
        "saved the snapshot at index {} (term {}): {} resources, {} bytes, sha256 {}, to {}",
        header.index,
        header.term,
        header.resources,
        bytes.len(),
        header.sha256,
        path.display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(body: &[u8]) -> Vec<u8> {
        let sum: String =
            digest(&SHA256, body).as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let header = format!(
            r#"{{"clusterId":null,"index":9,"term":2,"createdAt":"2026-12-02T00:00:00Z","takenOn":1,"resources":1,"bodyBytes":{},"sha256":"{sum}"}}"#,
            body.len()
        );
        [format!("kuma-raft-snapshot v1\n{header}\n").as_bytes(), body].concat()
    }

    #[test]
    fn a_whole_file_passes_and_a_cut_or_changed_one_does_not() {
        let good = file(br#"{"resources":[]}"#);
        let header = check(&good).unwrap();
        assert_eq!((header.index, header.term, header.resources), (9, 2, 1));
        let err = check(&good[..good.len() - 1]).unwrap_err();
        assert!(err.contains("where its header announces"), "{err}");
        let mut changed = good.clone();
        let last = changed.len() - 2;
        changed[last] = b'X';
        assert!(check(&changed).unwrap_err().contains("sha256"));
        assert!(check(b"<html>").unwrap_err().contains("no header"));
        assert!(check(b"<html>\n").unwrap_err().contains("format's name"));
    }

    #[test]
    fn the_file_is_replaced_whole_and_only_its_owner_reads_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.snap");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        let err = write_atomically(&dir.path().join("missing/backup.snap"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
