//! Percentiles of a set of durations (nearest rank, so every figure is a measured sample).

use std::time::Duration;

/// Sorted samples.
#[derive(Debug, Clone, Default)]
pub struct Percentiles {
    sorted: Vec<Duration>,
}

impl Percentiles {
    pub fn new(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort_unstable();
        Percentiles { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The smallest sample that at least `p` percent of the samples do not exceed; zero when
    /// there are none.
    pub fn at(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn min(&self) -> Duration {
        self.sorted.first().copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Percentiles {
        Percentiles::new(values.iter().map(|v| Duration::from_millis(*v)).collect())
    }

    #[test]
    fn percentiles_are_nearest_rank_samples() {
        let p = ms(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(p.at(50.0), Duration::from_millis(50));
        assert_eq!(p.at(99.0), Duration::from_millis(99));
        assert_eq!(p.at(100.0), Duration::from_millis(100));
        assert_eq!(p.max(), Duration::from_millis(100));
        assert_eq!(p.min(), Duration::from_millis(1));
    }

    #[test]
    fn a_single_sample_is_every_percentile_and_none_is_zero() {
        assert_eq!(ms(&[7]).at(1.0), Duration::from_millis(7));
        assert_eq!(ms(&[7]).at(99.0), Duration::from_millis(7));
        assert_eq!(ms(&[]).at(50.0), Duration::ZERO);
    }
}
