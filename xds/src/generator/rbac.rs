//! TrafficPermission as Envoy's RBAC network filter, first in every inbound filter chain of a mesh
//! with mTLS on. Only the most specific permission of the inbound applies (Kuma 0.5); its sources
//! become the allowed principals, matched on the SPIFFE id of the client certificate. No matching
//! permission means no policy, which denies every connection.

use envoy_types::pb::envoy::config::rbac::v3::permission::Rule;
use envoy_types::pb::envoy::config::rbac::v3::principal::{Authenticated, Identifier};
use envoy_types::pb::envoy::config::rbac::v3::rbac::Action;
use envoy_types::pb::envoy::config::rbac::v3::{Permission, Policy, Principal, Rbac as Rules};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use kuma_ca::spiffe_id;
use kuma_model::policy::TrafficPermissionSpec;
use kuma_model::selection::Selected;

/// Name Envoy knows the filter by.
pub const RBAC: &str = "envoy.filters.network.rbac";

fn principal(mesh: &str, service: &str) -> Principal {
    let identifier = if service == "*" {
        Identifier::Any(true)
    } else {
        Identifier::Authenticated(Authenticated {
            principal_name: Some(StringMatcher {
                match_pattern: Some(MatchPattern::Exact(spiffe_id(mesh, service))),
                ..Default::default()
            }),
        })
    };
    Principal { identifier: Some(identifier) }
}

/// The RBAC filter of an inbound whose chosen permission is `permission` (none: deny all).
pub fn rbac_filter(
    mesh: &str,
    stat_prefix: &str,
    permission: Option<&Selected<'_, TrafficPermissionSpec>>,
) -> Any {
    let mut rules = Rules { action: Action::Allow as i32, ..Default::default() };
    if let Some(selected) = permission {
        let mut principals: Vec<Principal> = selected
            .policy
            .spec
            .sources
            .iter()
            .filter_map(|s| s.match_tags.service())
            .map(|service| principal(mesh, service))
            .collect();
        principals.dedup();
        rules.policies.insert(
            selected.policy.name.to_string(),
            Policy {
                permissions: vec![Permission { rule: Some(Rule::Any(true)) }],
                principals,
                ..Default::default()
            },
        );
    }
    pack_any(Rbac {
        rules: Some(rules),
        stat_prefix: format!("{stat_prefix}."),
        ..Default::default()
    })
}
