//! Raft on threads of its own. A peer serving thousands of xDS streams keeps its tokio workers
//! busy for hundreds of milliseconds after a change (every stream is woken at once); heartbeats,
//! votes and log appends queued behind that work arrive late, and a leader that hears no
//! majority within an election timeout steps down. On their own runtime the Raft tasks wait only
//! for the operating system's scheduler, which shares the cores between the two runtimes' threads.

use std::future::Future;
use std::sync::Arc;

use kuma_raft::{RaftConfig, RaftNode, RaftStartError};
use tokio::net::TcpListener;

/// Threads of the Raft runtime: one for openraft's core and the peer RPC, one so that applying a
/// large batch of entries never holds up a heartbeat.
const RAFT_THREADS: usize = 2;

/// The runtime the Raft node runs on; stopped (without waiting) when dropped, so an error on the
/// way out of the control plane never blocks on it.
pub struct RaftRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl RaftRuntime {
    pub fn new() -> Result<RaftRuntime, RaftStartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RAFT_THREADS)
            .thread_name("raft")
            .enable_all()
            .build()
            .map_err(|e| RaftStartError::Raft(format!("could not start Raft's threads: {e}")))?;
        Ok(RaftRuntime { runtime: Some(runtime) })
    }

    /// Starts the node on this runtime: openraft, the peer RPC server on `listener` and every
    /// background task of the node are spawned there.
    pub async fn start(
        &self,
        config: RaftConfig,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<RaftNode>, RaftStartError> {
        let runtime = self.runtime.as_ref().expect("the runtime lives until dropped");
        // A socket belongs to the runtime that registered it: the listener moves over as a
        // plain socket and is registered again on the Raft runtime.
        let listener = listener
            .into_std()
            .map_err(|e| RaftStartError::Raft(format!("peer RPC listener: {e}")))?;
        let started = runtime.spawn(async move {
            let listener = TcpListener::from_std(listener)
                .map_err(|e| RaftStartError::Raft(format!("peer RPC listener: {e}")))?;
            RaftNode::start(config, listener, shutdown).await
        });
        started.await.map_err(|e| RaftStartError::Raft(format!("the Raft start failed: {e}")))?
    }
}

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
