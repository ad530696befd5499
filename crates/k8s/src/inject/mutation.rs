//! `inject`: whether a pod gets the sidecar, and the JSON patch that gives it one.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use serde_json::{json, Map, Value};

use super::{InjectError, InjectorConfig, Resources};
use crate::annotations::{self, Meta};

/// The injected kuma-dp container; a pod that has one is never injected again.
pub const SIDECAR_CONTAINER: &str = "kuma-sidecar";
/// The injected init container that installs the transparent-proxy redirection.
pub const INIT_CONTAINER: &str = "kuma-init";

const SIDECAR_TMP: &str = "kuma-sidecar-tmp";
const INIT_TMP: &str = "kuma-init-tmp";
/// Where Kubernetes mounts a pod's service-account token; kuma-cp checks the token with a
/// TokenReview when kuma-dp asks for its bootstrap.
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Which container `kubectl logs` and `kubectl exec` pick when none is named.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The JSON patch (RFC 6902, against the pod as the apiserver sent it) that injects the sidecar,
/// or `None` when the pod is to be left alone: it already has a sidecar or says it was injected,
/// it lives in the control plane's namespace, or neither it nor its namespace enables injection.
/// A pod whose app container runs as the sidecar's uid is refused.
pub fn inject(
    pod: &Pod,
    namespace: &Namespace,
    config: &InjectorConfig,
) -> Result<Option<Patch>, InjectError> {
    let Some(spec) = pod.spec.as_ref() else { return Ok(None) };
    let pod_meta = Meta::of(&pod.metadata);
    let ns_meta = Meta::of(&namespace.metadata);
    let has_sidecar = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == SIDECAR_CONTAINER);
    if has_sidecar || annotations::already_injected(pod_meta) {
        return Ok(None);
    }
    let namespace_name = namespace.metadata.name.as_ref().or(pod.metadata.namespace.as_ref());
    if namespace_name == Some(&config.system_namespace) {
        return Ok(None);
    }
    if !annotations::injection_enabled(pod_meta, ns_meta) {
        return Ok(None);
    }
    refuse_sidecar_uid(spec, config)?;
    let mesh = annotations::mesh_of(pod_meta, ns_meta);

    let mut ops = Vec::new();
    let mut pod_annotations = vec![
        (annotations::SIDECAR_INJECTED, "true".to_string()),
        ("kuma.io/transparent-proxying", "enabled".to_string()),
        ("kuma.io/transparent-proxying-inbound-port", config.inbound_redirect_port.to_string()),
        ("kuma.io/transparent-proxying-outbound-port", config.outbound_redirect_port.to_string()),
        ("kuma.io/sidecar-uid", config.sidecar_uid.to_string()),
        ("kuma.io/envoy-admin-port", config.admin_port.to_string()),
    ];
    // With the sidecar first, kubectl would otherwise default to it.
    let has_default =
        pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(DEFAULT_CONTAINER));
    if let [app] = spec.containers.as_slice() {
        if !has_default {
            pod_annotations.push((DEFAULT_CONTAINER, app.name.clone()));
        }
    }
    add_entries(&mut ops, "annotations", pod.metadata.annotations.as_ref(), pod_annotations);
    add_entries(
        &mut ops,
        "labels",
        pod.metadata.labels.as_ref(),
        vec![(annotations::MESH, mesh.clone())],
    );

    let volumes = [SIDECAR_TMP, INIT_TMP]
        .map(|name| json!({"name": name, "emptyDir": {"sizeLimit": "10Mi"}}));
    append(&mut ops, &["spec", "volumes"], spec.volumes.is_some(), volumes.into());
    append(
        &mut ops,
        &["spec", "initContainers"],
        spec.init_containers.is_some(),
        vec![init_container(config)],
    );
    let sidecar = sidecar_container(spec, &mesh, config);
    if spec.containers.is_empty() {
        ops.push(add(&["spec", "containers"], json!([sidecar])));
    } else {
        ops.push(add(&["spec", "containers", "0"], sidecar));
    }
    Ok(Some(Patch(ops)))
}

fn refuse_sidecar_uid(spec: &PodSpec, config: &InjectorConfig) -> Result<(), InjectError> {
    let pod_uid = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    for container in &spec.containers {
        let uid = container.security_context.as_ref().and_then(|s| s.run_as_user).or(pod_uid);
        if uid == Some(config.sidecar_uid) {
            return Err(InjectError::RunsAsSidecarUid {
                container: container.name.clone(),
                uid: config.sidecar_uid,
            });
        }
    }
    Ok(())
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(path.iter().copied()), value })
}

/// Sets `entries` in `metadata.<field>`: one op per key, or one for the whole map when the pod
/// has none (a JSON patch cannot add below a missing parent).
fn add_entries(
    ops: &mut Vec<PatchOperation>,
    field: &str,
    existing: Option<&BTreeMap<String, String>>,
    entries: Vec<(&str, String)>,
) {
    if existing.is_some() {
        for (key, value) in entries {
            ops.push(add(&["metadata", field, key], value.into()));
        }
    } else {
        let map: Map<String, Value> =
            entries.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        ops.push(add(&["metadata", field], map.into()));
    }
}

/// Appends `items` to the array at `path`, creating it when the pod has none.
fn append(ops: &mut Vec<PatchOperation>, path: &[&str], exists: bool, items: Vec<Value>) {
    if exists {
        let end = [path, &["-"]].concat();
        ops.extend(items.into_iter().map(|item| add(&end, item)));
    } else {
        ops.push(add(path, items.into()));
    }
}

fn resources(r: &Resources) -> Value {
    json!({
        "requests": {"cpu": r.requests_cpu, "memory": r.requests_memory},
        "limits": {"cpu": r.limits_cpu, "memory": r.limits_memory},
    })
}

fn init_container(config: &InjectorConfig) -> Value {
    let args = [
        "--redirect-outbound-port",
        &config.outbound_redirect_port.to_string(),
        "--redirect-inbound=true",
        "--redirect-inbound-port",
        &config.inbound_redirect_port.to_string(),
        "--kuma-dp-uid",
        &config.sidecar_uid.to_string(),
        "--exclude-inbound-ports",
        "",
        "--exclude-outbound-ports",
        "",
        "--verbose",
        "--skip-resolv-conf",
    ]
    .map(str::to_string);
    json!({
        "name": INIT_CONTAINER,
        "image": config.init_image,
        "command": ["/usr/bin/kumactl", "install", "transparent-proxy"],
        "args": args,
        // iptables takes its lock under /run by default, which is read-only here.
        "env": [{"name": "XTABLES_LOCKFILE", "value": "/tmp/xtables.lock"}],
        "resources": resources(&config.init_resources),
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            // A pod-wide runAsNonRoot would otherwise stop the one container that must be root.
            "runAsNonRoot": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
        "volumeMounts": [{"name": INIT_TMP, "mountPath": "/tmp"}],
    })
}

fn sidecar_container(spec: &PodSpec, mesh: &str, config: &InjectorConfig) -> Value {
    let field = |path: &str| json!({"fieldRef": {"apiVersion": "v1", "fieldPath": path}});
    let mut env = vec![
        json!({"name": "INSTANCE_IP", "valueFrom": field("status.podIP")}),
        json!({"name": "POD_NAME", "valueFrom": field("metadata.name")}),
        json!({"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")}),
        json!({"name": "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", "value": config.control_plane_url}),
    ];
    if !config.control_plane_ca_pem.is_empty() {
        env.push(
            json!({"name": "KUMA_CONTROL_PLANE_CA_CERT", "value": config.control_plane_ca_pem}),
        );
    }
    env.extend([
        json!({"name": "KUMA_DATAPLANE_MESH", "value": mesh}),
        // Resolved by the kubelet from the two variables above (the name may not exist yet at
        // admission: pods of a ReplicaSet are named by the apiserver after the webhooks ran).
        json!({"name": "KUMA_DATAPLANE_NAME", "value": "$(POD_NAME).$(POD_NAMESPACE)"}),
        json!({"name": "KUMA_DATAPLANE_ADMIN_PORT", "value": config.admin_port.to_string()}),
        json!({"name": "KUMA_DATAPLANE_DRAIN_TIME", "value": config.drain_time}),
        json!({"name": "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH", "value": format!("{TOKEN_DIR}/token")}),
    ]);

    let mut mounts = vec![json!({"name": SIDECAR_TMP, "mountPath": "/tmp"})];
    // The ServiceAccount admission plugin mounts the token into the containers it saw, which
    // ran before this webhook: the sidecar borrows the app's mount.
    let token_mount = spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path.trim_end_matches('/') == TOKEN_DIR);
    if let Some(token) = token_mount {
        mounts.push(json!({"name": token.name, "mountPath": TOKEN_DIR, "readOnly": true}));
    }

    let probe = |initial_delay: u32| {
        json!({
            "httpGet": {"path": "/ready", "port": config.admin_port},
            "initialDelaySeconds": initial_delay,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "successThreshold": 1,
            "failureThreshold": 12,
        })
    };
    json!({
        "name": SIDECAR_CONTAINER,
        "image": config.sidecar_image,
        "args": ["run", format!("--log-level={}", config.log_level)],
        "env": env,
        "readinessProbe": probe(1),
        "livenessProbe": probe(60),
        "resources": resources(&config.sidecar_resources),
        "securityContext": {
            "runAsUser": config.sidecar_uid,
            "runAsGroup": config.sidecar_gid,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    })
}
