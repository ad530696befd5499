//! The change feed: one dedicated `LISTEN kuma_changes` connection per store, and one task that
//! reads the change log after each notification and broadcasts the events to every watcher of
//! the store, in revision order and without gaps. Notifications carry no events; the log does.
//! When the listening connection drops, the task reconnects, listens again, and reads the log from
//! the last revision it broadcast, so watchers miss nothing; if the log no longer reaches back
//! that far, they get `Compacted` (list again).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kuma_store::{Revision, StoreError, WatchEvent, WatchStream, HISTORY};
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;
use tokio_postgres::AsyncMessage;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::connect::Connector;
use crate::error::{pool_error, store_error};
use crate::rows::{col, event_from, CHANGE_COLUMNS};
use crate::store::CHANNEL;

/// The `application_name` of the listening connection (what `pg_stat_activity` shows).
pub const LISTEN_APPLICATION_NAME: &str = "kuma-cp listen";

/// Reads the log anyway this often, should a notification ever not arrive.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// What the feed broadcasts: an event, or that events up to `resumed` were pruned before the feed
/// could read them (a watcher that has not seen `resumed` must list again).
#[derive(Clone, Debug)]
pub(crate) enum FeedItem {
    /// Shared: the broadcast clones an item for every receiver.
    Event(Arc<WatchEvent>),
    Lost {
        resumed: u64,
    },
}

/// Aborts a task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The broadcast of one store's changes; its task stops when it is dropped.
#[derive(Debug)]
pub(crate) struct Feed {
    sender: broadcast::Sender<FeedItem>,
    _task: AbortOnDrop,
}

impl Feed {
    /// Starts feeding the changes after `revision`.
    pub(crate) fn start(
        pool: deadpool_postgres::Pool,
        connector: Connector,
        revision: u64,
    ) -> Feed {
        let (sender, _) = broadcast::channel(HISTORY);
        let task = tokio::spawn(run(pool, connector, sender.clone(), revision));
        Feed { sender, _task: AbortOnDrop(task.abort_handle()) }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
        self.sender.subscribe()
    }
}

async fn run(
    pool: deadpool_postgres::Pool,
    connector: Connector,
    sender: broadcast::Sender<FeedItem>,
    mut last: u64,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut caught_up = false;
        let ended = listen(&pool, &connector, &sender, &mut last, &mut caught_up).await;
        match ended {
            Ok(()) => {
                tracing::warn!("the PostgreSQL change feed's connection closed; reconnecting")
            }
            Err(e) => tracing::warn!(error = %e, "the PostgreSQL change feed failed; reconnecting"),
        }
        if caught_up {
            backoff = Duration::from_millis(50);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One listening session: connect, LISTEN, catch up, then catch up after every notification.
/// Returns when the connection ends or the log cannot be read.
async fn listen(
    pool: &deadpool_postgres::Pool,
    connector: &Connector,
    sender: &broadcast::Sender<FeedItem>,
    last: &mut u64,
    caught_up: &mut bool,
) -> Result<(), StoreError> {
    let (client, mut connection) = connector
        .connect_raw(LISTEN_APPLICATION_NAME)
        .await
        .map_err(|e| StoreError::Unavailable { reason: e.to_string() })?;
    let (notified, mut notifications) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match futures::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => {
                    if notified.send(()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %crate::error::describe(&e), "the LISTEN connection failed");
                    return;
                }
                None => return,
            }
        }
    });
    let _driver = AbortOnDrop(driver.abort_handle());
    let limit = connector.timeout();
    let statement = format!("LISTEN {CHANNEL}");
    let listening = tokio::time::timeout(limit, client.batch_execute(&statement));
    match listening.await {
        Ok(result) => result.map_err(store_error)?,
        Err(_) => return Err(StoreError::Unavailable { reason: "LISTEN did not return".into() }),
    }
    // Listening now: whatever committed while nobody listened is in the log.
    catch_up(pool, limit, sender, last).await?;
    *caught_up = true;
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.tick().await;
    loop {
        tokio::select! {
            notification = notifications.recv() => {
                if notification.is_none() {
                    return Ok(());
                }
                while notifications.try_recv().is_ok() {}
            }
            _ = poll.tick() => {}
        }
        catch_up(pool, limit, sender, last).await?;
    }
}

/// Broadcasts every logged change after `last`; when the log no longer reaches back to it,
/// broadcasts `Compacted` and goes on from the current revision.
async fn catch_up(
    pool: &deadpool_postgres::Pool,
    limit: Duration,
    sender: &broadcast::Sender<FeedItem>,
    last: &mut u64,
) -> Result<(), StoreError> {
    let read = async {
        let client = pool.get().await.map_err(pool_error)?;
        match read_log(&client, *last).await {
            Ok(events) => Ok(Ok(events)),
            Err(StoreError::Compacted { requested }) => {
                let current: i64 = client
                    .query_one("SELECT revision FROM kuma_revision", &[])
                    .await
                    .map_err(store_error)?
                    .get(0);
                Ok(Err((requested, current as u64)))
            }
            Err(e) => Err(e),
        }
    };
    let read = match tokio::time::timeout(limit, read).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(StoreError::Unavailable {
                reason: "reading the change log timed out".into(),
            })
        }
    };
    match read {
        Ok(events) => {
            for event in events {
                *last = event.revision.0;
                // No receivers is fine: nobody is watching.
                let _ = sender.send(FeedItem::Event(Arc::new(event)));
            }
        }
        Err((requested, current)) => {
            tracing::warn!(
                requested,
                current,
                "change events were pruned before the feed read them"
            );
            let _ = sender.send(FeedItem::Lost { resumed: current });
            *last = current;
        }
    }
    Ok(())
}

/// The logged changes after `from`, in order, or `Compacted` when some of them were pruned.
pub(crate) async fn read_log(
    client: &tokio_postgres::Client,
    from: u64,
) -> Result<Vec<WatchEvent>, StoreError> {
    let current: i64 = client
        .query_one("SELECT revision FROM kuma_revision", &[])
        .await
        .map_err(store_error)?
        .get(0);
    let sql =
        format!("SELECT {CHANGE_COLUMNS} FROM kuma_changes WHERE revision > $1 ORDER BY revision");
    let rows = client.query(&sql, &[&(from as i64)]).await.map_err(store_error)?;
    // Revisions have no gaps (the counter advances inside each write's transaction), so the
    // first one after `from` must be `from + 1`.
    let first = rows.first().map(|row| col::<i64>(row, 0)).transpose()?.map(|r| r as u64);
    let complete = match first {
        Some(first) => first == from + 1,
        None => from >= current as u64,
    };
    if !complete {
        return Err(StoreError::Compacted { requested: from });
    }
    rows.iter().map(event_from).collect()
}

/// The replayed `events` after `from`, then the live feed past the last of them; a lag, or a
/// stretch of the feed that was lost before this watcher saw its end, ends the stream with
/// `Compacted`.
pub(crate) fn watch_stream(
    from: u64,
    events: Vec<WatchEvent>,
    live: broadcast::Receiver<FeedItem>,
) -> WatchStream {
    let last = events.last().map_or(from, |e| e.revision.0);
    let live = BroadcastStream::new(live)
        .scan((last, false), |(last, ended), item| {
            if *ended {
                return futures::future::ready(None);
            }
            let item = match item {
                Ok(FeedItem::Event(event)) if event.revision <= Revision(*last) => None,
                Ok(FeedItem::Event(event)) => {
                    *last = event.revision.0;
                    Some(Ok(Arc::unwrap_or_clone(event)))
                }
                Ok(FeedItem::Lost { resumed }) if resumed <= *last => None,
                Ok(FeedItem::Lost { .. }) | Err(BroadcastStreamRecvError::Lagged(_)) => {
                    // The stream ends after this: the watcher must list again.
                    *ended = true;
                    Some(Err(StoreError::Compacted { requested: *last }))
                }
            };
            futures::future::ready(Some(item))
        })
        .filter_map(futures::future::ready);
    Box::pin(futures::stream::iter(events.into_iter().map(Ok)).chain(live))
}

#[cfg(test)]
mod tests {
    use kuma_model::{ResourceKey, ResourceType};
    use kuma_store::EventKind;

    use super::*;

    fn event(revision: u64) -> WatchEvent {
        let key = ResourceKey::new(ResourceType::TrafficRoute, "default", &format!("r-{revision}"));
        WatchEvent { revision: Revision(revision), kind: EventKind::Deleted, key, resource: None }
    }

    async fn collect(stream: WatchStream) -> Vec<Result<u64, StoreError>> {
        stream.map(|item| item.map(|e| e.revision.0)).collect().await
    }

    #[tokio::test]
    async fn live_events_already_replayed_are_passed_on_once() {
        let (sender, live) = broadcast::channel(16);
        for revision in [2, 3, 4] {
            sender.send(FeedItem::Event(Arc::new(event(revision)))).unwrap();
        }
        drop(sender);
        let stream = watch_stream(1, vec![event(2), event(3)], live);
        assert_eq!(collect(stream).await, [Ok(2), Ok(3), Ok(4)]);
    }

    #[tokio::test]
    async fn a_lost_stretch_ends_only_a_watcher_that_had_not_seen_past_it() {
        let (sender, behind) = broadcast::channel(16);
        let ahead = sender.subscribe();
        sender.send(FeedItem::Lost { resumed: 10 }).unwrap();
        sender.send(FeedItem::Event(Arc::new(event(11)))).unwrap();
        drop(sender);
        let behind = watch_stream(5, vec![], behind);
        assert_eq!(collect(behind).await, [Err(StoreError::Compacted { requested: 5 })]);
        let ahead = watch_stream(9, vec![event(10)], ahead);
        assert_eq!(collect(ahead).await, [Ok(10), Ok(11)]);
    }

    #[tokio::test]
    async fn a_watcher_that_lags_behind_the_broadcast_is_compacted_and_ends() {
        let (sender, live) = broadcast::channel(2);
        for revision in 1..=5 {
            sender.send(FeedItem::Event(Arc::new(event(revision)))).unwrap();
        }
        drop(sender);
        let items = collect(watch_stream(0, vec![], live)).await;
        assert_eq!(items, [Err(StoreError::Compacted { requested: 0 })]);
    }
}
