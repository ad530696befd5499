//! The xDS and SDS servers on threads of their own. A change that reaches thousands of
//! dataplanes wakes every one of their streams at once, and on a shared runtime the Raft tasks
//! (heartbeats, votes, appends) and the API queue behind that work: with 3,334 streams per peer a
//! leader went unheard for longer than an election timeout and stepped down at every change. On
//! their own runtime the streams compete for the cores through the kernel's scheduler, which
//! wakes a Raft or API task within a scheduling slice. Raft and the API stay on the main runtime
//! together: a write hands over between them on every request, which within one runtime costs no
//! thread wake-up.

use std::future::Future;
use std::net::TcpListener as StdListener;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Worker threads of the xDS runtime; the kernel shares the cores between them and the main
/// runtime's.
const XDS_THREADS: usize = 2;

/// A runtime of its own; stopped (without waiting) when dropped, so leaving the control plane on
/// an error never blocks on it.
pub struct XdsRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl XdsRuntime {
    pub fn new() -> std::io::Result<XdsRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(XDS_THREADS)
            .thread_name("xds")
            .enable_all()
            .build()?;
        Ok(XdsRuntime { runtime: Some(runtime) })
    }

    /// Runs `serve` on this runtime with `listeners` registered there: a socket belongs to the
    /// runtime that registered it, so each moves over as a plain socket.
    pub fn serve<const N: usize, F, Fut, T>(
        &self,
        listeners: [TcpListener; N],
        serve: F,
    ) -> std::io::Result<JoinHandle<std::io::Result<T>>>
    where
        F: FnOnce([TcpListener; N]) -> Fut + Send + 'static,
        Fut: Future<Output = std::io::Result<T>> + Send,
        T: Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("the runtime lives until dropped");
        let plain: Vec<StdListener> =
            listeners.into_iter().map(TcpListener::into_std).collect::<Result<_, _>>()?;
        Ok(runtime.spawn(async move {
            let registered: Vec<TcpListener> =
                plain.into_iter().map(TcpListener::from_std).collect::<Result<_, _>>()?;
            let registered: [TcpListener; N] =
                registered.try_into().unwrap_or_else(|_| unreachable!("N listeners in, N out"));
            serve(registered).await
        }))
    }
}

impl Drop for XdsRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
