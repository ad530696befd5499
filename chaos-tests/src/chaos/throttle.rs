//! Slow fsyncs on one peer without touching kuma-cp: the peer's process is moved into a
//! block-I/O cgroup of its own that caps its write operations per second on the disk under its
//! data directory. An fsync (RocksDB syncs its log on every Raft append) then waits for several
//! capped writes. cgroup v1's `blkio.throttle.write_iops_device` and cgroup v2's `io.max` both
//! work; a directory on a filesystem without a block device (tmpfs) cannot be slowed this way.
//!
//! Measured on the 2-core VM (cgroup v1 blkio, ext4 on virtio, mq-deadline): `dd bs=4k
//! oflag=dsync` in a cgroup capped at 20 writes/s takes 150 ms per synced write (0.2 ms without
//! the cap); write+fsync of 4 KiB appended to a file, 200 ms median.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::chaos::error::ChaosError;

const V1_ROOT: &str = "/sys/fs/cgroup/blkio";
const V2_ROOT: &str = "/sys/fs/cgroup";
/// Synced writes of the latency probe.
const PROBE_WRITES: u32 = 5;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Which cgroup interface caps block I/O here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    V1,
    V2,
}

/// A disk that can be slowed for chosen processes: the cgroup controller and the block device
/// under a directory.
#[derive(Debug, Clone)]
pub struct SlowDisk {
    controller: Controller,
    /// `major:minor` of the whole disk.
    device: String,
    /// A directory on that disk for the latency probe.
    dir: PathBuf,
}

impl SlowDisk {
    /// Finds the controller and the disk under `dir`, or says why this machine cannot do it.
    pub fn under(dir: &Path) -> Result<SlowDisk, ChaosError> {
        if !rustix::process::geteuid().is_root() {
            return Err(ChaosError::NeedsRoot {
                what: "the slow-fsync fault writes cgroup limits".to_string(),
                instead: "--slow-fsyncs 0",
            });
        }
        let controller = if Path::new(V1_ROOT).join("blkio.throttle.write_iops_device").exists() {
            Controller::V1
        } else if std::fs::read_to_string(Path::new(V2_ROOT).join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "io"))
        {
            Controller::V2
        } else {
            return Err(ChaosError::Invalid(format!(
                "the slow-fsync fault needs a block-I/O cgroup controller: neither {V1_ROOT} \
                 (cgroup v1) nor `io` in {V2_ROOT}/cgroup.controllers (cgroup v2) is there; \
                 pass --slow-fsyncs 0"
            )));
        };
        let device = whole_disk(dir)?;
        Ok(SlowDisk { controller, device, dir: dir.to_path_buf() })
    }

    /// `major:minor` of the disk.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Caps the writes of process `pid` at `iops` per second until the returned guard is
    /// dropped.
    pub fn slow(&self, pid: u32, iops: u32) -> Result<Throttle, ChaosError> {
        let home = home_cgroup(self.controller, pid)?;
        let cgroup = self.make_cgroup(iops)?;
        let throttle = Throttle { cgroup, home, pid };
        write(&throttle.cgroup.join("cgroup.procs"), &pid.to_string())?;
        Ok(throttle)
    }

    /// The time of one synced 4 KiB write (`dd oflag=dsync`, the median of a few) by a process
    /// capped at `iops`, on the same disk.
    pub fn measure_synced_write(&self, iops: u32) -> Result<Duration, ChaosError> {
        let cgroup = self.make_cgroup(iops)?;
        let guard = Throttle { cgroup, home: PathBuf::new(), pid: 0 };
        let file = self.dir.join(format!("chaos-fsync-probe-{}", std::process::id()));
        let script = format!(
            "echo $$ > '{}' && exec dd if=/dev/zero of='{}' bs=4096 count={PROBE_WRITES} \
             oflag=dsync 2>/dev/null",
            guard.cgroup.join("cgroup.procs").display(),
            file.display()
        );
        let started = Instant::now();
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .map_err(|source| ChaosError::Io { what: "run dd".into(), source })?;
        let took = started.elapsed();
        let _ = std::fs::remove_file(&file);
        drop(guard);
        if !out.status.success() {
            return Err(ChaosError::Invalid(format!(
                "the fsync probe failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(took / PROBE_WRITES)
    }

    fn make_cgroup(&self, iops: u32) -> Result<PathBuf, ChaosError> {
        let name =
            format!("kuma-chaos-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let (cgroup, file, limit) = match self.controller {
            Controller::V1 => (
                Path::new(V1_ROOT).join(name),
                "blkio.throttle.write_iops_device",
                format!("{} {iops}", self.device),
            ),
            Controller::V2 => {
                write(&Path::new(V2_ROOT).join("cgroup.subtree_control"), "+io")?;
                (Path::new(V2_ROOT).join(name), "io.max", format!("{} wiops={iops}", self.device))
            }
        };
        std::fs::create_dir(&cgroup).map_err(|source| ChaosError::Io {
            what: format!("create the cgroup {}", cgroup.display()),
            source,
        })?;
        if let Err(e) = write(&cgroup.join(file), &limit) {
            let _ = std::fs::remove_dir(&cgroup);
            return Err(e);
        }
        Ok(cgroup)
    }
}

/// A process in a capped cgroup. Dropping it moves the process back to where it was and
/// removes the cgroup.
#[derive(Debug)]
pub struct Throttle {
    cgroup: PathBuf,
    /// The `cgroup.procs` the process came from.
    home: PathBuf,
    pid: u32,
}

impl Drop for Throttle {
    fn drop(&mut self) {
        if self.pid != 0 {
            // Fails when the process is gone, which empties the cgroup just as well.
            let _ = std::fs::write(&self.home, self.pid.to_string());
        }
        // A process that just exited may take a moment to leave its cgroup.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.cgroup).is_ok() || !self.cgroup.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `major:minor` of the whole disk holding `dir` (a partition's parent).
fn whole_disk(dir: &Path) -> Result<String, ChaosError> {
    let dev = std::fs::metadata(dir)
        .map_err(|source| ChaosError::Io { what: format!("stat {}", dir.display()), source })?
        .dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if !sys.exists() {
        return Err(ChaosError::Invalid(format!(
            "the slow-fsync fault needs the data directories on a block device, but {} is on \
             device {major}:{minor}, which is none (a tmpfs?): pass --dir on a disk",
            dir.display()
        )));
    }
    let sys = std::fs::canonicalize(&sys)
        .map_err(|source| ChaosError::Io { what: format!("resolve {}", sys.display()), source })?;
    let disk = if sys.join("partition").exists() { sys.join("../dev") } else { sys.join("dev") };
    let device = std::fs::read_to_string(&disk)
        .map_err(|source| ChaosError::Io { what: format!("read {}", disk.display()), source })?;
    Ok(device.trim().to_string())
}

/// The `cgroup.procs` of the cgroup `pid` is in now.
fn home_cgroup(controller: Controller, pid: u32) -> Result<PathBuf, ChaosError> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file)
        .map_err(|source| ChaosError::Io { what: format!("read {file}"), source })?;
    let path = text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let ours = match controller {
            Controller::V1 => controllers.split(',').any(|c| c == "blkio"),
            Controller::V2 => controllers.is_empty(),
        };
        ours.then(|| path.trim_start_matches('/').to_string())
    });
    let path = path.ok_or_else(|| ChaosError::Invalid(format!("no block-I/O cgroup in {file}")))?;
    let root = match controller {
        Controller::V1 => V1_ROOT,
        Controller::V2 => V2_ROOT,
    };
    Ok(Path::new(root).join(path).join("cgroup.procs"))
}

fn write(path: &Path, text: &str) -> Result<(), ChaosError> {
    std::fs::write(path, text).map_err(|source| ChaosError::Io {
        what: format!("write {text:?} to {}", path.display()),
        source,
    })
}
