//! A peer's own small filesystem: a `tmpfs` of a fixed size mounted on its Raft data directory,
//! which the disk-full fault fills with a filler file and empties again. Mounting needs root; the
//! mount is undone when the value is dropped (also while a panic unwinds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::chaos::error::ChaosError;

/// The filler file's name in the data directory (kuma-cp's RocksDB never uses it).
const FILLER: &str = "chaos-disk-filler";
/// The filler is written in chunks of this size, then in pages when a chunk no longer fits.
const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

/// A mounted tmpfs of `bytes` on `dir`.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
    bytes: u64,
}

impl SmallDisk {
    /// Creates `dir` and mounts a tmpfs of `bytes` on it. Refused when not root, with a line
    /// saying so (the fault is never skipped silently).
    pub fn mount(dir: &Path, bytes: u64) -> Result<SmallDisk, ChaosError> {
        if !rustix::process::geteuid().is_root() {
            return Err(ChaosError::NeedsRoot {
                what: format!("the disk-full fault mounts a tmpfs on {}", dir.display()),
                instead: "--disk-fulls 0",
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| ChaosError::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        let size = format!("size={bytes},mode=0700");
        run(Command::new("mount").args(["-t", "tmpfs", "-o", &size, "kuma-chaos"]).arg(dir))?;
        Ok(SmallDisk { dir: dir.to_path_buf(), bytes })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The filesystem's size.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes still free on the filesystem.
    pub fn free(&self) -> Result<u64, ChaosError> {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.dir)
            .output()
            .map_err(|source| ChaosError::Io { what: "run df".into(), source })?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).and_then(|l| l.trim().parse().ok()).ok_or_else(|| {
            ChaosError::Invalid(format!("df said {text:?} about {}", self.dir.display()))
        })
    }

    /// Writes the filler until the filesystem has no page left; returns the filler's size.
    pub fn fill(&self) -> Result<u64, ChaosError> {
        let path = self.dir.join(FILLER);
        let io = |source| ChaosError::Io { what: format!("write {}", path.display()), source };
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        let zeros = vec![0u8; CHUNK];
        let mut written = 0u64;
        // Bounded by the filesystem's size: every round writes at least a page or stops.
        for chunk in [CHUNK, PAGE] {
            loop {
                match file.write(&zeros[..chunk]) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => return Err(io(e)),
                }
            }
        }
        Ok(written)
    }

    /// Deletes the filler; nothing happens when there is none.
    pub fn unfill(&self) -> Result<(), ChaosError> {
        let path = self.dir.join(FILLER);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ChaosError::Io { what: format!("delete {}", path.display()), source: e })
            }
            _ => Ok(()),
        }
    }

    /// Deletes everything on the filesystem (a wiped data directory); the mount stays.
    pub fn wipe(&self) -> Result<(), ChaosError> {
        wipe_contents(&self.dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // A peer killed a moment ago may still hold a file open: then detach it lazily.
        if run(Command::new("umount").arg(&self.dir)).is_err() {
            let _ = run(Command::new("umount").arg("-l").arg(&self.dir));
        }
    }
}

/// Deletes everything inside `dir`, keeping `dir` itself (which may be a mount point).
pub fn wipe_contents(dir: &Path) -> Result<(), ChaosError> {
    let io = |what: String| move |source| ChaosError::Io { what, source };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("list {}", dir.display()))(e)),
    };
    for entry in entries {
        let path = entry.map_err(io(format!("list {}", dir.display())))?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(format!("delete {}", path.display())))?;
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<(), ChaosError> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .map_err(|source| ChaosError::Io { what: format!("run {shown}"), source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ChaosError::Invalid(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
