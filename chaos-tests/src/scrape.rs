//! Reading kuma-cp's own `/metrics` (diagnostics port, Prometheus text) from a benchmark: one
//! histogram's cumulative buckets before and after a measurement, their difference summed over
//! peers, and quantiles read off the buckets as Prometheus' `histogram_quantile` reads them. So a
//! benchmark can set what kuma-cp reports beside what it measured from the outside.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One labelled histogram's cumulative bucket counts, by upper bound (`+Inf` last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// `(le, cumulative count)`, sorted by `le`.
    pub bounds: Vec<(f64, u64)>,
}

impl Buckets {
    /// The buckets of `name` whose labels include `label` (for example
    /// `type_url="type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"`) in a
    /// Prometheus text exposition.
    pub fn parse(text: &str, name: &str, label: &str) -> Buckets {
        let prefix = format!("{name}_bucket{{");
        let mut bounds: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter(|rest| rest.contains(label))
            .filter_map(|rest| {
                let (labels, value) = rest.rsplit_once("} ")?;
                let le = labels.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, value.trim().parse::<f64>().ok()? as u64))
            })
            .collect();
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets { bounds }
    }

    /// What was added between `before` and `self` (same bucket bounds).
    pub fn since(&self, before: &Buckets) -> Buckets {
        let count_before =
            |le: f64| before.bounds.iter().find(|(b, _)| *b == le).map_or(0, |(_, count)| *count);
        let bounds =
            self.bounds.iter().map(|(le, c)| (*le, c.saturating_sub(count_before(*le)))).collect();
        Buckets { bounds }
    }

    /// The bucket-wise sum of several peers' histograms.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Buckets>) -> Buckets {
        let mut total = Buckets::default();
        for buckets in all {
            for (le, count) in &buckets.bounds {
                match total.bounds.iter_mut().find(|(b, _)| b == le) {
                    Some((_, sum)) => *sum += count,
                    None => total.bounds.push((*le, *count)),
                }
            }
        }
        total.bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        total
    }

    /// How many samples (the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.bounds.last().map_or(0, |(_, count)| *count)
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket as Prometheus does;
    /// `None` without samples. A quantile in the `+Inf` bucket is the highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for (le, count) in &self.bounds {
            if (*count as f64) >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = (count - below) as f64;
                let share = if inside > 0.0 { (rank - below as f64) / inside } else { 1.0 };
                return Some(lower + (le - lower) * share);
            }
            (lower, below) = (*le, *count);
        }
        Some(lower)
    }
}

/// `GET /metrics` on 127.0.0.1:`port` (HTTP/1.1, connection closed after), within `timeout`.
pub async fn metrics_text(port: u16, timeout: Duration) -> Result<String, std::io::Error> {
    let get = async {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        match raw.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
            _ => Err(std::io::Error::other(format!(
                "GET /metrics on port {port} answered {:?}",
                raw.lines().next().unwrap_or_default()
            ))),
        }
    };
    tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| std::io::Error::other(format!("GET /metrics on port {port} timed out")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDS: &str = "type_url=\"eds\"";

    fn text(counts: [u64; 4]) -> String {
        format!(
            "# TYPE xds_delivery histogram\n\
             xds_delivery_bucket{{type_url=\"eds\",le=\"10\"}} {}\n\
             xds_delivery_bucket{{type_url=\"eds\",le=\"100\"}} {}\n\
             xds_delivery_bucket{{type_url=\"eds\",le=\"1000\"}} {}\n\
             xds_delivery_bucket{{type_url=\"eds\",le=\"+Inf\"}} {}\n\
             xds_delivery_bucket{{type_url=\"cds\",le=\"10\"}} 99\n\
             xds_delivery_sum{{type_url=\"eds\"}} 1\n",
            counts[0], counts[1], counts[2], counts[3]
        )
    }

    #[test]
    fn only_the_named_histogram_with_the_label_is_read() {
        let buckets = Buckets::parse(&text([1, 2, 3, 4]), "xds_delivery", EDS);
        assert_eq!(buckets.bounds, vec![(10.0, 1), (100.0, 2), (1000.0, 3), (f64::INFINITY, 4)]);
    }

    #[test]
    fn the_difference_over_peers_gives_the_quantiles_prometheus_would() {
        let before = Buckets::parse(&text([5, 5, 5, 5]), "xds_delivery", EDS);
        let after = Buckets::parse(&text([5, 55, 105, 105]), "xds_delivery", EDS);
        let other = Buckets::parse(&text([0, 0, 0, 0]), "xds_delivery", EDS);
        let run = Buckets::sum([&after.since(&before), &other]);
        assert_eq!(run.count(), 100);
        // 50 samples in (10, 100], 50 in (100, 1000].
        assert_eq!(run.quantile(0.5), Some(100.0));
        assert_eq!(run.quantile(0.25), Some(55.0));
        assert_eq!(run.quantile(0.99), Some(100.0 + 900.0 * 49.0 / 50.0));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn a_quantile_past_the_last_finite_bound_is_that_bound() {
        let run = Buckets::parse(&text([0, 0, 1, 10]), "xds_delivery", EDS);
        assert_eq!(run.quantile(0.99), Some(1000.0));
    }
}
