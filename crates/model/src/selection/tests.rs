use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::policy::{
    ProxyTemplateSpec, Selector, TrafficPermissionSpec, TrafficRouteSpec, TrafficTraceSpec,
};
use crate::tags::Tags;
use crate::{parse_resource, Resource, Version};

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs.iter().copied().collect()
}

fn selector(pairs: &[(&str, &str)]) -> Selector {
    Selector { match_tags: tags(pairs) }
}

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
}

fn route(sources: &[(&str, &str)], destination: &str) -> TrafficRouteSpec {
    TrafficRouteSpec {
        sources: vec![selector(sources)],
        destinations: vec![selector(&[("service", destination)])],
        ..Default::default()
    }
}

fn permission(source: &str, destination: &[(&str, &str)]) -> TrafficPermissionSpec {
    TrafficPermissionSpec {
        sources: vec![selector(&[("service", source)])],
        destinations: vec![selector(destination)],
    }
}

#[test]
fn more_matched_tags_rank_higher_and_exact_beats_wildcard_on_equal_counts() {
    let two_wild = Rank { exact: 0, wildcard: 2 };
    let one_exact = Rank { exact: 1, wildcard: 0 };
    let one_wild = Rank { exact: 0, wildcard: 1 };
    assert!(two_wild > one_exact);
    assert!(one_exact > one_wild);
    assert!(one_wild > Rank::default());
}

#[test]
fn a_selector_ranks_only_when_every_tag_matches() {
    let dp = tags(&[("service", "web"), ("version", "v1")]);
    assert_eq!(
        selector(&[("service", "*"), ("version", "v1")]).rank(&dp),
        Some(Rank { exact: 1, wildcard: 1 })
    );
    assert_eq!(selector(&[("service", "web"), ("version", "v2")]).rank(&dp), None);
    assert_eq!(selector(&[("region", "*")]).rank(&dp), None);
    assert_eq!(selector(&[]).rank(&dp), Some(Rank::default()));
}

#[test]
fn the_outbound_policy_with_the_most_specific_source_and_destination_wins() {
    let (wild, exact, versioned) = (
        route(&[("service", "*")], "*"),
        route(&[("service", "web")], "redis"),
        route(&[("service", "web"), ("version", "v1")], "redis"),
    );
    let policies = [
        Candidate { name: "versioned", creation_time: at(0), spec: &versioned },
        Candidate { name: "exact", creation_time: at(5), spec: &exact },
        Candidate { name: "wild", creation_time: at(9), spec: &wild },
    ];
    let web_v1 = tags(&[("service", "web"), ("version", "v1")]);
    let chosen = select_for_outbound(&policies, &[&web_v1], "redis").unwrap();
    assert_eq!(chosen.policy.name, "versioned");
    assert_eq!(chosen.rank, Rank { exact: 3, wildcard: 0 });
    assert_eq!(chosen.others, ["exact", "wild"]);
    assert!(chosen.reason.contains("beats \"exact\""), "{}", chosen.reason);

    let web_v2 = tags(&[("service", "web"), ("version", "v2")]);
    assert_eq!(select_for_outbound(&policies, &[&web_v2], "redis").unwrap().policy.name, "exact");
    assert_eq!(select_for_outbound(&policies, &[&web_v2], "pg").unwrap().policy.name, "wild");
    let backend = tags(&[("service", "backend")]);
    assert_eq!(select_for_outbound(&policies, &[&backend], "redis").unwrap().policy.name, "wild");
}

#[test]
fn the_best_source_over_all_inbounds_of_a_dataplane_counts() {
    let spec = route(&[("service", "admin")], "redis");
    let policies = [Candidate { name: "admin", creation_time: at(0), spec: &spec }];
    let (web, admin) = (tags(&[("service", "web")]), tags(&[("service", "admin")]));
    assert!(select_for_outbound(&policies, &[&web], "redis").is_none());
    assert_eq!(
        select_for_outbound(&policies, &[&web, &admin], "redis").unwrap().policy.name,
        "admin"
    );
}

#[test]
fn destinations_match_either_spelling_of_the_service_tag() {
    let spec = TrafficRouteSpec {
        sources: vec![selector(&[("kuma.io/service", "*")])],
        destinations: vec![selector(&[("kuma.io/service", "redis")])],
        ..Default::default()
    };
    let policies = [Candidate { name: "r", creation_time: at(0), spec: &spec }];
    let web = tags(&[("kuma.io/service", "web")]);
    assert!(select_for_outbound(&policies, &[&web], "redis").is_some());
}

#[test]
fn on_equal_rank_the_policy_created_later_wins() {
    let (a, b) = (route(&[("service", "*")], "redis"), route(&[("service", "*")], "redis"));
    let policies = [
        Candidate { name: "a-older", creation_time: at(1), spec: &a },
        Candidate { name: "b-newer", creation_time: at(2), spec: &b },
    ];
    let web = tags(&[("service", "web")]);
    let chosen = select_for_outbound(&policies, &[&web], "redis").unwrap();
    assert_eq!(chosen.policy.name, "b-newer");
    assert!(chosen.reason.contains("created later"), "{}", chosen.reason);
}

#[test]
fn on_equal_rank_and_creation_time_the_name_that_sorts_first_wins() {
    let (a, b) = (route(&[("service", "*")], "redis"), route(&[("service", "*")], "redis"));
    let policies = [
        Candidate { name: "zeta", creation_time: at(1), spec: &a },
        Candidate { name: "alpha", creation_time: at(1), spec: &b },
    ];
    let web = tags(&[("service", "web")]);
    let chosen = select_for_outbound(&policies, &[&web], "redis").unwrap();
    assert_eq!(chosen.policy.name, "alpha");
    assert!(chosen.reason.contains("name sorts first"), "{}", chosen.reason);
}

#[test]
fn only_the_most_specific_permission_applies_to_an_inbound() {
    let (all, backend_only) =
        (permission("*", &[("service", "*")]), permission("backend", &[("service", "redis")]));
    // allow-all is newer, but a more specific destination wins over recency.
    let policies = [
        Candidate { name: "backend-to-redis", creation_time: at(0), spec: &backend_only },
        Candidate { name: "allow-all", creation_time: at(9), spec: &all },
    ];
    let redis = tags(&[("service", "redis"), ("version", "v1")]);
    let chosen = select_for_inbound(&policies, &redis).unwrap();
    assert_eq!(chosen.policy.name, "backend-to-redis");
    let web = tags(&[("service", "web")]);
    assert_eq!(select_for_inbound(&policies, &web).unwrap().policy.name, "allow-all");
    assert!(select_for_inbound(&policies[..1], &web).is_none());
}

#[test]
fn a_dataplane_policy_without_selectors_matches_every_dataplane_with_rank_zero() {
    let (everyone, web) = (
        TrafficTraceSpec::default(),
        TrafficTraceSpec { selectors: vec![selector(&[("service", "web")])], ..Default::default() },
    );
    let policies = [
        Candidate { name: "everyone", creation_time: at(9), spec: &everyone },
        Candidate { name: "web", creation_time: at(0), spec: &web },
    ];
    let (web_dp, other) = (tags(&[("service", "web")]), tags(&[("service", "db")]));
    let chosen = select_for_dataplane(&policies, &[&other]).unwrap();
    assert_eq!((chosen.policy.name, chosen.rank), ("everyone", Rank::default()));
    assert_eq!(select_for_dataplane(&policies, &[&web_dp]).unwrap().policy.name, "web");
}

#[test]
fn equal_dataplane_policies_tie_break_on_creation_time() {
    let spec = ProxyTemplateSpec::default();
    let policies = [
        Candidate { name: "newer", creation_time: at(5), spec: &spec },
        Candidate { name: "older", creation_time: at(1), spec: &spec },
    ];
    let dp = tags(&[("service", "web")]);
    assert_eq!(select_for_dataplane(&policies, &[&dp]).unwrap().policy.name, "newer");
}

fn resource(yaml: &str, created: u32) -> Resource {
    let input = parse_resource(serde_yaml::from_str(yaml).unwrap()).unwrap();
    Resource {
        key: input.key,
        spec: input.spec,
        version: Version("1".into()),
        creation_time: at(created),
        modification_time: at(created),
    }
}

#[test]
fn dataplane_policies_name_the_choice_for_each_inbound_and_outbound() {
    let dataplane = resource(
        "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: :10000\n    service: redis\n",
        0,
    );
    let policies = [
        resource("type: TrafficPermission\nmesh: default\nname: allow-all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n", 1),
        resource("type: TrafficRoute\nmesh: default\nname: split\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 90\n  destination:\n    service: redis\n    version: v1\n- weight: 10\n  destination:\n    service: redis\n    version: v2\n", 2),
        resource("type: TrafficTrace\nmesh: default\nname: trace-all\nselectors:\n- match:\n    service: '*'\n", 3),
    ];
    let spec = dataplane.spec.as_dataplane().unwrap();
    let mesh = MeshPolicies::from_resources(policies.iter().chain([&dataplane]));
    let selected = DataplanePolicies::select(spec, &mesh);
    assert_eq!(selected.inbounds[0].traffic_permission.as_ref().unwrap().policy.name, "allow-all");
    assert_eq!(selected.outbounds[0].traffic_route.as_ref().unwrap().policy.name, "split");
    assert!(selected.outbounds[0].health_check.is_none());

    let json = selected.to_json("default", "backend-1", spec);
    assert_eq!(json["inbounds"][0]["interface"], "127.0.0.1:8000:80");
    assert_eq!(json["inbounds"][0]["policies"]["TrafficPermission"]["rank"]["wildcard"], 1);
    assert_eq!(json["outbounds"][0]["interface"], "127.0.0.1:10000");
    assert_eq!(json["outbounds"][0]["policies"]["TrafficRoute"]["rank"]["exact"], 2);
    assert_eq!(json["policies"]["TrafficTrace"]["name"], "trace-all");
    assert!(json["policies"].get("ProxyTemplate").is_none());
}
