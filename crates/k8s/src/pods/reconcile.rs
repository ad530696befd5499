//! One pod's reconcile: convert, compare with the stored Dataplane, then write or delete only
//! when something differs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Event, EventSource, Namespace, ObjectReference, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::controller::{Key, PodControllerConfig};
use super::convert::{convert, PodDataplane};
use crate::annotations::BadAnnotation;

/// The reason of the Warning Event posted on a pod whose annotation is left out.
pub const INVALID_ANNOTATION: &str = "InvalidAnnotation";

/// Why one pod's Dataplane could not be brought in line (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub(super) enum ReconcileError {
    #[error("cannot write Dataplane {namespace}/{name}")]
    Apply {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete Dataplane {namespace}/{name}")]
    Delete {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Pod {namespace}/{name}")]
    ReadPod {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// An error and its causes on one line (`a: b: c`), as `{:#}` prints an anyhow chain.
pub(super) struct DisplayChain<'a>(pub(super) &'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// What was last reported about a pod: its uid and its bad annotations.
pub(super) type Reported = (Option<String>, Vec<BadAnnotation>);

pub(super) struct Reconciler {
    pub(super) client: Client,
    pub(super) config: PodControllerConfig,
    pub(super) dp_resource: ApiResource,
    pub(super) pods: Store<Pod>,
    pub(super) services: Store<Service>,
    pub(super) namespaces: Store<Namespace>,
    pub(super) dataplanes: Store<DynamicObject>,
    /// The bad annotations last reported per pod (with its uid: a pod made anew under the same
    /// name is reported again), so each is reported once, not on every reconcile; a pod is
    /// forgotten once it has none or is gone.
    pub(super) reported: Mutex<HashMap<Key, Reported>>,
}

impl Reconciler {
    pub(super) async fn reconcile(&self, key: &Key) -> Result<(), ReconcileError> {
        let (ns, name) = key;
        let existing =
            self.dataplanes.get(&ObjectRef::new_with(name, self.dp_resource.clone()).within(ns));
        let pod = self.pods.get(&ObjectRef::new(name).within(ns));
        let desired = match &pod {
            None => {
                self.reported.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
                None
            }
            Some(pod) => {
                // A namespace always outlives its pods: missing here means its watch event is
                // still on the way, and that event reconciles the pod again.
                let Some(namespace) = self.namespaces.get(&ObjectRef::new(ns)) else {
                    debug!(namespace = %ns, pod = %name, "namespace not seen yet");
                    return Ok(());
                };
                let services = self.services.state();
                match convert(pod, services.iter().map(Arc::as_ref), &namespace) {
                    Ok(desired) => {
                        let ignored = desired.as_ref().map_or(&[][..], |d| &d.ignored[..]);
                        self.report_ignored(key, pod, ignored).await;
                        desired
                    }
                    Err(e) => {
                        // Deterministic: only a change of the pod, its Services or namespace
                        // helps, and that triggers a new reconcile. The old Dataplane stays.
                        warn!(namespace = %ns, pod = %name, error = %DisplayChain(&e), "no Dataplane for the pod");
                        return Ok(());
                    }
                }
            }
        };
        match (desired, existing) {
            (Some(desired), existing) => self.apply(desired, existing.as_deref()).await,
            (None, Some(existing)) => {
                if pod_owners(&existing).next().is_none() {
                    return Ok(()); // a user's Dataplane
                }
                if pod.is_none() && self.owner_exists(ns, &existing).await? {
                    return Ok(()); // the pod watch is behind; its event comes
                }
                self.delete(key, &existing, pod.is_some()).await
            }
            (None, None) => Ok(()),
        }
    }

    /// Reports the pod's annotations left out of its Dataplane when they differ from what was
    /// last reported: a warning line each and a Warning Event on the pod (`kubectl describe pod`
    /// shows it). An Event that cannot be posted is logged; the Dataplane is written regardless.
    async fn report_ignored(&self, key: &Key, pod: &Pod, ignored: &[BadAnnotation]) {
        {
            let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
            if ignored.is_empty() {
                reported.remove(key);
                return;
            }
            let now = (pod.metadata.uid.clone(), ignored.to_vec());
            if reported.get(key) == Some(&now) {
                return;
            }
            reported.insert(key.clone(), now);
        }
        let (ns, name) = key;
        for bad in ignored {
            warn!(namespace = %ns, pod = %name, "{bad}");
            if let Err(e) = self.post_warning(pod, &bad.to_string()).await {
                warn!(namespace = %ns, pod = %name, error = %DisplayChain(&e), "cannot post the Event about the pod's annotation");
            }
        }
    }

    /// Posts a Warning Event ([`INVALID_ANNOTATION`]) about `pod` in its namespace.
    async fn post_warning(&self, pod: &Pod, message: &str) -> Result<(), kube::Error> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..Default::default()
            },
            type_: Some("Warning".into()),
            reason: Some(INVALID_ANNOTATION.into()),
            message: Some(message.into()),
            source: Some(EventSource {
                component: Some(self.config.field_manager.clone()),
                ..Default::default()
            }),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        api.create(&PostParams::default(), &event).await.map(drop)
    }

    async fn apply(
        &self,
        desired: PodDataplane,
        existing: Option<&DynamicObject>,
    ) -> Result<(), ReconcileError> {
        let object = desired.to_object();
        if existing.is_some_and(|e| up_to_date(e, &object)) {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &desired.namespace, &self.dp_resource);
        let failed = |source| ReconcileError::Apply {
            namespace: desired.namespace.clone(),
            name: desired.name.clone(),
            source,
        };
        let params = PatchParams::apply(&self.config.field_manager).force();
        let written =
            api.patch(&desired.name, &params, &Patch::Apply(&object)).await.map_err(failed)?;
        // Apply leaves the fields another writer set that we do not (a hand-edited outbound):
        // the spec is the pod's conversion and nothing else, so those are removed.
        if let Some(extra) =
            written.data.get("spec").and_then(|spec| removals(spec, &object["spec"]))
        {
            let params = PatchParams {
                field_manager: Some(self.config.field_manager.clone()),
                ..Default::default()
            };
            let patch = serde_json::json!({ "spec": extra });
            api.patch(&desired.name, &params, &Patch::Merge(&patch)).await.map_err(failed)?;
            info!(namespace = %desired.namespace, pod = %desired.name, removed = %patch, "removed fields another writer set on the Dataplane");
        }
        let inbounds = desired.spec.networking.inbound.len();
        let address = desired.spec.networking.address.as_deref().unwrap_or_default();
        match existing {
            None => {
                info!(namespace = %desired.namespace, pod = %desired.name, mesh = %desired.mesh, %address, inbounds, "created Dataplane")
            }
            Some(_) => {
                info!(namespace = %desired.namespace, pod = %desired.name, mesh = %desired.mesh, %address, inbounds, "updated Dataplane")
            }
        }
        Ok(())
    }

    /// Whether a Pod owner of `dataplane` still exists, asked of the apiserver.
    async fn owner_exists(
        &self,
        ns: &str,
        dataplane: &DynamicObject,
    ) -> Result<bool, ReconcileError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        for owner in pod_owners(dataplane) {
            let pod = api.get_opt(&owner.name).await.map_err(|source| ReconcileError::ReadPod {
                namespace: ns.to_string(),
                name: owner.name.clone(),
                source,
            })?;
            if pod.is_some_and(|p| p.metadata.uid.as_deref() == Some(owner.uid.as_str())) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn delete(
        &self,
        (ns, name): &Key,
        existing: &DynamicObject,
        pod_exists: bool,
    ) -> Result<(), ReconcileError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &self.dp_resource);
        // Only the object seen: if it was replaced meanwhile, the new one's event decides.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: existing.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {
                let why = if pod_exists {
                    "the pod left the mesh or has no IP"
                } else {
                    "the pod is gone"
                };
                info!(namespace = %ns, pod = %name, reason = why, "deleted Dataplane");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(source) => {
                Err(ReconcileError::Delete { namespace: ns.clone(), name: name.clone(), source })
            }
        }
    }
}

/// The Pod owner references of a Dataplane.
fn pod_owners(dataplane: &DynamicObject) -> impl Iterator<Item = &OwnerReference> {
    dataplane
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "Pod" && o.api_version == "v1")
}

/// Whether the stored Dataplane already says what `desired` (our object) says: the same mesh and
/// spec, our labels and our owner reference.
fn up_to_date(existing: &DynamicObject, desired: &Value) -> bool {
    if existing.data.get("mesh") != desired.get("mesh")
        || existing.data.get("spec") != desired.get("spec")
    {
        return false;
    }
    let labels = existing.metadata.labels.as_ref();
    let labels_match = desired["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.and_then(|l| l.get(k)).map(String::as_str) == v.as_str());
    let owners: Vec<Value> = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    let owners_match = desired["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|o| owners.contains(o));
    labels_match && owners_match
}

/// The JSON merge patch that removes from `written` what `desired` does not have (objects are
/// compared key by key; anything else must be equal already, as apply wrote it). `None` when
/// nothing is extra.
fn removals(written: &Value, desired: &Value) -> Option<Value> {
    let (Value::Object(written), Value::Object(desired)) = (written, desired) else {
        return None;
    };
    let mut patch = serde_json::Map::new();
    for (key, value) in written {
        match desired.get(key) {
            None => {
                patch.insert(key.clone(), Value::Null);
            }
            Some(wanted) => {
                if let Some(inner) = removals(value, wanted) {
                    patch.insert(key.clone(), inner);
                }
            }
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(object: Value) -> DynamicObject {
        serde_json::from_value(object).unwrap()
    }

    #[test]
    fn a_dataplane_is_up_to_date_with_other_writers_labels_but_not_with_another_spec() {
        let desired = json!({
            "metadata": {"name": "a", "labels": {"kuma.io/mesh": "default"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "u", "controller": true, "blockOwnerDeletion": true}]},
            "mesh": "default", "spec": {"networking": {"address": "10.0.0.1"}},
        });
        let mut existing = desired.clone();
        existing["metadata"]["labels"]["team"] = "web".into();
        assert!(up_to_date(&stored(existing.clone()), &desired));
        existing["spec"]["networking"]["address"] = "10.0.0.2".into();
        assert!(!up_to_date(&stored(existing.clone()), &desired));
        let mut new_owner = desired.clone();
        new_owner["metadata"]["ownerReferences"][0]["uid"] = "v".into();
        assert!(!up_to_date(&stored(desired), &new_owner), "a recreated pod owns it anew");
    }

    #[test]
    fn only_fields_we_do_not_write_are_removed() {
        let desired = json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 1}]}});
        assert_eq!(removals(&desired, &desired), None);
        let written = json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 1}],
            "outbound": [{"port": 2}]}, "metrics": {}});
        assert_eq!(
            removals(&written, &desired),
            Some(json!({"networking": {"outbound": null}, "metrics": null}))
        );
    }
}
