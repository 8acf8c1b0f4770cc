//! `spec.managementPolicy` and the steering annotations (`adsexport.io/paused`,
//! `adsexport.io/reconcile-requested-at`) on the real bed: what the apiserver rejects,
//! what the operator calls (emulator counters), and which writes it makes (a watch on
//! the object records every write, so "nothing else was written" is checked against
//! a known later event rather than a sleep).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ads_export_operator::ads::Operation;
use ads_export_operator::api::{CONDITION_READY, CONDITION_STALLED, CONDITION_SYNCED, ContinuousExport};
use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, WatchEvent, WatchParams};
use serde_json::json;

use super::harness::*;
use super::support;

const PAUSED: &str = "adsexport.io/paused";
const REQUESTED: &str = "adsexport.io/reconcile-requested-at";

/// Every call the emulator served, by operation: Start, Describe, Stop.
fn ads_calls(t: &Test) -> [u64; 3] {
    [Operation::Start, Operation::Describe, Operation::Stop].map(|op| t.emu.emulator.calls(op.name()))
}

/// Merge-patches annotations (`None` removes one); the new resourceVersion.
async fn annotate(t: &Test, name: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let map: serde_json::Map<_, _> = pairs.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let patch = json!({"metadata": {"annotations": map}});
    let o = t.api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
    o.metadata.resource_version.unwrap()
}

fn reason(o: &ContinuousExport, type_: &str) -> Option<String> {
    o.status.as_ref()?.condition(type_).map(|c| format!("{} {}", c.status, c.reason))
}

/// Every version of one object written after `from` (a resourceVersion), in order, as
/// a watch delivers them.
struct Writes(Arc<Mutex<Vec<ContinuousExport>>>, tokio::task::JoinHandle<()>);

impl Writes {
    async fn record(t: &Test, name: &str, from: &str) -> Writes {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let wp = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(290);
        let mut stream = t.api.watch(&wp, from).await.expect("watch").boxed();
        let task = tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                if let WatchEvent::Modified(o) | WatchEvent::Added(o) = event {
                    into.lock().unwrap().push(o);
                }
            }
        });
        Writes(seen, task)
    }

    /// Waits until the write `rv` (made by the test) has been seen; all writes up to it.
    async fn through(&self, rv: &str) -> Vec<ContinuousExport> {
        support::wait_for("the watch to deliver a known write", DEADLINE, || async {
            let all = self.0.lock().unwrap().clone();
            let at = all.iter().position(|o| o.metadata.resource_version.as_deref() == Some(rv))?;
            Some(all[..=at].to_vec())
        })
        .await
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.1.abort();
    }
}

#[tokio::test]
async fn apiserver_rejects_invalid_management_policies() {
    let t = Test::new("policycel", cfg()).await;
    let err = t.try_create("noid", json!({"managementPolicy": "ObserveOnly"})).await.unwrap_err();
    assert!(err.contains("spec.managementPolicy ObserveOnly requires spec.exportId"), "{err}");
    let err = t
        .try_create("stopobs", json!({"managementPolicy": "ObserveOnly", "exportId": "export-a", "stopped": true}))
        .await
        .unwrap_err();
    assert!(err.contains("spec.stopped: true cannot be combined with spec.managementPolicy ObserveOnly"), "{err}");
    let err = t.try_create("typo", json!({"managementPolicy": "Observe"})).await.unwrap_err();
    assert!(err.contains("managementPolicy") && err.contains("ObserveOnly"), "names the allowed values: {err}");

    // Both ways on an object with spec.exportId; stopped only under Full.
    t.create("both", json!({"managementPolicy": "ObserveOnly", "exportId": "export-b"})).await;
    let o = t.patch_spec("both", json!({"managementPolicy": "Full"})).await;
    assert_eq!(o.spec.management_policy, ads_export_operator::api::ManagementPolicy::Full);
    t.patch_spec("both", json!({"managementPolicy": "ObserveOnly"})).await;
    let err = t.try_patch_spec("both", json!({"stopped": true})).await.unwrap_err();
    assert!(err.contains("never stopped by the operator"), "{err}");
    t.patch_spec("both", json!({"managementPolicy": "Full", "stopped": true})).await;
    // Full -> ObserveOnly once stopped: stopped cannot go back to false, and cannot stay true.
    let err = t.try_patch_spec("both", json!({"managementPolicy": "ObserveOnly"})).await.unwrap_err();
    assert!(err.contains("cannot be combined"), "{err}");
    let err = t.try_patch_spec("both", json!({"managementPolicy": "ObserveOnly", "stopped": false})).await.unwrap_err();
    assert!(err.contains("a stopped export cannot be resumed"), "{err}");

    // An object that started its own export has no spec.exportId, and cannot get one.
    t.create("own", json!({})).await;
    let err = t.try_patch_spec("own", json!({"managementPolicy": "ObserveOnly"})).await.unwrap_err();
    assert!(err.contains("requires spec.exportId") && err.contains("create a new ContinuousExport"), "{err}");
    // Objects stored before the field existed read as Full (the schema's default).
    assert_eq!(t.get("own").await.spec.management_policy, ads_export_operator::api::ManagementPolicy::Full);
}

#[tokio::test]
async fn observe_only_mirrors_the_export_and_never_starts_or_stops_it() {
    let t = Test::new("observe", cfg()).await;
    let id = t.start_export_out_of_band().await;
    let before = ads_calls(&t);
    let _op = t.operator(|s| s.resync_period = Duration::from_secs(2)).await;
    t.apply_example("observe-only.yaml", "watcher", |o| o["spec"]["exportId"] = json!(id)).await;
    let st = t.wait_ready("watcher").await.status.unwrap();
    let e = t.emu.emulator.exports().into_iter().find(|e| e.export_id == id).unwrap();
    assert_eq!(st.export_id.as_deref(), Some(id.as_str()));
    assert_eq!(st.export_status.as_deref(), Some("ACTIVE"));
    assert_eq!(st.s3_bucket.as_deref(), Some(e.s3_bucket.as_str()));
    assert_eq!(st.start_time.as_deref(), Some(format_ms(e.start_time_ms).as_str()));
    assert_eq!(st.condition(CONDITION_READY).unwrap().reason, "Observed");
    assert_eq!(st.management_policy, Some(ads_export_operator::api::ManagementPolicy::ObserveOnly));

    // Deleting an observer stops nothing.
    t.api.delete("watcher", &DeleteParams::default()).await.unwrap();
    t.wait_gone("watcher").await;
    assert_eq!(t.export_status(&id), "ACTIVE");

    // A stop by the export's owner is mirrored, times included, and is no failure here.
    t.apply_example("observe-only.yaml", "watcher2", |o| o["spec"]["exportId"] = json!(id)).await;
    t.wait_ready("watcher2").await;
    t.emu.emulator.stop_out_of_band(&id).unwrap();
    let o = t
        .wait_status("watcher2", "INACTIVE mirrored", |s| {
            s.export_status.as_deref() == Some("INACTIVE") && s.stop_time.is_some()
        })
        .await;
    let st = o.status.unwrap();
    let e = t.emu.emulator.exports().into_iter().find(|e| e.export_id == id).unwrap();
    assert_eq!(st.stop_time.as_deref(), Some(format_ms(e.stop_time_ms.unwrap()).as_str()));
    assert_eq!(reason(&t.get("watcher2").await, CONDITION_READY).as_deref(), Some("True Observed"));
    assert!(!st.is_true(CONDITION_STALLED), "{:?}", st.conditions);
    let [starts, _, stops] = ads_calls(&t);
    assert_eq!((starts, stops), (before[0], before[2]), "an observer never calls Start or Stop");
}

#[tokio::test]
async fn observe_only_to_full_adopts_then_stops_and_observers_do_not_block_it() {
    let t = Test::new("takeover", cfg()).await;
    let id = t.start_export_out_of_band().await;
    let _op = t.operator(|s| s.resync_period = Duration::from_secs(2)).await;
    let spec = json!({"managementPolicy": "ObserveOnly", "exportId": id});
    t.create("first", spec.clone()).await;
    t.create("second", spec).await;
    t.wait_ready("first").await;
    t.wait_ready("second").await;

    // The first takes it over; the second, still observing, is no obstacle.
    t.patch_spec("first", json!({"managementPolicy": "Full"})).await;
    t.expect_event("first", "Adopted").await;
    let st = t
        .wait_status("first", "Ready Active under Full", |s| {
            s.management_policy.is_none() && s.condition(CONDITION_READY).is_some_and(|c| c.reason == "Active")
        })
        .await
        .status
        .unwrap();
    assert_eq!(st.export_id.as_deref(), Some(id.as_str()));
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 1, "only the out-of-band Start");

    t.patch_spec("first", json!({"stopped": true})).await;
    t.wait_status("first", "INACTIVE and Ready", |s| {
        s.export_status.as_deref() == Some("INACTIVE") && s.is_true(CONDITION_READY)
    })
    .await;
    assert_eq!(t.export_status(&id), "INACTIVE");
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 1);
    t.expect_event("first", "Stopped").await;
    // The observer follows (at its next resync) without claiming anything.
    t.wait_status("second", "INACTIVE mirrored", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    assert_eq!(reason(&t.get("second").await, CONDITION_READY).as_deref(), Some("True Observed"));
}

#[tokio::test]
async fn a_reconcile_request_is_handled_at_once_recorded_and_written_once() {
    let t = Test::new("reqnow", cfg()).await;
    let resync = Duration::from_secs(3600);
    let _op = t.operator(|s| s.resync_period = resync).await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    t.wait_status("inv", "settled", |s| reason_is(s, ads_export_operator::api::CONDITION_RECONCILING, "False Settled"))
        .await;
    // Changed outside Kubernetes: the operator would notice only at its resync, in an hour.
    t.emu.emulator.stop_out_of_band(&id).unwrap();
    let started = std::time::Instant::now();
    let rv = annotate(&t, "inv", &[(REQUESTED, Some("first"))]).await;
    let writes = Writes::record(&t, "inv", &rv).await;
    let o = t
        .wait_status("inv", "request handled", |s| {
            s.last_handled_reconcile_at.as_deref() == Some("first") && s.export_status.as_deref() == Some("INACTIVE")
        })
        .await;
    assert!(started.elapsed() < resync / 10, "handled in {:?}", started.elapsed());
    assert_eq!(reason(&o, CONDITION_STALLED).as_deref(), Some("True StoppedOutsideKubernetes"));

    // A second request (the known later event): between the two, and after it, the
    // operator writes exactly once per request, however its own writes come back.
    let handled = o.metadata.resource_version.clone().unwrap();
    let rv2 = annotate(&t, "inv", &[(REQUESTED, Some("second"))]).await;
    t.wait_status("inv", "second request handled", |s| s.last_handled_reconcile_at.as_deref() == Some("second")).await;
    let marker = annotate(&t, "inv", &[("example.com/marker", Some("end"))]).await;
    let seen = writes.through(&marker).await;
    let versions: Vec<_> = seen.iter().map(|o| o.metadata.resource_version.clone().unwrap()).collect();
    let after_handled = versions.iter().skip_while(|v| **v != handled).skip(1).cloned().collect::<Vec<_>>();
    assert_eq!(after_handled.len(), 3, "the second request, its one status write, the marker: {after_handled:?}");
    assert_eq!((after_handled[0].as_str(), after_handled[2].as_str()), (rv2.as_str(), marker.as_str()));
    let second = &seen[seen.len() - 2];
    assert_eq!(second.status.as_ref().unwrap().last_handled_reconcile_at.as_deref(), Some("second"));
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 0);
}

fn reason_is(s: &ads_export_operator::api::ContinuousExportStatus, type_: &str, want: &str) -> bool {
    s.condition(type_).is_some_and(|c| format!("{} {}", c.status, c.reason) == want)
}

#[tokio::test]
async fn paused_makes_no_aws_calls_and_resuming_applies_the_pending_change() {
    let t = Test::new("paused", cfg()).await;
    let _op = t.operator(|s| s.resync_period = Duration::from_secs(2)).await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    let rv = annotate(&t, "inv", &[(PAUSED, Some("true"))]).await;
    let writes = Writes::record(&t, "inv", &rv).await;
    let o = t.wait_status("inv", "Synced=False Paused", |s| reason_is(s, CONDITION_SYNCED, "False Paused")).await;
    let calls = ads_calls(&t);
    let generation = o.metadata.generation;
    t.expect_event("inv", "Paused").await;

    // Changes while paused: seen (the condition's generation), not acted on.
    let stopped = t.patch_spec("inv", json!({"stopped": true})).await;
    let o = t
        .wait_status("inv", "Paused on the new generation", |s| {
            s.condition(CONDITION_SYNCED)
                .is_some_and(|c| c.reason == "Paused" && c.observed_generation == stopped.metadata.generation)
        })
        .await;
    let st = o.status.clone().unwrap();
    assert_eq!(st.observed_generation, generation, "no other status change");
    assert_eq!(st.export_status.as_deref(), Some("ACTIVE"));
    let request = annotate(&t, "inv", &[(REQUESTED, Some("while-paused"))]).await;
    // The known later event: another spec change, answered by one write of the condition.
    let later = t.patch_spec("inv", json!({"deletionPolicy": "Retain"})).await;
    let o = t
        .wait_status("inv", "Paused on the latest generation", |s| {
            s.condition(CONDITION_SYNCED).is_some_and(|c| c.observed_generation == later.metadata.generation)
        })
        .await;
    let seen = writes.through(o.metadata.resource_version.as_deref().unwrap()).await;
    let versions: Vec<_> = seen.iter().map(|o| o.metadata.resource_version.clone().unwrap()).collect();
    let from_request: Vec<_> = versions.iter().skip_while(|v| **v != request).cloned().collect();
    assert_eq!(
        from_request,
        [
            request.clone(),
            later.metadata.resource_version.clone().unwrap(),
            o.metadata.resource_version.clone().unwrap()
        ],
        "a request while paused is not handled and writes nothing"
    );
    assert_eq!(o.status.as_ref().unwrap().last_handled_reconcile_at, None);
    assert_eq!(ads_calls(&t), calls, "no AWS call while paused (with a 2 s resync)");
    assert_eq!(t.export_status(&id), "ACTIVE");

    // Unpaused: the request and the stop are carried out.
    annotate(&t, "inv", &[(PAUSED, None)]).await;
    let st = t
        .wait_status("inv", "stopped after resuming", |s| {
            s.export_status.as_deref() == Some("INACTIVE") && s.is_true(CONDITION_READY) && s.is_true(CONDITION_SYNCED)
        })
        .await
        .status
        .unwrap();
    assert_eq!(st.last_handled_reconcile_at.as_deref(), Some("while-paused"));
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), calls[2] + 1);
    t.expect_event("inv", "Resumed").await;
}

#[tokio::test]
async fn a_paused_object_keeps_its_finalizer_and_export_until_unpaused() {
    let t = Test::new("pausedel", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    annotate(&t, "inv", &[(PAUSED, Some("true"))]).await;
    t.wait_status("inv", "Paused", |s| reason_is(s, CONDITION_SYNCED, "False Paused")).await;
    let calls = ads_calls(&t);
    t.api.delete("inv", &DeleteParams::default()).await.unwrap();
    let o = t
        .wait_status("inv", "Paused, deletion waiting", |s| {
            s.condition(CONDITION_SYNCED).is_some_and(|c| c.message.contains("the deletion waits"))
        })
        .await;
    assert!(o.metadata.deletion_timestamp.is_some());
    assert_eq!(ads_calls(&t), calls);
    assert_eq!(t.export_status(&id), "ACTIVE");
    annotate(&t, "inv", &[(PAUSED, None)]).await;
    t.wait_gone("inv").await;
    assert_eq!(t.export_status(&id), "INACTIVE", "deletionPolicy Delete, carried out once unpaused");
}

#[tokio::test]
async fn kubectl_explain_describes_the_new_fields() {
    let t = Test::new("explain", cfg()).await;
    let bed = support::testbed();
    for (field, says) in [
        ("spec.managementPolicy", "mirrors its status, times and conditions"),
        ("status.managementPolicy", "written under"),
        ("status.lastHandledReconcileAt", "adsexport.io/reconcile-requested-at"),
    ] {
        let path = format!("continuousexports.{field}");
        // The apiserver publishes a new CRD's OpenAPI a moment after it is applied.
        support::wait_for_ok(&format!("kubectl explain {path}"), DEADLINE, || async {
            let out = bed
                .command(bed.kubectl())
                .args(["explain", "-n", t.ns.as_str(), path.as_str()])
                .output()
                .expect("kubectl");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let text = text.split_whitespace().collect::<Vec<_>>().join(" "); // kubectl wraps lines
            if out.status.success() && text.contains(says) { Ok(()) } else { Err(text) }
        })
        .await;
    }
}
