use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{free_port, http_get, try_poll_until, KumaCp, KumaCpBuilder};

/// `n` kuma-cp peers with the Raft store on 127.0.0.1, their data in one temp dir. Peer `i`
/// (0-based) has Raft node id `i + 1`.
#[derive(Debug)]
pub struct KumaCpCluster {
    pub peers: Vec<KumaCp>,
    _data: tempfile::TempDir,
}

impl KumaCpCluster {
    pub fn must_start(n: usize) -> KumaCpCluster {
        KumaCpCluster::must_start_with(n, |builder| builder)
    }

    /// Starts every peer, each built by `customize` on top of the cluster's settings.
    pub fn must_start_with(
        n: usize,
        customize: impl Fn(KumaCpBuilder) -> KumaCpBuilder,
    ) -> KumaCpCluster {
        KumaCpCluster::must_start_prepared(n, |_, _, _| {}, customize)
    }

    /// `must_start_with`, calling `prepare(id, data_dir, peers)` for every peer before any starts,
    /// with the peer's Raft id, its (not yet created) data directory and the cluster's
    /// `KUMA_STORE_RAFT_PEERS`: e.g. to restore a snapshot into it.
    pub fn must_start_prepared(
        n: usize,
        prepare: impl Fn(u64, &Path, &str),
        customize: impl Fn(KumaCpBuilder) -> KumaCpBuilder,
    ) -> KumaCpCluster {
        let data = tempfile::tempdir().expect("a temp dir");
        // The documented step: one CA, a certificate per peer, mutual TLS between peers.
        let certs = data.path().join("certs");
        let ids = (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let out = std::process::Command::new(crate::bin_path("kuma-cp"))
            .args(["raft", "certs", "--dir", certs.to_str().expect("a UTF-8 path"), "--ids", &ids])
            .output()
            .expect("run kuma-cp raft certs");
        assert!(
            out.status.success(),
            "kuma-cp raft certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = |name: String| certs.join(name).to_str().expect("a UTF-8 path").to_string();
        let ports: Vec<[u16; 7]> = (0..n).map(|_| std::array::from_fn(|_| free_port())).collect();
        let peers_list = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{}", i + 1, p[5]))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..n {
            prepare(i as u64 + 1, &data.path().join(format!("peer-{}", i + 1)), &peers_list);
        }
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let dir = data.path().join(format!("peer-{}", i + 1));
                customize(
                    KumaCp::builder()
                        .ports(*p)
                        .env("KUMA_STORE_TYPE", "raft")
                        .env("KUMA_STORE_RAFT_NODE_ID", &(i + 1).to_string())
                        .env("KUMA_STORE_RAFT_PEERS", &peers_list)
                        .env("KUMA_STORE_RAFT_DATA_DIR", dir.to_str().expect("a UTF-8 path"))
                        .env("KUMA_STORE_RAFT_TLS_CA_FILE", &file("ca.crt".into()))
                        .env("KUMA_STORE_RAFT_TLS_CERT_FILE", &file(format!("peer-{}.crt", i + 1)))
                        .env("KUMA_STORE_RAFT_TLS_KEY_FILE", &file(format!("peer-{}.key", i + 1))),
                )
                .must_start()
            })
            .collect();
        KumaCpCluster { peers, _data: data }
    }

    /// The directory of the cluster's CA and peer certificates: `kuma-cp raft certs --dir` on it
    /// issues more with the same CA.
    pub fn certs_dir(&self) -> PathBuf {
        self._data.path().join("certs")
    }

    /// The index of the peer every running peer names as leader, if they agree.
    pub fn leader(&mut self) -> Option<usize> {
        let mut agreed = None;
        for peer in self.peers.iter_mut() {
            if !peer.is_running() {
                continue;
            }
            let mut reply = http_get(peer.api_port, "/status/raft").ok()?;
            if reply.status == 401 {
                // Loopback is not admin on this cluster: ask as the first admin, as an operator
                // on the peer's host would.
                let token = http_get(peer.api_port, "/tokens/admin").ok()?;
                let token = Some(token.body.trim()).filter(|_| token.status == 200)?;
                reply =
                    crate::http_request_as(peer.api_port, "GET", "/status/raft", None, Some(token))
                        .ok()?;
            }
            let status: serde_json::Value = serde_json::from_str(&reply.body).ok()?;
            let leader = status["leader"].as_u64()?;
            match agreed {
                None => agreed = Some(leader),
                Some(l) if l == leader => {}
                Some(_) => return None,
            }
        }
        let index = usize::try_from(agreed?).ok()?.checked_sub(1)?;
        self.peers.get_mut(index)?.is_running().then_some(index)
    }

    /// Waits until the running peers agree on a running leader; panics after `deadline`.
    pub fn must_wait_for_leader(&mut self, deadline: Duration) -> usize {
        try_poll_until(deadline, || self.leader().ok_or(()))
            .unwrap_or_else(|_| panic!("no agreed leader within {deadline:?}"))
    }
}
