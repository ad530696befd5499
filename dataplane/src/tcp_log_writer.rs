//! `TcpLogWriter`: writes access log lines to one `tcp` logging backend (`HOST:PORT`).
//!
//! Sending never waits: lines go into a bounded queue and a task writes them out. While the
//! backend is down the task keeps reconnecting with a capped backoff and the queue holds the
//! newest-but-bounded backlog; when the queue is full further lines are dropped (and counted), so
//! a dead collector never holds up Envoy's log stream or kuma-dp.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Lines kept per backend while it is unreachable.
pub const DEFAULT_QUEUE: usize = 10_000;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A handle to the writer task of one backend address; cheap to clone.
#[derive(Clone, Debug)]
pub struct TcpLogWriter {
    address: Arc<str>,
    tx: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
}

impl TcpLogWriter {
    /// Starts the writer task for `address` (on the current Tokio runtime) with room for `queue`
    /// lines; the task ends when every handle is dropped.
    pub fn spawn(address: &str, queue: usize) -> TcpLogWriter {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let address: Arc<str> = Arc::from(address);
        tokio::spawn(write_lines(address.clone(), rx));
        TcpLogWriter { address, tx, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queues a line without waiting; `false` when the queue was full and the line was dropped.
    pub fn send(&self, line: String) -> bool {
        if self.tx.try_send(line).is_ok() {
            return true;
        }
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(address = %self.address, dropped, "access log backend is behind; dropping lines");
        }
        false
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_lines(address: Arc<str>, mut rx: mpsc::Receiver<String>) {
    let mut connection: Option<TcpStream> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut reported_down = false;
    while let Some(line) = rx.recv().await {
        // A line is retried until it is written; the queue behind it absorbs (or drops) the rest.
        loop {
            let stream = match connection.as_mut() {
                Some(stream) => stream,
                None => match connect(&address).await {
                    Ok(stream) => {
                        if reported_down {
                            tracing::info!(address = %address, "access log backend reachable again");
                        }
                        reported_down = false;
                        backoff = FIRST_BACKOFF;
                        connection.insert(stream)
                    }
                    Err(error) => {
                        if !reported_down {
                            tracing::warn!(address = %address, %error, "access log backend unreachable; keeping lines and reconnecting");
                            reported_down = true;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            match stream.write_all(line.as_bytes()).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(address = %address, %error, "access log backend connection lost; reconnecting");
                    connection = None;
                }
            }
        }
    }
}

async fn connect(address: &str) -> std::io::Result<TcpStream> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
    }
}
