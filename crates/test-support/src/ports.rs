use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports are taken below Linux's ephemeral range (32768-60999), where the kernel also picks the
/// source ports of the tests' own client connections; a port from that range could be taken by
/// a client socket between this check and the server binding it.
const FIRST: u16 = 16_000;
const LAST: u16 = 32_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port that is free on every interface right now and was not handed out before in this
/// process. Another test process may still pick the same one; `KumaCp` retries on a bind error.
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
        if TcpListener::bind(("0.0.0.0", candidate)).is_ok() {
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
