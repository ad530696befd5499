//! The three ways Kuma picks one policy of a type (Kuma 0.5, `pkg/core/policy`): per outbound
//! service for connection policies, per inbound for TrafficPermission, per dataplane for
//! ProxyTemplate and TrafficTrace. The highest rank wins; on a tie the policy created later wins,
//! and with equal creation times the name that sorts first.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use super::rank::{best_match, Rank};
use crate::policy::{
    HealthCheckSpec, ProxyTemplateSpec, Selector, TrafficLogSpec, TrafficPermissionSpec,
    TrafficRouteSpec, TrafficTraceSpec,
};
use crate::tags::{Tags, SERVICE_TAG, SERVICE_TAG_LEGACY};

/// A policy that selects connections by `sources` and `destinations`.
pub trait ConnectionPolicy {
    fn sources(&self) -> &[Selector];
    fn destinations(&self) -> &[Selector];
}

/// A policy that selects whole dataplanes by `selectors`.
pub trait DataplanePolicy {
    fn selectors(&self) -> &[Selector];
}

macro_rules! connection_policy {
    ($($ty:ty),*) => {$(
        impl ConnectionPolicy for $ty {
            fn sources(&self) -> &[Selector] {
                &self.sources
            }
            fn destinations(&self) -> &[Selector] {
                &self.destinations
            }
        }
    )*};
}
connection_policy!(TrafficPermissionSpec, TrafficRouteSpec, TrafficLogSpec, HealthCheckSpec);

impl DataplanePolicy for TrafficTraceSpec {
    fn selectors(&self) -> &[Selector] {
        &self.selectors
    }
}

impl DataplanePolicy for ProxyTemplateSpec {
    fn selectors(&self) -> &[Selector] {
        &self.selectors
    }
}

/// A policy of the mesh, as the selection sees it.
#[derive(Debug)]
pub struct Candidate<'a, T> {
    pub name: &'a str,
    pub creation_time: DateTime<Utc>,
    pub spec: &'a T,
}

impl<T> Clone for Candidate<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Candidate<'_, T> {}

/// The policy chosen for one inbound, outbound or dataplane, and why.
#[derive(Debug)]
pub struct Selected<'a, T> {
    pub policy: Candidate<'a, T>,
    pub rank: Rank,
    /// Which selectors matched and why this policy beat the others, for humans.
    pub reason: String,
    /// Names of the other matching policies, best first.
    pub others: Vec<&'a str>,
}

impl<T> Clone for Selected<'_, T> {
    fn clone(&self) -> Self {
        Selected {
            policy: self.policy,
            rank: self.rank,
            reason: self.reason.clone(),
            others: self.others.clone(),
        }
    }
}

/// A matching candidate before the winner is known.
struct Matched<'a, T> {
    policy: Candidate<'a, T>,
    rank: Rank,
    how: String,
}

/// Better first: higher rank, then later creation, then the name that sorts first.
fn order<T>(a: &Matched<'_, T>, b: &Matched<'_, T>) -> Ordering {
    b.rank
        .cmp(&a.rank)
        .then(b.policy.creation_time.cmp(&a.policy.creation_time))
        .then(a.policy.name.cmp(b.policy.name))
}

fn pick<'a, T>(mut matched: Vec<Matched<'a, T>>) -> Option<Selected<'a, T>> {
    matched.sort_by(order);
    let mut rest = matched.into_iter();
    let best = rest.next()?;
    let others: Vec<Matched<'a, T>> = rest.collect();
    let mut reason = format!("{}; rank {}", best.how, best.rank);
    match others.first() {
        None => reason.push_str("; the only matching policy"),
        Some(second) if second.rank < best.rank => {
            reason.push_str(&format!("; beats {:?} (rank {})", second.policy.name, second.rank))
        }
        Some(second) if second.policy.creation_time < best.policy.creation_time => {
            reason.push_str(&format!("; ties {:?} on rank, created later", second.policy.name))
        }
        Some(second) => reason.push_str(&format!(
            "; ties {:?} on rank and creation time, name sorts first",
            second.policy.name
        )),
    }
    Some(Selected {
        policy: best.policy,
        rank: best.rank,
        reason,
        others: others.iter().map(|m| m.policy.name).collect(),
    })
}

/// The tags an outbound's destination is matched against: only its service, under both
/// spellings of the service tag.
pub fn service_tags(service: &str) -> Tags {
    [(SERVICE_TAG_LEGACY, service), (SERVICE_TAG, service)].into_iter().collect()
}

/// The connection policy (TrafficRoute, TrafficLog, HealthCheck) for traffic from a dataplane
/// with inbound tags `dataplane` to `service`: best source rank plus destination rank.
pub fn select_for_outbound<'a, T: ConnectionPolicy>(
    policies: &[Candidate<'a, T>],
    dataplane: &[&Tags],
    service: &str,
) -> Option<Selected<'a, T>> {
    let destination = service_tags(service);
    let matched = policies
        .iter()
        .filter_map(|p| {
            let (si, source) = best_match(p.spec.sources(), dataplane)?;
            let (di, dest) = best_match(p.spec.destinations(), &[&destination])?;
            Some(Matched {
                policy: *p,
                rank: source.combined_with(dest),
                how: format!("sources[{si}] matches this dataplane, destinations[{di}] matches service {service:?}"),
            })
        })
        .collect();
    pick(matched)
}

/// The inbound policy (TrafficPermission) of an inbound with `tags`: its destinations decide.
pub fn select_for_inbound<'a, T: ConnectionPolicy>(
    policies: &[Candidate<'a, T>],
    tags: &Tags,
) -> Option<Selected<'a, T>> {
    let matched = policies
        .iter()
        .filter_map(|p| {
            let (di, rank) = best_match(p.spec.destinations(), &[tags])?;
            Some(Matched {
                policy: *p,
                rank,
                how: format!("destinations[{di}] matches this inbound"),
            })
        })
        .collect();
    pick(matched)
}

/// The dataplane policy (ProxyTemplate, TrafficTrace) of a dataplane with inbound tags
/// `dataplane`. No selectors at all matches every dataplane with rank 0.
pub fn select_for_dataplane<'a, T: DataplanePolicy>(
    policies: &[Candidate<'a, T>],
    dataplane: &[&Tags],
) -> Option<Selected<'a, T>> {
    let matched = policies
        .iter()
        .filter_map(|p| {
            let selectors = p.spec.selectors();
            if selectors.is_empty() {
                return Some(Matched {
                    policy: *p,
                    rank: Rank::default(),
                    how: "has no selectors, so selects every dataplane".to_string(),
                });
            }
            let (i, rank) = best_match(selectors, dataplane)?;
            Some(Matched {
                policy: *p,
                rank,
                how: format!("selectors[{i}] matches this dataplane"),
            })
        })
        .collect();
    pick(matched)
}
