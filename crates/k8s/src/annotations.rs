//! The labels and annotations Kuma reads and writes on Kubernetes objects, and the two decisions
//! both the injector and the Pod controller make from them: is a pod in the mesh, and which mesh.

use std::collections::BTreeMap;

/// `enabled`/`true` or `disabled`/`false`, on a namespace (label or annotation) or a pod.
pub const SIDECAR_INJECTION: &str = "kuma.io/sidecar-injection";
/// Set by the injector on every pod it mutated.
pub const SIDECAR_INJECTED: &str = "kuma.io/sidecar-injected";
/// The mesh of a pod, on the pod or its namespace (label or annotation); `default` otherwise.
pub const MESH: &str = "kuma.io/mesh";
/// `<port>.service.kuma.io/protocol` on a Service: the protocol of that service port.
pub const SERVICE_PROTOCOL_SUFFIX: &str = ".service.kuma.io/protocol";
/// The mesh every pod joins when nothing names one.
pub const DEFAULT_MESH: &str = "default";

type Map = BTreeMap<String, String>;

fn lookup<'a>(labels: Option<&'a Map>, annotations: Option<&'a Map>, key: &str) -> Option<&'a str> {
    labels
        .and_then(|l| l.get(key))
        .or_else(|| annotations.and_then(|a| a.get(key)))
        .map(String::as_str)
}

/// `Some(true)` for `enabled`/`true`, `Some(false)` for `disabled`/`false`, `None` otherwise.
fn switch(value: Option<&str>) -> Option<bool> {
    match value?.trim() {
        "enabled" | "true" => Some(true),
        "disabled" | "false" => Some(false),
        _ => None,
    }
}

/// Labels and annotations of one object.
#[derive(Clone, Copy, Debug, Default)]
pub struct Meta<'a> {
    pub labels: Option<&'a Map>,
    pub annotations: Option<&'a Map>,
}

impl<'a> Meta<'a> {
    pub fn of(meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Meta<'a> {
        Meta { labels: meta.labels.as_ref(), annotations: meta.annotations.as_ref() }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        lookup(self.labels, self.annotations, key)
    }
}

/// Whether a pod belongs in the mesh: the pod's own `kuma.io/sidecar-injection` decides when it
/// says enabled or disabled; otherwise its namespace's does; otherwise it stays out.
pub fn injection_enabled(pod: Meta<'_>, namespace: Meta<'_>) -> bool {
    switch(pod.get(SIDECAR_INJECTION))
        .or_else(|| switch(namespace.get(SIDECAR_INJECTION)))
        .unwrap_or(false)
}

/// Whether the injector has already mutated this pod.
pub fn already_injected(pod: Meta<'_>) -> bool {
    switch(pod.get(SIDECAR_INJECTED)) == Some(true)
}

/// The pod's mesh: `kuma.io/mesh` on the pod, else on its namespace, else `default`.
pub fn mesh_of(pod: Meta<'_>, namespace: Meta<'_>) -> String {
    pod.get(MESH)
        .or_else(|| namespace.get(MESH))
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MESH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Map {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_pod_overrides_its_namespace_and_nothing_means_out() {
        let enabled = map(&[(SIDECAR_INJECTION, "enabled")]);
        let disabled = map(&[(SIDECAR_INJECTION, "disabled")]);
        let on = |labels| Meta { labels: Some(labels), annotations: None };
        let annotated = |annotations| Meta { labels: None, annotations: Some(annotations) };
        assert!(injection_enabled(Meta::default(), on(&enabled)));
        assert!(injection_enabled(Meta::default(), annotated(&enabled)));
        assert!(!injection_enabled(on(&disabled), on(&enabled)));
        assert!(injection_enabled(annotated(&enabled), Meta::default()));
        assert!(!injection_enabled(Meta::default(), Meta::default()));
        let bogus = map(&[(SIDECAR_INJECTION, "maybe")]);
        assert!(injection_enabled(on(&bogus), on(&enabled)), "an unknown value defers");
    }

    #[test]
    fn the_mesh_comes_from_the_pod_then_the_namespace_then_default() {
        let a = map(&[(MESH, "a")]);
        let b = map(&[(MESH, "b")]);
        let meta = |m| Meta { labels: None, annotations: Some(m) };
        assert_eq!(mesh_of(meta(&a), meta(&b)), "a");
        assert_eq!(mesh_of(Meta::default(), meta(&b)), "b");
        assert_eq!(mesh_of(Meta::default(), Meta::default()), "default");
    }
}
