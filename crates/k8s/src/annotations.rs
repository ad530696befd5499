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
/// On a pod: the port its Envoy serves Prometheus metrics on, over the mesh's backend's.
pub const METRICS_PORT: &str = "prometheus.metrics.kuma.io/port";
/// On a pod: the path its Envoy serves Prometheus metrics at, over the mesh's backend's.
pub const METRICS_PATH: &str = "prometheus.metrics.kuma.io/path";

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

/// A pod annotation whose value cannot be used, and why: reported, and the pod gets its Dataplane
/// as if the annotation were not there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadAnnotation {
    pub key: &'static str,
    pub value: String,
    /// What the value has to be.
    pub wanted: &'static str,
    /// What the pod's Dataplane goes without meanwhile.
    pub left_out: &'static str,
}

impl std::fmt::Display for BadAnnotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let BadAnnotation { key, value, wanted, left_out } = self;
        write!(
            f,
            "annotation {key}: {value:?} is not {wanted}, so the Dataplane has no {left_out}; \
             fix or remove it"
        )
    }
}

const METRICS_OVERRIDE: &str = "metrics override";

/// The pod's own Prometheus metrics settings, from [`METRICS_PORT`] and [`METRICS_PATH`] (pod
/// annotations only, as Kuma reads them): the Dataplane's `metrics` override, a `prometheus`
/// backend with what the pod sets (the rest comes from the mesh's backend). `None` when neither
/// is set, or when either is bad: a half-applied override would serve metrics somewhere the pod
/// did not ask for, so a bad value drops the override and is returned to be reported.
pub fn metrics_override(pod: Meta<'_>) -> (Option<kuma_model::MetricsBackend>, Vec<BadAnnotation>) {
    let get = |key| pod.annotations.and_then(|a| a.get(key)).map(String::as_str);
    let mut bad = Vec::new();
    let port = get(METRICS_PORT).and_then(|value| {
        let port = value.trim().parse::<u32>().ok().filter(|p| (1..=65535).contains(p));
        if port.is_none() {
            bad.push(BadAnnotation {
                key: METRICS_PORT,
                value: value.into(),
                wanted: "a port (1-65535)",
                left_out: METRICS_OVERRIDE,
            });
        }
        port
    });
    let path = get(METRICS_PATH).and_then(|value| {
        let path = value.trim();
        if path.starts_with('/') {
            Some(path.to_string())
        } else {
            bad.push(BadAnnotation {
                key: METRICS_PATH,
                value: value.into(),
                wanted: "a path starting with \"/\"",
                left_out: METRICS_OVERRIDE,
            });
            None
        }
    });
    if !bad.is_empty() || (port.is_none() && path.is_none()) {
        return (None, bad);
    }
    // Through JSON: kuma-model keeps the conf's type to itself; this is the shape it parses.
    let conf = serde_json::json!({"type": "prometheus", "conf": {"port": port, "path": path}});
    let backend: kuma_model::MetricsBackend =
        serde_json::from_value(conf).expect("a prometheus backend parses");
    (Some(backend), bad)
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

    /// `(port, path)` of the override, and the reports.
    type Parsed = (Option<(Option<u32>, Option<String>)>, Vec<String>);

    fn metrics(annotations: &[(&str, &str)]) -> Parsed {
        let annotations = map(annotations);
        let pod = Meta { labels: None, annotations: Some(&annotations) };
        let (backend, bad) = metrics_override(pod);
        let backend = backend.map(|b| {
            assert_eq!(b.kind, "prometheus");
            let conf = b.conf.expect("a conf");
            (conf.port, conf.path)
        });
        (backend, bad.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_pods_metrics_port_and_path_override_the_mesh_and_either_may_be_alone() {
        let both = metrics(&[(METRICS_PORT, "1234"), (METRICS_PATH, "/stats")]);
        assert_eq!(both, (Some((Some(1234), Some("/stats".into()))), vec![]));
        let port = metrics(&[(METRICS_PORT, " 65535 ")]);
        assert_eq!(port, (Some((Some(65535), None)), vec![]));
        let path = metrics(&[(METRICS_PATH, "/m")]);
        assert_eq!(path, (Some((None, Some("/m".into()))), vec![]));
        assert_eq!(metrics(&[]), (None, vec![]));
        let labelled = map(&[(METRICS_PORT, "1234")]);
        let on_labels = Meta { labels: Some(&labelled), annotations: None };
        assert_eq!(metrics_override(on_labels), (None, vec![]), "labels are not read");
    }

    #[test]
    fn a_bad_metrics_value_drops_the_override_and_says_which_annotation_and_why() {
        for port in ["0", "65536", "http", "-1", ""] {
            let (backend, bad) = metrics(&[(METRICS_PORT, port), (METRICS_PATH, "/ok")]);
            assert_eq!(backend, None, "port {port:?}");
            assert_eq!(
                bad,
                vec![format!(
                    "annotation {METRICS_PORT}: {port:?} is not a port (1-65535), \
                     so the Dataplane has no metrics override; fix or remove it"
                )]
            );
        }
        for path in ["metrics", "", " "] {
            let (backend, bad) = metrics(&[(METRICS_PATH, path)]);
            assert_eq!(backend, None, "path {path:?}");
            assert_eq!(bad.len(), 1, "path {path:?}");
            assert!(bad[0].contains(METRICS_PATH) && bad[0].contains("starting with"), "{bad:?}");
        }
        let (backend, bad) = metrics(&[(METRICS_PORT, "x"), (METRICS_PATH, "y")]);
        assert_eq!((backend, bad.len()), (None, 2), "both are reported");
    }
}
