//! `kumactl inspect dataplane NAME --policies`: per inbound, outbound and for the whole dataplane,
//! which policy of each type applies, its rank and why, from the API's `/policies` view.

use std::io::Write;

use kuma_model::ResourceType;
use serde_json::Value;

use crate::client::ApiClient;
use crate::error::CliError;
use crate::get::not_found;
use crate::table::Table;

/// Prints the policies table of dataplane `name` in `mesh`.
pub(crate) async fn inspect_dataplane_policies(
    client: &ApiClient,
    mesh: &str,
    name: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let view =
        client.get(&["meshes", mesh, "dataplanes", name, "policies"]).await.map_err(|e| {
            if e.is_not_found() {
                not_found(ResourceType::Dataplane, mesh, name)
            } else {
                e.into()
            }
        })?;
    write!(out, "{}", policies_table(&view))?;
    Ok(())
}

/// One row per (attachment, policy type) that has a policy; attachments without any show `-`.
pub(crate) fn policies_table(view: &Value) -> Table {
    let mut table = Table::new(["ATTACHMENT", "TYPE", "NAME", "RANK", "WHY"]);
    let mut rows = |attachment: String, policies: &Value| {
        let Some(policies) = policies.as_object().filter(|p| !p.is_empty()) else {
            table.push([
                attachment,
                "-".into(),
                "-".into(),
                "-".into(),
                "no policy matches".into(),
            ]);
            return;
        };
        for (kind, chosen) in policies {
            let rank = &chosen["rank"];
            table.push([
                attachment.clone(),
                kind.clone(),
                chosen["name"].as_str().unwrap_or_default().to_string(),
                format!(
                    "{} ({} exact, {} wildcard)",
                    rank["total"], rank["exact"], rank["wildcard"]
                ),
                chosen["reason"].as_str().unwrap_or_default().to_string(),
            ]);
        }
    };
    rows("dataplane".into(), &view["policies"]);
    for inbound in view["inbounds"].as_array().into_iter().flatten() {
        let interface = inbound["interface"].as_str().unwrap_or("?");
        rows(format!("inbound {interface}"), &inbound["policies"]);
    }
    for outbound in view["outbounds"].as_array().into_iter().flatten() {
        let interface = outbound["interface"].as_str().unwrap_or("?");
        let service = outbound["service"].as_str().unwrap_or("?");
        rows(format!("outbound {interface} ({service})"), &outbound["policies"]);
    }
    table
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_attachment_gets_a_row_per_chosen_policy_or_a_dash() {
        let view = json!({
            "policies": {},
            "inbounds": [{"interface": "127.0.0.1:8000:80", "policies": {"TrafficPermission": {
                "name": "allow-all", "rank": {"total": 1, "exact": 0, "wildcard": 1},
                "reason": "destinations[0] matches this inbound"}}}],
            "outbounds": [{"interface": "127.0.0.1:10000", "service": "redis", "policies": {}}],
        });
        let text = policies_table(&view).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ATTACHMENT"), "{text}");
        assert!(lines[1].starts_with("dataplane ") && lines[1].contains("no policy matches"));
        assert!(
            lines[2].contains("TrafficPermission") && lines[2].contains("1 (0 exact, 1 wildcard)")
        );
        assert!(lines[3].starts_with("outbound 127.0.0.1:10000 (redis)"), "{text}");
    }
}
