//! `spec.writeInfoTo` on the real bed: the connection-info ConfigMap is written with the
//! export's keys, follows the export (stop), is not rewritten by a steady resync, moves
//! with the field, is owned by its object (the garbage collector's part is in
//! tests/cluster), and a ConfigMap someone else owns is never touched.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ads_export_operator::api::{CONDITION_READY, CONDITION_STALLED, ContinuousExport, FIELD_MANAGER};
use ads_export_operator::controller::ReconcileObserver;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::harness::*;
use super::{REGION, support};

fn config_maps(t: &Test) -> Api<ConfigMap> {
    Api::namespaced(t.client.clone(), &t.ns)
}

/// Waits until ConfigMap `name` exists and `pred` holds for its data; panics with the
/// last data seen.
pub async fn wait_config_map(
    t: &Test,
    name: &str,
    what: &str,
    pred: impl Fn(&BTreeMap<String, String>) -> bool,
) -> ConfigMap {
    let api = config_maps(t);
    support::wait_for_ok(&format!("ConfigMap {}/{name}: {what}", t.ns), DEADLINE, || async {
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            Some(cm) if pred(cm.data.as_ref().unwrap_or(&BTreeMap::new())) => Ok(cm),
            other => Err(format!("{:?}", other.map(|cm| cm.data))),
        }
    })
    .await
}

/// Waits until ConfigMap `name` no longer exists.
pub async fn wait_config_map_gone(t: &Test, name: &str) {
    let api = config_maps(t);
    support::wait_for_ok(&format!("ConfigMap {}/{name} deleted", t.ns), DEADLINE, || async {
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(cm) => Err(format!("still there: {:?}", cm.data)),
        }
    })
    .await;
}

/// The ConfigMap's data, as the status of `obj` says it must be (keys without a value
/// left out).
fn expected_data(obj: &ContinuousExport) -> BTreeMap<String, String> {
    let st = obj.status.clone().unwrap();
    let pairs = [
        ("exportId", st.export_id),
        ("region", Some(REGION.to_owned())),
        ("s3Bucket", st.s3_bucket),
        ("databaseName", st.database_name),
        ("exportStatus", st.export_status),
        ("startTime", st.start_time),
        ("stopTime", st.stop_time),
    ];
    pairs.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect()
}

/// The ConfigMap is controlled by `obj` (so the garbage collector deletes it with the
/// object, and a foreground deletion waits for it) and written by the operator's
/// field manager with server-side apply.
fn assert_owned_by(cm: &ConfigMap, obj: &ContinuousExport) {
    let refs = cm.owner_references();
    assert_eq!(refs.len(), 1, "{refs:?}");
    let r = &refs[0];
    assert_eq!((r.api_version.as_str(), r.kind.as_str()), ("adsexport.io/v1alpha1", "ContinuousExport"));
    assert_eq!((r.name.as_str(), Some(r.uid.as_str())), (obj.name_any().as_str(), obj.uid().as_deref()));
    assert_eq!((r.controller, r.block_owner_deletion), (Some(true), Some(true)));
    assert_eq!(cm.labels().get("adsexport.io/connection-info").map(String::as_str), Some("true"));
    let managers: Vec<_> = cm
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone().unwrap_or_default(), m.operation.clone().unwrap_or_default()))
        .collect();
    assert_eq!(managers, [(FIELD_MANAGER.to_owned(), "Apply".to_owned())]);
}

#[tokio::test]
async fn connection_info_follows_the_export_and_is_not_rewritten_on_resync() {
    let t = Test::new("info", cfg()).await;
    let reconciles = Arc::new(Reconciles::default());
    let observer: Arc<dyn ReconcileObserver> = reconciles.clone();
    // The operator's writes of ConfigMaps (server-side apply is a PATCH), counted.
    let (client, writes) = counting_client(|m, path| m == http::Method::PATCH && path.contains("/configmaps/")).await;
    let _op = t.operator_with_client(client, |s| s.resync_period = Duration::from_millis(500), Some(observer)).await;
    t.create("inv", json!({"writeInfoTo": {"configMapName": "inv-info"}})).await;
    let obj = t.wait_ready("inv").await;

    // Written after start, with the status' keys and the region; stopTime not yet.
    let cm = wait_config_map(&t, "inv-info", "ACTIVE", |d| d.get("exportStatus").is_some_and(|s| s == "ACTIVE")).await;
    let data = cm.data.clone().unwrap();
    assert_eq!(data, expected_data(&obj));
    assert_eq!(data["exportId"], t.emu.emulator.exports()[0].export_id);
    assert!(!data.contains_key("stopTime"), "{data:?}");
    assert_owned_by(&cm, &obj);

    // Steady resyncs (every 500 ms) send it nothing: no write request, same resourceVersion.
    let (before, written) = (reconciles.0.load(Ordering::SeqCst), writes.load(Ordering::SeqCst));
    assert!(written >= 1, "the ConfigMap was written through the counted client");
    support::wait_for("5 steady resyncs", DEADLINE, || async {
        (reconciles.0.load(Ordering::SeqCst) >= before + 5).then_some(())
    })
    .await;
    assert_eq!(writes.load(Ordering::SeqCst), written, "a ConfigMap write on a steady resync");
    let again = config_maps(&t).get("inv-info").await.unwrap();
    assert_eq!(again.resource_version(), cm.resource_version(), "rewritten on a steady resync");

    // An edit by hand is put right (the watch of our ConfigMaps triggers a reconcile).
    let api = config_maps(&t);
    let edit = json!({"data": {"exportStatus": "EDITED"}});
    api.patch("inv-info", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&edit)).await.unwrap();
    wait_config_map(&t, "inv-info", "restored", |d| d.get("exportStatus").is_some_and(|s| s == "ACTIVE")).await;

    // Stop: INACTIVE and stopTime, as in the status.
    t.patch_spec("inv", json!({"stopped": true})).await;
    let stopped = t.wait_ready("inv").await;
    let cm = wait_config_map(&t, "inv-info", "INACTIVE with stopTime", |d| {
        d.get("exportStatus").is_some_and(|s| s == "INACTIVE") && d.contains_key("stopTime")
    })
    .await;
    assert_eq!(cm.data.clone().unwrap(), expected_data(&stopped));
    assert_owned_by(&cm, &stopped);

    // A new name: written there, the old one deleted.
    t.patch_spec("inv", json!({"writeInfoTo": {"configMapName": "inv-info-2"}})).await;
    let moved = wait_config_map(&t, "inv-info-2", "written", |d| d.contains_key("exportId")).await;
    assert_eq!(moved.data.unwrap(), expected_data(&stopped));
    wait_config_map_gone(&t, "inv-info").await;

    // The field removed: the ConfigMap goes.
    t.patch_spec("inv", json!({"writeInfoTo": null})).await;
    wait_config_map_gone(&t, "inv-info-2").await;
    assert!(t.get("inv").await.status.unwrap().is_true(CONDITION_READY));
}

#[tokio::test]
async fn a_configmap_of_someone_else_is_never_touched_and_the_object_stalls() {
    let t = Test::new("info-taken", cfg()).await;
    let api = config_maps(&t);
    let mut theirs = ConfigMap { data: Some([("owner".to_owned(), "team-b".to_owned())].into()), ..Default::default() };
    theirs.metadata.name = Some("taken".into());
    let theirs = api.create(&PostParams::default(), &theirs).await.unwrap();
    let reconciles = Arc::new(Reconciles::default());
    let observer: Arc<dyn ReconcileObserver> = reconciles.clone();
    let _op = t.operator_observed(|s| s.resync_period = Duration::from_millis(500), Some(observer)).await;
    t.create("inv", json!({"writeInfoTo": {"configMapName": "taken"}})).await;

    let obj = t
        .wait_status("inv", "Stalled InfoTargetConflict", |s| {
            s.condition(CONDITION_STALLED).is_some_and(|c| c.status == "True" && c.reason == "InfoTargetConflict")
        })
        .await;
    let st = obj.status.clone().unwrap();
    let msg = &st.condition(CONDITION_STALLED).unwrap().message;
    assert!(msg.contains(&format!("ConfigMap {}/taken", t.ns)), "{msg}");
    assert!(msg.contains("spec.writeInfoTo.configMapName"), "{msg}");
    // The export itself is still managed: started, ACTIVE, in the status.
    let id = st.export_id.clone().expect("exportId");
    assert_eq!(st.export_status.as_deref(), Some("ACTIVE"));
    assert_eq!(t.export_status(&id), "ACTIVE");
    t.expect_event("inv", "InfoTargetConflict").await;
    // Left untouched over several resyncs (a stall on it is looked at again each one).
    let before = reconciles.0.load(Ordering::SeqCst);
    support::wait_for("3 more resyncs", DEADLINE, || async {
        (reconciles.0.load(Ordering::SeqCst) >= before + 3).then_some(())
    })
    .await;
    let now = api.get("taken").await.unwrap();
    assert_eq!(now.resource_version(), theirs.resource_version());
    assert_eq!(now.data, theirs.data);
    assert!(now.owner_references().is_empty());

    // Once it is gone, the next resync writes ours and the stall clears.
    api.delete("taken", &DeleteParams::default()).await.unwrap();
    let cm = wait_config_map(&t, "taken", "ours", |d| d.get("exportId") == Some(&id)).await;
    let obj = t.wait_ready("inv").await;
    assert_owned_by(&cm, &obj);
    assert!(!obj.status.unwrap().is_true(CONDITION_STALLED));
}

#[tokio::test]
async fn the_apiserver_rejects_a_configmap_name_that_is_no_dns_subdomain() {
    let t = Test::new("info-name", cfg()).await;
    for bad in ["Inventory_Info", "-info", "info.", ""] {
        let err = t.try_create("inv", json!({"writeInfoTo": {"configMapName": bad}})).await.unwrap_err();
        assert!(err.contains("spec.writeInfoTo.configMapName"), "{bad:?}: {err}");
    }
    let err = t.try_create("inv", json!({"writeInfoTo": {"configMapName": "Info"}})).await.unwrap_err();
    assert!(err.contains("must be a DNS-1123 subdomain"), "{err}");
    t.create("inv", json!({"writeInfoTo": {"configMapName": "inventory.export-info"}})).await;
}

/// `kubectl apply` of a whole file into the test's namespace (`extra` flags added).
fn kubectl_apply(t: &Test, file: &std::path::Path, extra: &[&str]) -> String {
    let bed = support::testbed();
    let mut cmd = bed.command(bed.kubectl());
    cmd.args(["apply", "-n", &t.ns, "-f", file.to_str().unwrap()]).args(extra);
    let out = cmd.stdin(Stdio::null()).output().expect("kubectl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl apply {extra:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn the_athena_consumer_example_gets_the_configmap_its_job_reads() {
    let t = Test::new("info-example", cfg()).await;
    let file = support::repo_root().join("examples/athena-consumer.yaml");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&std::fs::read_to_string(&file).unwrap())
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ContinuousExport", "ServiceAccount", "Job"]);
    let target = docs[0]["spec"]["writeInfoTo"]["configMapName"].as_str().unwrap().to_owned();
    let pod = &docs[2]["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["envFrom"][0]["configMapRef"]["name"], target.as_str(), "the Job reads it");
    assert_eq!(pod["serviceAccountName"], docs[1]["metadata"]["name"]);

    // The apiserver accepts all of it (this bed runs no Job controller: no pod starts).
    let dry = kubectl_apply(&t, &file, &["--dry-run=server"]);
    assert!(dry.contains("(server dry run)"), "{dry}");
    let _op = t.operator(|_| {}).await;
    kubectl_apply(&t, &file, &[]);
    let name = docs[0]["metadata"]["name"].as_str().unwrap();
    let obj = t.wait_ready(name).await;
    let cm = wait_config_map(&t, &target, "ACTIVE", |d| d.get("exportStatus").is_some_and(|s| s == "ACTIVE")).await;
    assert_eq!(cm.data.clone().unwrap(), expected_data(&obj));
    // what the Job's script reads
    let script = pod["containers"][0]["args"][0].as_str().unwrap();
    for key in ["exportStatus", "region", "databaseName", "s3Bucket"] {
        assert!(script.contains(&format!("${key}")), "the script reads {key}");
        assert!(cm.data.as_ref().unwrap().contains_key(key), "the ConfigMap has {key}");
    }
}
