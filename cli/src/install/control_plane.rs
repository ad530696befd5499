//! `ControlPlaneManifest`: what `kumactl install control-plane` prints, in the order `kubectl
//! apply` needs it: the namespace and what lives in it before the CRDs and RBAC, the Deployment
//! after its Service, and the webhook last, once the server it calls is on its way.

use base64::Engine;
use serde_json::{json, Value};

use super::error::InstallError;
use super::tls::{TlsFiles, WebhookTls, SERVICE_NAME};
use crate::args::InstallControlPlaneArgs;

/// The name of the ServiceAccount, RBAC objects and Deployment, like the Service's.
const NAME: &str = SERVICE_NAME;
/// The Secret with the admission webhook's `tls.crt`, `tls.key` and `ca.crt`.
const TLS_SECRET: &str = "kuma-tls-cert";
const CONFIG_MAP: &str = "kuma-control-plane-config";
const WEBHOOK_CONFIGURATION: &str = "kuma-admission-mutating-webhook-configuration";
/// Where kuma-cp reads the admission server's certificate (the Secret's volume).
const CERT_DIR: &str = "/var/run/secrets/kuma.io/tls-cert";
/// Where the config map's `config.yaml` is mounted.
const CONFIG_DIR: &str = "/etc/kuma.io/kuma-control-plane";
const ADMISSION_PORT: u16 = 5443;
const DIAGNOSTICS_PORT: u16 = 5680;
/// The label that enables injection on a namespace, or on a pod.
const INJECTION_LABEL: &str = "kuma.io/sidecar-injection";
const CRUD: [&str; 7] = ["get", "list", "watch", "create", "update", "patch", "delete"];
const READ: [&str; 3] = ["get", "list", "watch"];

/// kuma-cp's configuration file; the Deployment's environment repeats the Kubernetes settings, so
/// the file only says which mode this is.
const CONFIG_YAML: &str = "\
# kuma-cp in Kubernetes mode; every other setting has its default, or comes from the KUMA_*
# environment variables of the kuma-control-plane Deployment.
environment: kubernetes
store:
  type: kubernetes
";

/// The validated flags of `kumactl install control-plane` and the webhook's TLS files.
#[derive(Debug)]
pub(crate) struct ControlPlaneManifest {
    namespace: String,
    control_plane_image: String,
    dataplane_image: String,
    dataplane_init_image: String,
    replicas: i32,
    tls: WebhookTls,
}

impl ControlPlaneManifest {
    /// Checks every flag, then reads (and checks) or generates the TLS files.
    pub(crate) fn from_args(
        args: &InstallControlPlaneArgs,
    ) -> Result<ControlPlaneManifest, InstallError> {
        check_namespace(&args.namespace)?;
        let replicas = match args.replicas.parse::<i32>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(InstallError::Replicas { value: args.replicas.clone() }),
        };
        let image = |flag, given: &Option<String>, component| match given {
            Some(image) if image.is_empty() || image.chars().any(char::is_whitespace) => {
                Err(InstallError::Image { flag, value: image.clone() })
            }
            Some(image) => Ok(image.clone()),
            None => Ok(format!("kuma-rs/{component}:{}", kuma_build_info::VERSION)),
        };
        let control_plane_image =
            image("--control-plane-image", &args.control_plane_image, "kuma-cp")?;
        let dataplane_image = image("--dataplane-image", &args.dataplane_image, "kuma-dp")?;
        let dataplane_init_image =
            image("--dataplane-init-image", &args.dataplane_init_image, "kuma-init")?;
        let tls = match (&args.tls_cert, &args.tls_key, &args.ca_cert) {
            (None, None, None) => WebhookTls::generate(&args.namespace)?,
            (Some(cert), Some(key), Some(ca)) => {
                WebhookTls::from_files(TlsFiles { cert, key, ca }, &args.namespace)?
            }
            (cert, key, ca) => {
                let missing = [("--tls-cert", cert), ("--tls-key", key), ("--ca-cert", ca)]
                    .into_iter()
                    .filter(|(_, given)| given.is_none())
                    .map(|(flag, _)| flag)
                    .collect::<Vec<_>>()
                    .join(" and ");
                return Err(InstallError::TlsFlags { missing });
            }
        };
        Ok(ControlPlaneManifest {
            namespace: args.namespace.clone(),
            control_plane_image,
            dataplane_image,
            dataplane_init_image,
            replicas,
            tls,
        })
    }

    /// Every object, in the order to apply them.
    pub(crate) fn documents(&self) -> Vec<Value> {
        let mut documents = vec![
            self.namespace(),
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": self.metadata(NAME),
            }),
            self.tls_secret(),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": self.metadata(CONFIG_MAP),
                "data": {"config.yaml": CONFIG_YAML},
            }),
        ];
        documents.extend(kuma_model::crds());
        documents.extend([
            cluster_role(),
            self.binding("ClusterRoleBinding", "ClusterRole", cluster_metadata(NAME)),
            role(self.metadata(NAME)),
            self.binding("RoleBinding", "Role", self.metadata(NAME)),
            self.service(),
            self.deployment(),
            self.webhook_configuration(),
        ]);
        documents
    }

    fn metadata(&self, name: &str) -> Value {
        json!({"name": name, "namespace": self.namespace, "labels": labels()})
    }

    fn namespace(&self) -> Value {
        let mut labels = labels();
        labels[INJECTION_LABEL] = json!("disabled");
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": labels},
        })
    }

    fn tls_secret(&self) -> Value {
        let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self.metadata(TLS_SECRET),
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": b64(&self.tls.cert_pem),
                "tls.key": b64(&self.tls.key_pem),
                "ca.crt": b64(&self.tls.ca_pem),
            },
        })
    }

    /// A binding of `role_kind` kuma-control-plane to the control plane's ServiceAccount.
    fn binding(&self, kind: &str, role_kind: &str, metadata: Value) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": NAME},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": self.namespace}],
        })
    }

    fn service(&self) -> Value {
        let port = |name: &str, port: u16| json!({"name": name, "port": port});
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": SERVICE_NAME,
                "namespace": self.namespace,
                "labels": labels(),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": DIAGNOSTICS_PORT.to_string(),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": {
                "type": "ClusterIP",
                "selector": labels(),
                "ports": [
                    port("diagnostics", DIAGNOSTICS_PORT),
                    port("http-api-server", 5681),
                    // kuma-dp fetches Envoy's bootstrap here, over TLS.
                    port("https-bootstrap-server", 5682),
                    // Envoy's ADS stream (gRPC over TLS).
                    port("xds-server", 5678),
                    // Envoy's mTLS certificates (gRPC over TLS).
                    port("sds-server", 5677),
                    port("https-api-server", 5684),
                    {"name": "https-admission-server", "port": 443, "targetPort": ADMISSION_PORT},
                ],
            },
        })
    }

    fn deployment(&self) -> Value {
        let ns = &self.namespace;
        let env = |name: &str, value: &str| json!({"name": name, "value": value});
        let container_port = |name: &str, port: u16| json!({"name": name, "containerPort": port});
        let probe = |path: &str| json!({"httpGet": {"path": path, "port": DIAGNOSTICS_PORT}, "timeoutSeconds": 10});
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(NAME),
            "spec": {
                "replicas": self.replicas,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "selector": {"matchLabels": labels()},
                "template": {
                    "metadata": {"labels": labels()},
                    "spec": {
                        "serviceAccountName": NAME,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        // Replicas on different nodes where possible: losing a node then keeps
                        // a control plane.
                        "affinity": {"podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [{
                                "weight": 100,
                                "podAffinityTerm": {
                                    "labelSelector": {"matchLabels": labels()},
                                    "topologyKey": "kubernetes.io/hostname",
                                },
                            }],
                        }},
                        "containers": [{
                            "name": "control-plane",
                            "image": self.control_plane_image,
                            "args": [
                                "run",
                                "--log-level=info",
                                format!("--config-file={CONFIG_DIR}/config.yaml"),
                            ],
                            "env": [
                                env("KUMA_ENVIRONMENT", "kubernetes"),
                                env("KUMA_STORE_TYPE", "kubernetes"),
                                env("KUMA_STORE_KUBERNETES_SYSTEM_NAMESPACE", ns),
                                env(
                                    "KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_PORT",
                                    &ADMISSION_PORT.to_string(),
                                ),
                                env("KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_CERT_DIR", CERT_DIR),
                                env(
                                    "KUMA_RUNTIME_KUBERNETES_INJECTOR_SIDECAR_CONTAINER_IMAGE",
                                    &self.dataplane_image,
                                ),
                                env(
                                    "KUMA_RUNTIME_KUBERNETES_INJECTOR_INIT_CONTAINER_IMAGE",
                                    &self.dataplane_init_image,
                                ),
                                env("KUMA_RUNTIME_KUBERNETES_CONTROL_PLANE_SERVICE_NAME", NAME),
                                env(
                                    "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST",
                                    &format!("{SERVICE_NAME}.{ns}"),
                                ),
                            ],
                            "ports": [
                                container_port("diagnostics", DIAGNOSTICS_PORT),
                                container_port("http-api", 5681),
                                container_port("bootstrap", 5682),
                                container_port("xds", 5678),
                                container_port("sds", 5677),
                                container_port("https-api", 5684),
                                container_port("admission", ADMISSION_PORT),
                            ],
                            "livenessProbe": probe("/healthy"),
                            "readinessProbe": probe("/ready"),
                            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                            "securityContext": {
                                "runAsNonRoot": true,
                                "readOnlyRootFilesystem": true,
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "tls-cert", "mountPath": CERT_DIR, "readOnly": true},
                                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": true},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }],
                        "volumes": [
                            {"name": "tls-cert", "secret": {"secretName": TLS_SECRET}},
                            {"name": "config", "configMap": {"name": CONFIG_MAP}},
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
            },
        })
    }

    /// Two webhooks, one call per pod at most: pods of namespaces labelled for injection, and
    /// pods labelled for injection in other namespaces. Both fail closed: a pod that asked for
    /// the mesh is not started outside it while kuma-cp is unreachable. kuma-cp's own pods
    /// never match (their namespace says `disabled`), so the webhook never waits on itself.
    fn webhook_configuration(&self) -> Value {
        let enabled = |operator: &str| {
            json!({"matchExpressions": [{
                "key": INJECTION_LABEL,
                "operator": operator,
                "values": ["enabled", "true"],
            }]})
        };
        let webhook = |name: &str, selectors: Value| {
            let mut webhook = json!({
                "name": name,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(&self.tls.ca_pem),
                    "service": {
                        "name": SERVICE_NAME,
                        "namespace": self.namespace,
                        "path": "/inject-sidecar",
                        "port": 443,
                    },
                },
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "rules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "operations": ["CREATE"],
                    "resources": ["pods"],
                    "scope": "Namespaced",
                }],
            });
            for (key, selector) in selectors.as_object().into_iter().flatten() {
                webhook[key] = selector.clone();
            }
            webhook
        };
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": cluster_metadata(WEBHOOK_CONFIGURATION),
            "webhooks": [
                webhook(
                    "namespace-kuma-injector.kuma.io",
                    json!({"namespaceSelector": enabled("In")}),
                ),
                webhook(
                    "pods-kuma-injector.kuma.io",
                    json!({"namespaceSelector": enabled("NotIn"), "objectSelector": enabled("In")}),
                ),
            ],
        })
    }
}

/// The labels of every object but the CRDs (which are exactly `kumactl install crds`'s).
fn labels() -> Value {
    json!({
        "app": "kuma-control-plane",
        "app.kubernetes.io/name": "kuma",
        "app.kubernetes.io/instance": "kuma",
    })
}

fn cluster_metadata(name: &str) -> Value {
    json!({"name": name, "labels": labels()})
}

/// Cluster-wide: reads the workloads that become Dataplanes, writes Kuma's resources (with their
/// status and finalizers), records events on pods, and checks service account tokens of
/// dataplanes. Secrets are not here: the Role gives them in the control plane's namespace only.
fn cluster_role() -> Value {
    let plurals: Vec<String> = kuma_model::crds()
        .iter()
        .filter_map(|crd| crd["spec"]["names"]["plural"].as_str().map(str::to_string))
        .collect();
    let kuma_resources: Vec<String> = ["", "/status", "/finalizers"]
        .iter()
        .flat_map(|sub| plurals.iter().map(move |plural| format!("{plural}{sub}")))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": cluster_metadata(NAME),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["namespaces", "pods", "services", "endpoints"],
                "verbs": READ,
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": [kuma_model::KUMA_GROUP], "resources": kuma_resources, "verbs": CRUD},
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["tokenreviews"],
                "verbs": ["create"],
            },
        ],
    })
}

/// In the control plane's namespace: its Secrets (CAs, signing keys), config maps, the Lease of
/// leader election, and events.
fn role(metadata: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata,
        "rules": [
            {"apiGroups": [""], "resources": ["secrets", "configmaps", "events"], "verbs": CRUD},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": CRUD},
        ],
    })
}

/// A namespace name is a DNS-1123 label; it is also part of the Service's DNS name.
fn check_namespace(value: &str) -> Result<(), InstallError> {
    let bad = |reason| Err(InstallError::Namespace { value: value.to_string(), reason });
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > 63 {
        return bad("it is longer than 63 characters");
    }
    if !value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return bad("it holds characters other than lowercase letters, digits and '-'");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return bad("it starts or ends with '-'");
    }
    Ok(())
}
