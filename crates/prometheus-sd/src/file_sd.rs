//! Prometheus's `file_sd` format: a JSON list of `{targets: [address], labels: {...}}`, one group
//! per target, and how the file is replaced so Prometheus never reads half of it.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use kuma_model::mads::MonitoringAssignment;

/// Every target of `assignments` as its own group, ordered by mesh, then dataplane. Labels are
/// the assignment's and the target's (names made valid for Prometheus), then `mesh`, `service`,
/// `dataplane`, and Prometheus's `instance`, `job`, `__scheme__`, `__metrics_path__`.
pub fn target_groups(assignments: &[MonitoringAssignment]) -> Value {
    let mut groups = Vec::new();
    for assignment in assignments {
        for target in &assignment.targets {
            let mut labels = Map::new();
            for (key, value) in assignment.labels.iter().chain(&target.labels) {
                labels.insert(sanitize_label(key), json!(value));
            }
            labels.insert("mesh".into(), json!(assignment.mesh));
            labels.insert("service".into(), json!(assignment.service));
            labels.insert("dataplane".into(), json!(target.name));
            labels.insert("instance".into(), json!(target.name));
            labels.insert("job".into(), json!(assignment.service));
            labels.insert("__scheme__".into(), json!(target.scheme));
            labels.insert("__metrics_path__".into(), json!(target.metrics_path));
            let order = (assignment.mesh.clone(), target.name.clone(), target.address.clone());
            groups.push((order, json!({"targets": [target.address], "labels": labels})));
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(groups.into_iter().map(|(_, group)| group).collect())
}

/// A label name Prometheus accepts: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn sanitize_label(key: &str) -> String {
    let mut name: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Replaces `path` with `text`: written and synced to a temporary file beside it, then renamed
/// over it, so a reader sees the old file or the new one, never a part.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuma_model::mads::Target;

    fn assignment(mesh: &str, name: &str, address: &str) -> MonitoringAssignment {
        MonitoringAssignment {
            mesh: mesh.into(),
            service: "web".into(),
            targets: vec![Target {
                name: name.into(),
                scheme: "http".into(),
                address: address.into(),
                metrics_path: "/metrics".into(),
                labels: [("kuma.io/zone".to_string(), "east".to_string())].into(),
            }],
            labels: Default::default(),
        }
    }

    #[test]
    fn each_target_is_a_group_with_kumas_labels_in_a_stable_order() {
        let groups = target_groups(&[
            assignment("default", "web-2", "10.0.0.2:5670"),
            assignment("default", "web-1", "10.0.0.1:5670"),
        ]);
        assert_eq!(groups[0]["targets"], json!(["10.0.0.1:5670"]));
        let labels = &groups[0]["labels"];
        assert_eq!(labels["mesh"], "default");
        assert_eq!(labels["service"], "web");
        assert_eq!(labels["dataplane"], "web-1");
        assert_eq!(labels["kuma_io_zone"], "east");
        assert_eq!(labels["__metrics_path__"], "/metrics");
        assert_eq!(groups[1]["labels"]["dataplane"], "web-2");
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kuma.file_sd.json");
        write_atomically(&path, "[]").unwrap();
        write_atomically(&path, "[{}]").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[{}]");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
