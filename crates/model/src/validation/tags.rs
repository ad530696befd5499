//! Tags of dataplanes and the selectors of policies.

use super::{Path, Report};
use crate::policy::Selector;
use crate::tags::{Tags, SERVICE_TAG, SERVICE_TAG_LEGACY};

const KNOWN_PROTOCOLS: &[&str] = &["http", "http2", "grpc", "tcp", "kafka"];

fn valid_tag_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))
}

pub(super) fn valid_tag_value(v: &str) -> bool {
    v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

pub(super) fn tag_charset_rules(
    report: &mut Report,
    path: &Path,
    tags: &Tags,
    allow_wildcard: bool,
) {
    for (k, v) in tags.iter() {
        let p = path.key(k);
        if !valid_tag_key(k) {
            report.add(&p, "tag name must consist of letters, digits and '.', '-', '_', ':', '/'");
        }
        if v.is_empty() {
            report.add(&p, "tag value cannot be empty");
        } else if !(valid_tag_value(v) || (allow_wildcard && v == "*")) {
            let also = if allow_wildcard { ", or be '*'" } else { "" };
            report.add(
                &p,
                format!("tag value must consist of letters, digits and '.', '-', '_', ':'{also}"),
            );
        }
        if (k == "protocol" || k == "kuma.io/protocol") && v != "*" && !KNOWN_PROTOCOLS.contains(&v)
        {
            report.add(
                &p,
                format!("protocol {v:?} is unknown; use one of {}", KNOWN_PROTOCOLS.join(", ")),
            );
        }
    }
    if let (Some(a), Some(b)) = (tags.get(SERVICE_TAG_LEGACY), tags.get(SERVICE_TAG)) {
        if a != b {
            report.add(
                &path.key(SERVICE_TAG),
                format!("must equal tags[\"service\"] ({a:?}) when both are set"),
            );
        }
    }
}

pub(super) fn dataplane_tags(report: &mut Report, path: &Path, tags: &Tags) {
    if tags.service().is_none() {
        report.add(&path.key(SERVICE_TAG_LEGACY), "tag has to exist");
    }
    tag_charset_rules(report, path, tags, false);
}

#[derive(Clone, Copy)]
pub(super) struct SelectorRules {
    /// An empty list is refused (ProxyTemplate allows it: no selectors selects every dataplane).
    at_least_one: bool,
    /// Each selector must carry the service tag.
    require_service: bool,
    /// The service tag is the only one allowed (selectors matched against a service name only).
    only_service: bool,
}

pub(super) const SOURCES: SelectorRules =
    SelectorRules { at_least_one: true, require_service: true, only_service: false };
pub(super) const OPTIONAL: SelectorRules =
    SelectorRules { at_least_one: false, require_service: true, only_service: false };
pub(super) const SERVICE_ONLY: SelectorRules =
    SelectorRules { at_least_one: true, require_service: true, only_service: true };

pub(super) fn selectors(
    report: &mut Report,
    path: &Path,
    selectors: &[Selector],
    rules: SelectorRules,
) {
    if rules.at_least_one && selectors.is_empty() {
        report.add(path, "must have at least one element");
    }
    for (i, selector) in selectors.iter().enumerate() {
        let p = path.index(i).field("match");
        let tags = &selector.match_tags;
        if tags.is_empty() {
            report.add(&p, "must have at least one tag");
            continue;
        }
        if rules.require_service && tags.service().is_none() {
            report.add(&p.key(SERVICE_TAG_LEGACY), "mandatory tag \"service\" is missing");
        }
        if rules.only_service {
            for (k, _) in tags.iter().filter(|(k, _)| *k != SERVICE_TAG && *k != SERVICE_TAG_LEGACY)
            {
                report.add(&p.key(k), "only the \"service\" tag is allowed here");
            }
        }
        tag_charset_rules(report, &p, tags, true);
    }
}
