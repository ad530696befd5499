//! xDS metrics through the `metrics` facade, under Kuma's names: `xds_streams_active` (by API),
//! `xds_requests_received` (ACK/NACK by type), `xds_responses_sent`, `xds_generation` and
//! `xds_delivery` (milliseconds, as Kuma measures them). Every handle is made once, on first use
//! (after kuma-cp installed its recorder), and indexed by type: the stream tasks record with an
//! atomic operation, never a registry lookup or a label allocation.

use std::sync::LazyLock;
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};

use crate::xds_type::XdsType;

/// Which API a stream speaks: the `api` label of `xds_streams_active`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamApi {
    /// ADS, state of the world (port 5678).
    Ads,
    /// ADS, incremental.
    DeltaAds,
    /// SDS on its own port (5677), state of the world.
    Sds,
    /// SDS on its own port, incremental.
    DeltaSds,
}

impl StreamApi {
    const ALL: [StreamApi; 4] =
        [StreamApi::Ads, StreamApi::DeltaAds, StreamApi::Sds, StreamApi::DeltaSds];

    pub(crate) fn label(self) -> &'static str {
        match self {
            StreamApi::Ads => "ads",
            StreamApi::DeltaAds => "delta_ads",
            StreamApi::Sds => "sds",
            StreamApi::DeltaSds => "delta_sds",
        }
    }
}

/// An Envoy's answer to a response: the `confirmation` label (Kuma's values).
fn confirmation(accepted: bool) -> &'static str {
    if accepted {
        "ACK"
    } else {
        "NACK"
    }
}

pub(crate) struct XdsMetrics {
    streams: [Gauge; 4],
    /// By type, then [NACK, ACK].
    requests: [[Counter; 2]; 5],
    responses: [Counter; 5],
    delivery: [Histogram; 5],
    generation: Histogram,
}

pub(crate) static XDS: LazyLock<XdsMetrics> = LazyLock::new(|| {
    let urls = XdsType::ALL.map(|kind| kind.type_url());
    XdsMetrics {
        streams: StreamApi::ALL
            .map(|api| metrics::gauge!("xds_streams_active", "api" => api.label())),
        requests: urls.clone().map(|url| {
            [false, true].map(|accepted| {
                metrics::counter!(
                    "xds_requests_received",
                    "type_url" => url.clone(),
                    "confirmation" => confirmation(accepted)
                )
            })
        }),
        responses: urls
            .clone()
            .map(|url| metrics::counter!("xds_responses_sent", "type_url" => url)),
        delivery: urls.map(|url| metrics::histogram!("xds_delivery", "type_url" => url)),
        generation: metrics::histogram!("xds_generation"),
    }
});

impl XdsMetrics {
    pub(crate) fn sent(&self, kind: XdsType) {
        self.responses[kind.index()].increment(1);
    }

    pub(crate) fn answered(&self, kind: XdsType, accepted: bool) {
        self.requests[kind.index()][usize::from(accepted)].increment(1);
    }

    /// One dataplane config generated from `started` until now.
    pub(crate) fn generated(&self, started: Instant) {
        self.generation.record(millis_since(started));
    }

    fn delivered(&self, kind: XdsType, changed_at: Instant) {
        self.delivery[kind.index()].record(millis_since(changed_at));
    }

    /// Counts a stream of `api` as connected until the returned guard is dropped.
    pub(crate) fn stream_opened(&'static self, api: StreamApi) -> StreamGauge {
        let gauge = &self.streams[api as usize];
        gauge.increment(1.0);
        StreamGauge(gauge)
    }
}

fn millis_since(at: Instant) -> f64 {
    at.elapsed().as_secs_f64() * 1000.0
}

/// One connected stream in `xds_streams_active`, however the stream ends.
#[derive(Debug)]
pub(crate) struct StreamGauge(&'static Gauge);

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The delivery time of one type on one stream: from the moment this peer saw the store change
/// that a response carries to Envoy's ACK of it. Responses a (re)connecting Envoy asked for carry
/// no change and are not timed. When a newer response goes out before the older one is answered,
/// the earliest change waits for the ACK that covers them all.
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pending: Option<Instant>,
}

impl Delivery {
    /// A response went out carrying the change seen at `changed_at` (`None`: no change, e.g.
    /// the first answer to a request).
    pub(crate) fn sent(&mut self, changed_at: Option<Instant>) {
        if let Some(at) = changed_at {
            self.pending = Some(self.pending.map_or(at, |pending| pending.min(at)));
        }
    }

    /// Envoy answered the latest response of `kind`.
    pub(crate) fn answered(&mut self, kind: XdsType, accepted: bool) {
        let pending = self.pending.take();
        XDS.answered(kind, accepted);
        if let (true, Some(at)) = (accepted, pending) {
            XDS.delivered(kind, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn api_labels_are_distinct_and_indexed_in_order() {
        let labels: std::collections::BTreeSet<_> =
            StreamApi::ALL.iter().map(|a| a.label()).collect();
        assert_eq!(labels.len(), StreamApi::ALL.len());
        for (i, api) in StreamApi::ALL.iter().enumerate() {
            assert_eq!(*api as usize, i);
        }
        assert_eq!((confirmation(true), confirmation(false)), ("ACK", "NACK"));
    }

    #[test]
    fn the_earliest_unanswered_change_is_the_one_timed_and_a_nack_drops_it() {
        let now = Instant::now();
        let mut delivery = Delivery::default();
        delivery.sent(None);
        assert_eq!(delivery.pending, None, "a response to a request carries no change");
        delivery.sent(Some(now));
        delivery.sent(Some(now + Duration::from_millis(5)));
        assert_eq!(delivery.pending, Some(now), "the earlier change waits for the later ACK");
        delivery.answered(XdsType::Cluster, false);
        assert_eq!(delivery.pending, None, "a rejected change is not delivered");
        delivery.sent(Some(now));
        delivery.answered(XdsType::Cluster, true);
        assert_eq!(delivery.pending, None);
    }
}
