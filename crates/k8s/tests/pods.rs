//! Pods become Dataplanes: the converter against golden files (`tests/testdata/convert/NN.*`,
//! `GOLDEN_UPDATE=1` rewrites the `NN.dataplane.yaml` files), and the controller against a real
//! kube-apiserver: the Dataplane follows its pod, Services and namespace, and a controller
//! started over existing state catches up.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use kuma_k8s::annotations::{METRICS_PATH, METRICS_PORT};
use kuma_k8s::pods::{self, PodDataplane};
use kuma_test_support::{golden, KubeApiServer};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(20);

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/convert")
}

/// Every document of a YAML file, typed.
fn must_read_all<T: DeserializeOwned>(path: &Path) -> Vec<T> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            T::deserialize(doc).unwrap_or_else(|e| panic!("{} is not valid: {e}", path.display()))
        })
        .collect()
}

fn must_read<T: DeserializeOwned>(path: &Path) -> T {
    let mut all = must_read_all(path);
    assert_eq!(all.len(), 1, "{} must hold one document", path.display());
    all.remove(0)
}

/// The namespace of case `nn`: its file, or a namespace with nothing on it.
fn namespace_of(nn: &str, pod: &Pod) -> Namespace {
    let path = testdata().join(format!("{nn}.namespace.yaml"));
    if path.exists() {
        return must_read(&path);
    }
    let mut namespace = Namespace::default();
    namespace.metadata.name = pod.metadata.namespace.clone();
    namespace
}

fn converted(nn: &str) -> Option<PodDataplane> {
    let pod: Pod = must_read(&testdata().join(format!("{nn}.pod.yaml")));
    let services: Vec<Service> = must_read_all(&testdata().join(format!("{nn}.services.yaml")));
    let namespace = namespace_of(nn, &pod);
    pods::convert(&pod, &services, &namespace).unwrap_or_else(|e| panic!("case {nn}: {e:?}"))
}

fn render(dataplane: Option<&PodDataplane>) -> String {
    let value = dataplane.map(PodDataplane::to_object).unwrap_or(Value::Null);
    serde_yaml::to_string(&value).expect("JSON renders as YAML")
}

fn cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(testdata())
        .expect("tests/testdata/convert exists")
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".pod.yaml").map(String::from))
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_golden_pod_becomes_its_golden_dataplane() {
    let cases = cases();
    assert!(cases.len() >= 10, "the golden cases are missing: {cases:?}");
    let reports = cases
        .iter()
        .filter_map(|nn| {
            let path = testdata().join(format!("{nn}.dataplane.yaml"));
            golden::compare(&path, &render(converted(nn).as_ref()))
        })
        .collect();
    golden::must_all_match(reports, "converted Dataplanes");
}

#[test]
fn the_golden_cases_say_what_the_seeds_and_kuma_say() {
    let inbounds = |nn: &str| -> Vec<(u32, String, String)> {
        let dp = converted(nn).unwrap_or_else(|| panic!("case {nn} has a Dataplane"));
        dp.spec
            .networking
            .inbound
            .iter()
            .map(|i| {
                let tag = |k: &str| i.tags.get(k).unwrap_or("-").to_string();
                (i.port.unwrap(), tag("kuma.io/service"), tag("kuma.io/protocol"))
            })
            .collect()
    };
    let owned = |v: &[(u32, &str, &str)]| -> Vec<(u32, String, String)> {
        v.iter().map(|(p, s, r)| (*p, s.to_string(), r.to_string())).collect()
    };
    assert_eq!(inbounds("01"), owned(&[(80, "echo-server_kuma-test_svc_80", "http")]));
    assert_eq!(
        inbounds("02"),
        owned(&[(8080, "example_demo_svc_80", "http"), (8443, "example_demo_svc_443", "tcp")])
    );
    assert_eq!(
        inbounds("04"),
        owned(&[(pods::SERVICELESS_PORT, "example-client_kuma-example_svc", "-")])
    );
    assert_eq!(converted("05").unwrap().mesh, "finance");
    assert_eq!(
        inbounds("06"),
        owned(&[(8080, "api_store_svc_8080", "http"), (8081, "web_store_svc_8081", "http2")])
    );
    for none in ["07", "08", "09"] {
        assert_eq!(converted(none), None, "case {none} has no Dataplane");
    }
    let dp = converted("01").unwrap();
    assert_eq!(dp.kuma_name(), "echo-server-7c8b9d5f4-qx2lz.kuma-test");
    assert_eq!(dp.spec.networking.address.as_deref(), Some("10.244.1.7"));
}

#[test]
fn a_mesh_name_kuma_refuses_is_an_error_naming_the_pod() {
    let mut pod: Pod = must_read(&testdata().join("01.pod.yaml"));
    pod.metadata.annotations = Some(BTreeMap::from([("kuma.io/mesh".into(), "a.b".into())]));
    let services: Vec<Service> = must_read_all(&testdata().join("01.services.yaml"));
    let namespace = namespace_of("01", &pod);
    let err = pods::convert(&pod, &services, &namespace).unwrap_err();
    assert_eq!(err.pod, "echo-server-7c8b9d5f4-qx2lz");
    assert!(err.invalid.to_string().contains("mesh"), "{}", err.invalid);
}

#[test]
fn the_pods_metrics_annotations_are_the_dataplanes_metrics_override() {
    let dp = converted("12").expect("case 12 has a Dataplane");
    let metrics = dp.spec.metrics.expect("a metrics override");
    assert_eq!(metrics.kind, "prometheus");
    let conf = metrics.conf.expect("its conf");
    assert_eq!((conf.port, conf.path.as_deref()), (Some(1234), Some("/stats")));
    assert!(dp.ignored.is_empty(), "{:?}", dp.ignored);
}

#[test]
fn a_bad_metrics_annotation_is_left_out_and_named_and_the_pod_keeps_its_dataplane() {
    let mut pod: Pod = must_read(&testdata().join("12.pod.yaml"));
    let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(METRICS_PORT.into(), "http".into());
    let services: Vec<Service> = must_read_all(&testdata().join("12.services.yaml"));
    let namespace = namespace_of("12", &pod);
    let dp = pods::convert(&pod, &services, &namespace).unwrap().expect("a Dataplane");
    assert_eq!(dp.spec.metrics, None, "no override, not half of one");
    assert_eq!(dp.spec.networking.inbound.len(), 1);
    let ignored: Vec<String> = dp.ignored.iter().map(ToString::to_string).collect();
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert!(ignored[0].contains(METRICS_PORT) && ignored[0].contains("\"http\""), "{ignored:?}");
}

// --- against a real kube-apiserver -----------------------------------------------------------

/// A kube client for the test apiserver, from the kubeconfig it writes.
async fn must_client(server: &KubeApiServer) -> Client {
    kuma_k8s::client_from_kubeconfig(server.kubeconfig())
        .await
        .expect("a client for the test apiserver")
}

/// Polls `check` until it returns `Ok`, or panics with its last error after `WITHIN`.
async fn eventually<T, Fut>(what: &str, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::from("never checked");
    let polled = tokio::time::timeout(WITHIN, async {
        loop {
            match check().await {
                Ok(value) => return value,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    polled.unwrap_or_else(|_| panic!("{what} did not hold within {WITHIN:?}; last: {last}"))
}

fn mesh_resource() -> ApiResource {
    ApiResource {
        group: "kuma.io".into(),
        version: "v1alpha1".into(),
        api_version: "kuma.io/v1alpha1".into(),
        kind: "Mesh".into(),
        plural: "meshes".into(),
    }
}

fn dataplanes(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &pods::dataplane_resource())
}

fn must_object<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a well-formed object")
}

/// Kuma's CRDs (each established), `kuma-system`, the given namespaces and the Mesh `default`.
async fn must_set_up(client: &Client, namespaces: &[Namespace]) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kuma_model::crds() {
        crds.create(&PostParams::default(), &must_object(crd)).await.expect("the CRD is created");
    }
    for crd in kuma_model::crds() {
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        eventually(&format!("{name} is established"), || async {
            let crd = crds.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(()).ok_or_else(|| "not yet".to_string())
        })
        .await;
    }
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let system = must_object(json!({"metadata": {"name": "kuma-system"}}));
    for namespace in std::iter::once(&system).chain(namespaces) {
        ns_api.create(&PostParams::default(), namespace).await.expect("the namespace is created");
    }
    let meshes: Api<DynamicObject> = Api::all_with(client.clone(), &mesh_resource());
    let mesh: DynamicObject = must_object(json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"}, "spec": {}
    }));
    // A CRD may serve a moment after it reports Established.
    eventually("the Mesh default is created", || async {
        meshes.create(&PostParams::default(), &mesh).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
}

/// Creates the Services and the Pod of golden case `nn` (as a user would: no uid, no status).
async fn must_create_case(client: &Client, nn: &str) -> Pod {
    for service in must_read_all::<Service>(&testdata().join(format!("{nn}.services.yaml"))) {
        let ns = service.metadata.namespace.clone().unwrap();
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &service).await.expect("the Service is created");
    }
    let mut pod: Pod = must_read(&testdata().join(format!("{nn}.pod.yaml")));
    pod.metadata.uid = None;
    pod.status = None;
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap());
    api.create(&PostParams::default(), &pod).await.expect("the Pod is created")
}

/// Sets the pod's IP the way a kubelet would: through the status subresource.
async fn must_set_ip(client: &Client, ns: &str, pod: &str, ip: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
    api.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("the pod's status is written");
}

/// The Dataplane as the controller wrote it: the server's bookkeeping left out.
fn as_written(dp: &DynamicObject) -> Value {
    let v = serde_json::to_value(dp).unwrap();
    let mut metadata = json!({
        "name": v["metadata"]["name"],
        "namespace": v["metadata"]["namespace"],
        "labels": v["metadata"]["labels"],
    });
    if let Some(owners) = v["metadata"].get("ownerReferences") {
        metadata["ownerReferences"] = owners.clone();
    }
    json!({
        "apiVersion": v["apiVersion"], "kind": v["kind"], "metadata": metadata,
        "mesh": v["mesh"], "spec": v["spec"],
    })
}

/// The golden Dataplane of case `nn`, owned by the pod with `uid` (the golden pods' uids are made
/// up; the apiserver picks real ones).
fn golden(nn: &str, uid: &str) -> Value {
    let mut value: Value = must_read(&testdata().join(format!("{nn}.dataplane.yaml")));
    value["metadata"]["ownerReferences"][0]["uid"] = uid.into();
    value
}

async fn must_match_golden(client: &Client, nn: &str, pod: &Pod) {
    let (ns, name) =
        (pod.metadata.namespace.as_deref().unwrap(), pod.metadata.name.as_deref().unwrap());
    let expected = golden(nn, pod.metadata.uid.as_deref().unwrap());
    let api = dataplanes(client, ns);
    eventually(&format!("Dataplane {ns}/{name} is golden {nn}"), || async {
        let dp = api.get_opt(name).await.map_err(|e| e.to_string())?.ok_or("no Dataplane yet")?;
        let actual = as_written(&dp);
        if actual == expected {
            Ok(())
        } else {
            let [e, a] = [&expected, &actual].map(|v| serde_yaml::to_string(v).unwrap());
            Err(golden::line_diff(&e, &a))
        }
    })
    .await
}

/// `(port, kuma.io/service, kuma.io/protocol)` of each inbound.
fn inbounds(dp: &DynamicObject) -> Vec<(u64, String, String)> {
    dp.data["spec"]["networking"]["inbound"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let tag = |k: &str| i["tags"][k].as_str().unwrap_or("-").to_string();
            (i["port"].as_u64().unwrap_or(0), tag("kuma.io/service"), tag("kuma.io/protocol"))
        })
        .collect()
}

/// Waits until the Dataplane `ns/name` satisfies `check` (which says what it saw otherwise).
async fn must_see(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&DynamicObject) -> Result<(), String>,
) {
    let api = dataplanes(client, ns);
    eventually(what, || async {
        let dp = api.get_opt(name).await.map_err(|e| e.to_string())?.ok_or("no Dataplane")?;
        check(&dp)
    })
    .await
}

async fn must_be_gone(client: &Client, ns: &str, name: &str) {
    let api = dataplanes(client, ns);
    eventually(&format!("Dataplane {ns}/{name} is deleted"), || async {
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(dp) => Err(format!("still there: {:?}", dp.data)),
        }
    })
    .await
}

async fn must_create_dataplane(client: &Client, ns: &str, object: Value) {
    let dp: DynamicObject = must_object(object);
    dataplanes(client, ns)
        .create(&PostParams::default(), &dp)
        .await
        .expect("the Dataplane is created");
}

fn hand_made(ns: &str) -> Value {
    json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
        "metadata": {"name": "hand-made", "namespace": ns},
        "mesh": "default",
        "spec": {"networking": {"address": "10.9.9.9", "inbound": [{"port": 1234, "tags": {"kuma.io/service": "legacy"}}]}},
    })
}

/// The controller on its own task, and how to stop it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start_controller(client: &Client) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(pods::run(client.clone(), async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn must_stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the controller stops when told")
            .expect("the controller does not panic");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_dataplane_follows_the_pod_its_services_and_its_ip() {
    let server = KubeApiServer::must_start();
    let client = must_client(&server).await;
    let test_ns: Namespace = must_read(&testdata().join("01.namespace.yaml"));
    let plain_ns: Namespace = must_read(&testdata().join("08.namespace.yaml"));
    must_set_up(&client, &[test_ns, plain_ns]).await;
    let controller = start_controller(&client);

    must_create_dataplane(&client, "kuma-test", hand_made("kuma-test")).await;
    // A pod of a namespace without injection: never a Dataplane, IP or not.
    let plain = must_create_case(&client, "08").await;
    must_set_ip(&client, "plain", plain.metadata.name.as_deref().unwrap(), "10.3.0.8").await;

    // The seeds' echo-server: no Dataplane without an IP, the golden one with it.
    let pod = must_create_case(&client, "01").await;
    let name = pod.metadata.name.clone().unwrap();
    must_set_ip(&client, "kuma-test", &name, "10.244.1.7").await;
    must_match_golden(&client, "01", &pod).await;
    let plain_dps = dataplanes(&client, "plain").list(&Default::default()).await.unwrap();
    assert!(plain_dps.items.is_empty(), "no Dataplane in a namespace without injection");

    let services: Api<Service> = Api::namespaced(client.clone(), "kuma-test");
    let port_8080 = json!({"spec": {"ports": [{"name": "http", "port": 8080, "targetPort": 80}]}});
    services
        .patch("echo-server", &PatchParams::default(), &Patch::Merge(&port_8080))
        .await
        .unwrap();
    let expected = (80, "echo-server_kuma-test_svc_8080".to_string(), "tcp".to_string());
    must_see(&client, "kuma-test", &name, "the Service's new port is the tag", |dp| {
        (inbounds(dp) == [expected.clone()]).then_some(()).ok_or(format!("{:?}", inbounds(dp)))
    })
    .await;

    let http2 = json!({"metadata": {"annotations": {"8080.service.kuma.io/protocol": "http2"}}});
    services.patch("echo-server", &PatchParams::default(), &Patch::Merge(&http2)).await.unwrap();
    must_see(&client, "kuma-test", &name, "the protocol annotation is the tag", |dp| {
        let got = inbounds(dp);
        (got.len() == 1 && got[0].2 == "http2").then_some(()).ok_or(format!("{got:?}"))
    })
    .await;

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "kuma-test");
    let label = json!({"metadata": {"labels": {"version": "v2"}}});
    pods_api.patch(&name, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    must_see(&client, "kuma-test", &name, "a new pod label is a tag", |dp| {
        let tags = &dp.data["spec"]["networking"]["inbound"][0]["tags"];
        (tags["version"] == "v2").then_some(()).ok_or(tags.to_string())
    })
    .await;

    // How long a new IP takes to reach the Dataplane: from the status write (sent, and
    // acknowledged) to the Dataplane's watch event.
    let mut changes = watcher(
        dataplanes(&client, "kuma-test"),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .applied_objects()
    .boxed();
    let (mut from_sent, mut from_acked) = (Vec::new(), Vec::new());
    for i in 0..9 {
        let ip = format!("10.244.7.{}", 10 + i);
        let sent = Instant::now();
        must_set_ip(&client, "kuma-test", &name, &ip).await;
        let acked = Instant::now();
        tokio::time::timeout(WITHIN, async {
            while let Some(dp) = changes.try_next().await.expect("the watch runs") {
                if dp.data["spec"]["networking"]["address"] == ip.as_str() {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the Dataplane did not get IP {ip}"));
        from_sent.push(sent.elapsed());
        from_acked.push(acked.elapsed());
    }
    drop(changes);
    let p50 = |mut took: Vec<Duration>| {
        took.sort();
        format!(
            "p50 {:?} (min {:?}, max {:?})",
            took[took.len() / 2],
            took[0],
            took[took.len() - 1]
        )
    };
    eprintln!(
        "pod IP change -> Dataplane updated, {} changes: from the status write sent {}; from it acknowledged {}",
        from_sent.len(),
        p50(from_sent),
        p50(from_acked)
    );

    services.delete("echo-server", &DeleteParams::default()).await.unwrap();
    let serviceless =
        (u64::from(pods::SERVICELESS_PORT), format!("{name}_kuma-test_svc"), "-".to_string());
    must_see(&client, "kuma-test", &name, "without its Service the pod is service-less", |dp| {
        (inbounds(dp) == [serviceless.clone()]).then_some(()).ok_or(format!("{:?}", inbounds(dp)))
    })
    .await;

    // No kubelet holds it: a pod without a node is deleted at once, and its Dataplane after it.
    pods_api.delete(&name, &DeleteParams::default()).await.unwrap();
    must_be_gone(&client, "kuma-test", &name).await;

    let left = dataplanes(&client, "kuma-test").list(&Default::default()).await.unwrap();
    let names: Vec<_> = left.items.iter().filter_map(|d| d.metadata.name.clone()).collect();
    assert_eq!(names, ["hand-made"], "a user's Dataplane is never touched");
    let plain_dps = dataplanes(&client, "plain").list(&Default::default()).await.unwrap();
    assert!(plain_dps.items.is_empty(), "still no Dataplane in a namespace without injection");
    controller.must_stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_late_catches_up_with_pods_and_dataplanes() {
    let server = KubeApiServer::must_start();
    let client = must_client(&server).await;
    let demo: Namespace = must_object(json!({"metadata": {"name": "demo"}}));
    must_set_up(&client, &[demo]).await;

    // Kuma's two-port example, with a stale Dataplane from an older pod state: a wrong address,
    // and an outbound someone added by hand.
    let pod = must_create_case(&client, "02").await;
    must_set_ip(&client, "demo", "example", "192.168.0.1").await;
    let uid = pod.metadata.uid.clone().unwrap();
    let owner = |name: &str, uid: &str| json!([{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    must_create_dataplane(&client, "demo", json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
        "metadata": {"name": "example", "namespace": "demo", "ownerReferences": owner("example", &uid)},
        "mesh": "default",
        "spec": {"networking": {
            "address": "192.168.0.99",
            "inbound": [{"port": 8080, "tags": {"kuma.io/service": "example_demo_svc_80"}}],
            "outbound": [{"port": 10000, "service": "redis"}],
        }},
    }))
    .await;
    // A pod that left the mesh (no injection here, no annotation) while no controller ran.
    let mut left: Pod = must_read(&testdata().join("02.pod.yaml"));
    left.metadata =
        must_object(json!({"name": "left", "namespace": "demo", "labels": {"app": "other"}}));
    let left = Api::<Pod>::namespaced(client.clone(), "demo")
        .create(&PostParams::default(), &left)
        .await
        .unwrap();
    must_set_ip(&client, "demo", "left", "192.168.0.2").await;
    let stale = |name: &str, uid: &str| {
        json!({
            "apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
            "metadata": {"name": name, "namespace": "demo", "ownerReferences": owner(name, uid)},
            "mesh": "default",
            "spec": {"networking": {"address": "192.168.0.3", "inbound": [{"port": 80, "tags": {"kuma.io/service": "x"}}]}},
        })
    };
    must_create_dataplane(&client, "demo", stale("left", left.metadata.uid.as_deref().unwrap()))
        .await;
    // The Dataplane of a pod deleted while no controller ran (and no garbage collector runs).
    must_create_dataplane(&client, "demo", stale("gone", "6f1e0c2a-0000-4000-8000-000000000000"))
        .await;
    must_create_dataplane(&client, "demo", hand_made("demo")).await;

    let controller = start_controller(&client);
    must_match_golden(&client, "02", &pod).await;
    must_be_gone(&client, "demo", "gone").await;
    must_be_gone(&client, "demo", "left").await;
    let left = dataplanes(&client, "demo").list(&Default::default()).await.unwrap();
    let mut names: Vec<_> = left.items.iter().filter_map(|d| d.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["example", "hand-made"], "a user's Dataplane is never touched");
    controller.must_stop().await;
}

/// The Warning Events about `pod` in `ns` whose message names `annotation`.
async fn events_naming(client: &Client, ns: &str, pod: &str, annotation: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let events = api.list(&Default::default()).await.expect("events are listed");
    events
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .filter(|e| e.message.as_deref().is_some_and(|m| m.contains(annotation)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_metrics_annotations_override_its_mesh_and_a_bad_one_is_reported_on_the_pod() {
    let server = KubeApiServer::must_start();
    let client = must_client(&server).await;
    let test_ns: Namespace = must_read(&testdata().join("12.namespace.yaml"));
    must_set_up(&client, &[test_ns]).await;
    let controller = start_controller(&client);

    let pod = must_create_case(&client, "12").await;
    let name = pod.metadata.name.clone().unwrap();
    must_set_ip(&client, "kuma-test", &name, "10.244.1.12").await;
    must_match_golden(&client, "12", &pod).await;
    let metrics = |dp: &DynamicObject| dp.data["spec"].get("metrics").cloned();
    must_see(&client, "kuma-test", &name, "the annotations are the override", |dp| {
        let expected =
            json!({"name": "", "type": "prometheus", "conf": {"port": 1234, "path": "/stats"}});
        (metrics(dp) == Some(expected)).then_some(()).ok_or(format!("{:?}", metrics(dp)))
    })
    .await;

    // A port that is no port: the pod keeps its Dataplane, without the override, and a Warning
    // Event on the pod says which annotation and why.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "kuma-test");
    let bad = json!({"metadata": {"annotations": {METRICS_PORT: "70000"}}});
    pods_api.patch(&name, &PatchParams::default(), &Patch::Merge(&bad)).await.unwrap();
    must_see(&client, "kuma-test", &name, "a bad port drops the override", |dp| {
        let inbound = dp.data["spec"]["networking"]["inbound"].as_array().map_or(0, Vec::len);
        (metrics(dp).is_none() && inbound == 1)
            .then_some(())
            .ok_or(format!("metrics {:?}, {inbound} inbounds", metrics(dp)))
    })
    .await;
    let reported = eventually("a Warning Event names the annotation", || async {
        let events = events_naming(&client, "kuma-test", &name, METRICS_PORT).await;
        match events.as_slice() {
            [event] => Ok(event.clone()),
            other => Err(format!("{} events", other.len())),
        }
    })
    .await;
    assert_eq!(reported.type_.as_deref(), Some("Warning"));
    assert_eq!(reported.reason.as_deref(), Some(pods::INVALID_ANNOTATION));
    assert_eq!(reported.involved_object.uid, pod.metadata.uid);
    let message = reported.message.unwrap_or_default();
    assert!(message.contains("\"70000\"") && message.contains("1-65535"), "{message}");

    // Another change of the pod reconciles it again: the same bad value is not reported twice.
    let label = json!({"metadata": {"labels": {"version": "v2"}}});
    pods_api.patch(&name, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    must_see(&client, "kuma-test", &name, "the new label is a tag", |dp| {
        let tags = &dp.data["spec"]["networking"]["inbound"][0]["tags"];
        (tags["version"] == "v2").then_some(()).ok_or(tags.to_string())
    })
    .await;
    assert_eq!(events_naming(&client, "kuma-test", &name, METRICS_PORT).await.len(), 1);

    // A bad path is reported too; fixing both brings the override back.
    let bad_path =
        json!({"metadata": {"annotations": {METRICS_PORT: "9102", METRICS_PATH: "stats"}}});
    pods_api.patch(&name, &PatchParams::default(), &Patch::Merge(&bad_path)).await.unwrap();
    eventually("a Warning Event names the path annotation", || async {
        let events = events_naming(&client, "kuma-test", &name, METRICS_PATH).await;
        (events.len() == 1).then_some(()).ok_or(format!("{} events", events.len()))
    })
    .await;
    let fixed = json!({"metadata": {"annotations": {METRICS_PATH: "/custom"}}});
    pods_api.patch(&name, &PatchParams::default(), &Patch::Merge(&fixed)).await.unwrap();
    must_see(&client, "kuma-test", &name, "fixed annotations are the override again", |dp| {
        let expected =
            json!({"name": "", "type": "prometheus", "conf": {"port": 9102, "path": "/custom"}});
        (metrics(dp) == Some(expected)).then_some(()).ok_or(format!("{:?}", metrics(dp)))
    })
    .await;

    controller.must_stop().await;
}
