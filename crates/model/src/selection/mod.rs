//! Which policy applies where (Kuma 0.5's "most specific policy" rules): ranks of selector
//! matches, the choice per inbound, outbound and dataplane with its reason, and the per-dataplane
//! summary the xDS generators and the `/policies` endpoint share.

mod dataplane_policies;
mod rank;
mod select;

pub use dataplane_policies::{DataplanePolicies, InboundPolicies, MeshPolicies, OutboundPolicies};
pub use rank::{best_match, Rank};
pub use select::{
    select_for_dataplane, select_for_inbound, select_for_outbound, service_tags, Candidate,
    ConnectionPolicy, DataplanePolicy, Selected,
};

#[cfg(test)]
mod tests;
