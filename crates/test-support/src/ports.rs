use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

/// Ports are taken below Linux's ephemeral range (32768-60999), where the kernel also picks the
/// source ports of the tests' own client connections; a port from that range could be taken by
/// a client socket between this check and the server binding it. They also stay below 30001,
/// where kuma-dp picks its Envoy's admin port by default (30001-65535): a dataplane started by
/// one test must not take a port another test was handed.
const FIRST: u16 = 16_000;
const LAST: u16 = 30_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// How long a port handed out by one test process stays reserved against the others.
const CLAIM_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Reserves `port` against the other test processes on this machine (nextest runs each test in
/// its own process, and a port free when picked may be bound by another test a moment later):
/// a file per port, created exclusively; a claim older than `CLAIM_LIFETIME` is taken over.
fn claim(port: u16) -> bool {
    let dir = std::env::temp_dir().join("kuma-rs-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true; // no shared directory: fall back to the in-process check alone
    }
    let file = dir.join(port.to_string());
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&file).is_ok();
    if create() {
        return true;
    }
    let stale = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > CLAIM_LIFETIME);
    stale && std::fs::remove_file(&file).is_ok() && create()
}

/// A TCP port that is free on every interface right now and was not handed out before in this
/// process nor, for ten minutes (longer than any test), by another test process on this machine.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let seed = RandomState::new();
    for attempt in 0u64.. {
        let mut hasher = seed.build_hasher();
        hasher.write_u64(attempt);
        hasher.write_u32(std::process::id());
        let candidate = FIRST + (hasher.finish() % u64::from(LAST - FIRST)) as u16;
        if handed_out.contains(&candidate) {
            continue;
        }
        if TcpListener::bind(("0.0.0.0", candidate)).is_ok() && claim(candidate) {
            handed_out.insert(candidate);
            return candidate;
        }
        assert!(attempt < 10_000, "no free port between {FIRST} and {LAST}");
    }
    unreachable!("the loop returns or panics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            assert!((FIRST..LAST).contains(&port));
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }
}
