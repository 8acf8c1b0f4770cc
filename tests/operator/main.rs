//! End-to-end tests of the operator on the real bed: kube-apiserver + etcd, the ADS
//! emulator on loopback, the controller in-process (or as its binary for the crash
//! test). Each test has its own namespace and its own emulator; every wait has a
//! deadline.

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod credentials;
mod harness;
mod home_region;
mod info;
mod packaging;
mod policy;
mod recovery;
mod scale;

use std::time::Duration;

use ads_export_operator::ads::Operation;
use ads_export_operator::api::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CONDITION_SYNCED, START_PENDING_ANNOTATION,
};
use ads_export_operator::emulator::{EmulatorConfig, Fault, FaultKind};
use harness::*;
use kube::api::DeleteParams;
use serde_json::json;

const REGION: &str = "us-west-2";

#[tokio::test]
async fn create_starts_an_export_and_fills_status() {
    let t = Test::new("create", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;
    let obj = t.wait_ready("inv").await;
    let st = obj.status.clone().unwrap();
    let id = st.export_id.clone().expect("exportId");
    assert_eq!(st.export_status.as_deref(), Some("ACTIVE"));
    assert!(st.s3_bucket.as_deref().is_some_and(|b| !b.is_empty()), "{st:?}");
    assert_eq!(st.database_name.as_deref(), Some("application_discovery_service_database"));
    assert_eq!(st.data_source.as_deref(), Some("AGENT"));
    assert_rfc3339_ms(st.start_time.as_deref().expect("startTime"));
    assert_eq!(st.observed_generation, obj.metadata.generation);
    for c in &st.conditions {
        assert_eq!(c.observed_generation, obj.metadata.generation, "{c:?}");
    }
    assert!(st.is_true(CONDITION_SYNCED));
    assert!(!st.is_true(CONDITION_RECONCILING) && !st.is_true(CONDITION_STALLED), "{:?}", st.conditions);
    // the emulator agrees: exactly one ACTIVE export with that ID and start time
    let exports = t.emu.emulator.exports();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].export_id, id);
    assert_eq!(st.start_time.as_deref(), Some(format_ms(exports[0].start_time_ms).as_str()));
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 1);
    // finalizer present
    assert!(obj.metadata.finalizers.unwrap_or_default().contains(&"adsexport.io/stop-export".to_string()));
    t.expect_event("inv", "Started").await;
}

#[tokio::test]
async fn stopping_writes_stop_time_also_with_a_slow_stop() {
    let t = Test::new("stop", EmulatorConfig { stop_delay: Duration::from_secs(3), ..cfg() }).await;
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;
    t.wait_ready("inv").await;
    t.patch_spec("inv", json!({"stopped": true})).await;
    let mid = t
        .wait_status("inv", "STOP_IN_PROGRESS with Ready=False", |s| {
            s.export_status.as_deref() == Some("STOP_IN_PROGRESS") && !s.is_true(CONDITION_READY)
        })
        .await;
    assert!(mid.status.unwrap().is_true(CONDITION_RECONCILING));
    let done = t
        .wait_status("inv", "INACTIVE and Ready", |s| {
            s.export_status.as_deref() == Some("INACTIVE") && s.is_true(CONDITION_READY)
        })
        .await;
    let st = done.status.unwrap();
    assert_rfc3339_ms(st.stop_time.as_deref().expect("stopTime"));
    assert_rfc3339_ms(st.start_time.as_deref().expect("startTime"));
    let e = &t.emu.emulator.exports()[0];
    assert_eq!(st.stop_time.as_deref(), Some(format_ms(e.stop_time_ms.unwrap()).as_str()));
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 1);
    t.expect_event("inv", "Stopped").await;
}

#[tokio::test]
async fn stop_without_times_in_the_answer_falls_back_on_describe() {
    let t = Test::new("sample", cfg()).await;
    t.emu.emulator.set_stop_sample_response(true);
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;
    t.wait_ready("inv").await;
    t.patch_spec("inv", json!({"stopped": true})).await;
    let done = t.wait_status("inv", "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    let st = done.status.unwrap();
    let e = &t.emu.emulator.exports()[0];
    assert_eq!(st.stop_time.as_deref(), Some(format_ms(e.stop_time_ms.unwrap()).as_str()));
    assert_eq!(st.start_time.as_deref(), Some(format_ms(e.start_time_ms).as_str()));
}

#[tokio::test]
async fn delete_with_delete_policy_stops_the_export() {
    let t = Test::new("del", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    t.api.delete("inv", &DeleteParams::default()).await.unwrap();
    t.wait_gone("inv").await;
    assert_eq!(t.emu.emulator.exports()[0].export_id, id);
    assert_eq!(t.export_status(&id), "INACTIVE");
}

#[tokio::test]
async fn delete_with_retain_policy_leaves_the_export_running() {
    let t = Test::new("retain", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.apply_example("retain.yaml", "inv", |_| {}).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    t.api.delete("inv", &DeleteParams::default()).await.unwrap();
    t.wait_gone("inv").await;
    assert_eq!(t.export_status(&id), "ACTIVE");
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 0);
}

#[tokio::test]
async fn a_retained_export_is_never_taken_over_by_a_new_object() {
    // Found by a break-it session: a retained export, then a new object whose Start
    // went unanswered, ended with the new object "recovering" the retained export and
    // stopping it on deletion.
    let t = Test::new("retaintake", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.apply_example("retain.yaml", "theirs", |_| {}).await;
    let id = t.wait_ready("theirs").await.status.unwrap().export_id.unwrap();
    t.api.delete("theirs", &DeleteParams::default()).await.unwrap();
    t.wait_gone("theirs").await;

    // A slow Start would time out in the SDK: but none is sent, since one export is running.
    t.emu.emulator.inject_fault(Fault::new(Some(Operation::Start.name()), FaultKind::Latency { ms: 25_000 }));
    t.create("mine", json!({})).await;
    let obj = t
        .wait_status("mine", "Conflict", |s| s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == "Conflict"))
        .await;
    let msg = obj.status.as_ref().unwrap().condition(CONDITION_SYNCED).unwrap().message.clone();
    assert!(msg.contains(&id) && msg.contains("spec.exportId"), "names the running export to adopt: {msg}");
    assert!(!obj.metadata.annotations.unwrap_or_default().contains_key("adsexport.io/start-pending"));
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 1, "only the first object's Start");

    t.api.delete("mine", &DeleteParams::default()).await.unwrap();
    t.wait_gone("mine").await;
    assert_eq!(t.export_status(&id), "ACTIVE", "the retained export keeps running");
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 0);
}

#[tokio::test]
async fn a_second_object_waits_for_a_pending_start_and_never_takes_its_export() {
    // Found by a break-it session: while one object's start was unanswered (pending),
    // a second object started an export, which the first then "recovered" as its own
    // (and deleting the first stopped the second's export).
    let t = Test::new("pendwait", cfg()).await;
    let _op = t.operator(|_| {}).await; // backoff 500 ms doubling to 5 s
    t.emu.emulator.inject_fault(Fault::new(Some(Operation::Start.name()), FaultKind::Http { status: 500 }).times(4));
    t.create("first", json!({})).await;
    t.wait_status("first", "ServerError", |s| s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == "ServerError"))
        .await;
    t.create("second", json!({})).await;
    let obj = t
        .wait_status("second", "waiting (ResourceInUse)", |s| {
            s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == "ResourceInUse")
        })
        .await;
    let msg = obj.status.unwrap().condition(CONDITION_SYNCED).unwrap().message.clone();
    assert!(msg.contains(&format!("pending start of ContinuousExport {}/first", t.ns)), "{msg}");

    // The first starts its export at last; the second then conflicts with it, by name.
    let id = t.wait_ready("first").await.status.unwrap().export_id.unwrap();
    let obj = t
        .wait_status("second", "Conflict", |s| s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == "Conflict"))
        .await;
    let msg = obj.status.unwrap().condition(CONDITION_SYNCED).unwrap().message.clone();
    assert!(msg.contains(&id) && msg.contains(&format!("{}/first", t.ns)), "{msg}");
    assert_eq!(
        t.emu.emulator.calls(Operation::Start.name()),
        5,
        "four failed attempts of the first, then its Start; none of the second"
    );
    assert_eq!(t.emu.emulator.exports().len(), 1);

    // Deleting the second stops nothing.
    t.api.delete("second", &DeleteParams::default()).await.unwrap();
    t.wait_gone("second").await;
    assert_eq!(t.export_status(&id), "ACTIVE");
}

#[tokio::test]
async fn delete_after_out_of_band_stop_or_of_unknown_id_still_completes() {
    let t = Test::new("delgone", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    t.emu.emulator.stop_out_of_band(&id).unwrap();
    t.api.delete("inv", &DeleteParams::default()).await.unwrap();
    t.wait_gone("inv").await;
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 0, "an INACTIVE export is not stopped again");

    t.create("ghost", json!({"exportId": "export-does-not-exist"})).await;
    t.wait_status("ghost", "Stalled NotFound", |s| s.is_true(CONDITION_STALLED)).await;
    t.api.delete("ghost", &DeleteParams::default()).await.unwrap();
    t.wait_gone("ghost").await;
}

#[tokio::test]
async fn adopt_existing_export_without_starting_one() {
    let t = Test::new("adopt", cfg()).await;
    let id = t.start_export_out_of_band().await;
    let starts_before = t.emu.emulator.calls(Operation::Start.name());
    let _op = t.operator(|_| {}).await;
    t.apply_example("adopt.yaml", "adopted", |o| o["spec"]["exportId"] = json!(id)).await;
    let st = t.wait_ready("adopted").await.status.unwrap();
    assert_eq!(st.export_id.as_deref(), Some(id.as_str()));
    assert_eq!(st.export_status.as_deref(), Some("ACTIVE"));
    let e = &t.emu.emulator.exports()[0];
    assert_eq!(st.s3_bucket.as_deref(), Some(e.s3_bucket.as_str()));
    assert_eq!(st.start_time.as_deref(), Some(format_ms(e.start_time_ms).as_str()));
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), starts_before, "adoption must not call Start");
    t.expect_event("adopted", "Adopted").await;
}

#[tokio::test]
async fn adopt_unknown_id_stalls_without_a_retry_storm() {
    let t = Test::new("adoptnf", cfg()).await;
    let _op = t.operator(|s| s.backoff_base = Duration::from_millis(200)).await;
    t.create("ghost", json!({"exportId": "export-0000"})).await;
    let obj = t.wait_status("ghost", "Stalled", |s| s.is_true(CONDITION_STALLED)).await;
    let st = obj.status.unwrap();
    let stalled = st.condition(CONDITION_STALLED).unwrap();
    assert_eq!(stalled.reason, "NotFound");
    assert!(stalled.message.contains("export-0000"), "{}", stalled.message);
    assert_eq!(st.condition(CONDITION_SYNCED).unwrap().status, "False");
    let describes = t.emu.emulator.calls(Operation::Describe.name());
    // With a 200 ms backoff base a retry loop would call Describe many times in 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.emu.emulator.calls(Operation::Describe.name()), describes, "a stalled object is not retried");
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 0);
}

#[tokio::test]
async fn home_region_not_set_backs_off_and_recovers() {
    let t = Test::new("homeregion", EmulatorConfig { home_region: None, ..cfg() }).await;
    recoverable_error_backs_off_then_recovers(t, "HomeRegionNotSet", |t| {
        t.emu.emulator.set_home_region(Some(REGION.into()));
    })
    .await;
}

#[tokio::test]
async fn authorization_error_backs_off_and_recovers() {
    let t = Test::new("authz", cfg()).await;
    t.emu.emulator.inject_fault(Fault::new(
        None,
        FaultKind::Error { name: "AuthorizationErrorException".into(), message: Some("not authorized".into()) },
    ));
    recoverable_error_backs_off_then_recovers(t, "AuthorizationError", |t| t.emu.emulator.clear_faults()).await;
}

/// The shared body of the two backoff tests: the reason shows in conditions, the
/// number of AWS calls over 30 s stays within what the backoff schedule allows, and
/// clearing the fault makes the object Ready with no user action.
async fn recoverable_error_backs_off_then_recovers(t: Test, reason: &str, clear: impl FnOnce(&Test)) {
    let base = Duration::from_secs(1);
    let max = Duration::from_secs(8);
    let _op = t
        .operator(|s| {
            s.backoff_base = base;
            s.backoff_max = max;
        })
        .await;
    t.create("inv", json!({})).await;
    let obj = t.wait_status("inv", reason, |s| s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == reason)).await;
    let st = obj.status.unwrap();
    let synced = st.condition(CONDITION_SYNCED).unwrap();
    assert_eq!(synced.status, "False");
    let reconciling = st.condition(CONDITION_RECONCILING).unwrap();
    assert_eq!((reconciling.status.as_str(), reconciling.reason.as_str()), ("True", reason));
    assert!(
        reconciling.message.contains("retry") && reconciling.message.contains(" (at 20"),
        "{}",
        reconciling.message
    );
    assert!(!st.is_true(CONDITION_READY) && !st.is_true(CONDITION_STALLED));
    assert!(!obj.metadata.annotations.unwrap_or_default().contains_key("adsexport.io/start-pending"));

    // Each attempt makes one AWS call, which fails: the look at the region's exports
    // (DescribeContinuousExports) before StartContinuousExport.
    let attempts = || t.emu.emulator.calls(Operation::Describe.name()) + t.emu.emulator.calls(Operation::Start.name());
    let window = Duration::from_secs(30);
    let before = attempts();
    let started = std::time::Instant::now();
    tokio::time::sleep(window).await; // the measured window, not a wait for an outcome
    let calls = attempts() - before;
    let bound = support::max_calls(base, max, started.elapsed());
    eprintln!("{reason}: {calls} AWS calls in {:?}; the backoff allows at most {bound}", started.elapsed());
    assert!(calls <= bound, "{calls} AWS calls in {window:?}, backoff allows at most {bound}");
    assert!(calls >= 2, "only {calls} AWS calls in {window:?}: not retrying");
    assert!(t.emu.emulator.exports().is_empty());

    clear(&t);
    let obj = t.wait_ready("inv").await;
    assert!(obj.status.unwrap().is_true(CONDITION_SYNCED));
    assert_eq!(t.emu.emulator.exports().len(), 1);
    t.expect_event("inv", reason).await;
}

#[tokio::test]
async fn second_export_conflicts_and_names_the_active_one() {
    let t = Test::new("conflict", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.create("first", json!({})).await;
    let id = t.wait_ready("first").await.status.unwrap().export_id.unwrap();
    t.create("second", json!({})).await;
    let obj = t
        .wait_status("second", "Conflict", |s| s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == "Conflict"))
        .await;
    let st = obj.status.unwrap();
    let msg = &st.condition(CONDITION_SYNCED).unwrap().message;
    assert!(msg.contains(&id), "message should name {id}: {msg}");
    assert!(st.is_true(CONDITION_RECONCILING), "Conflict is recoverable");
    assert_eq!(t.emu.emulator.exports().len(), 1);
}

#[tokio::test]
async fn out_of_band_stop_shows_after_resync() {
    let t = Test::new("oob", cfg()).await;
    let _op = t.operator(|s| s.resync_period = Duration::from_secs(2)).await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    t.emu.emulator.stop_out_of_band(&id).unwrap();
    let obj = t.wait_status("inv", "INACTIVE after resync", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    let st = obj.status.unwrap();
    assert!(!st.is_true(CONDITION_READY), "spec still wants it running");
    assert_eq!(st.condition(CONDITION_STALLED).unwrap().reason, "StoppedOutsideKubernetes");
    // acknowledging the stop makes it Ready again without calling Stop
    t.patch_spec("inv", json!({"stopped": true})).await;
    t.wait_ready("inv").await;
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 0);
}

#[tokio::test]
async fn apiserver_rejects_invalid_changes() {
    let t = Test::new("cel", cfg()).await;
    // exportId with whitespace, and over 200 characters
    let err = t.try_create("spaced", json!({"exportId": "export 1"})).await.unwrap_err();
    assert!(err.contains("spec.exportId"), "{err}");
    let err = t.try_create("long", json!({"exportId": "x".repeat(201)})).await.unwrap_err();
    assert!(err.contains("spec.exportId"), "{err}");
    // stopped true -> false
    t.create("stopped", json!({"stopped": true})).await;
    let err = t.try_patch_spec("stopped", json!({"stopped": false})).await.unwrap_err();
    assert!(err.contains("a stopped export cannot be resumed; create a new ContinuousExport"), "{err}");
    // exportId changed, and removed
    t.create("adopt", json!({"exportId": "export-a"})).await;
    let err = t.try_patch_spec("adopt", json!({"exportId": "export-b"})).await.unwrap_err();
    assert!(err.contains("spec.exportId is immutable"), "{err}");
    let err = t.try_patch_spec("adopt", json!({"exportId": null})).await.unwrap_err();
    assert!(err.contains("cannot be removed"), "{err}");
    // a bad deletionPolicy names the allowed values
    let err = t.try_create("policy", json!({"deletionPolicy": "Keep"})).await.unwrap_err();
    assert!(err.contains("deletionPolicy") && err.contains("Retain"), "{err}");
}

#[tokio::test]
async fn steady_state_makes_no_writes_and_no_start_or_stop() {
    let t = Test::new("steady", cfg()).await;
    let _op = t.operator(|s| s.resync_period = Duration::from_secs(1)).await;
    t.create("inv", json!({})).await;
    t.wait_ready("inv").await;
    // let the first transition polls finish: Reconciling settles False
    t.wait_status("inv", "settled", |s| s.is_true(CONDITION_READY) && !s.is_true(CONDITION_RECONCILING)).await;
    // and the start-pending annotation removed (its own write, after the status's)
    t.wait_annotation_gone("inv", START_PENDING_ANNOTATION).await;
    let settled = t.get("inv").await;
    let rv = settled.metadata.resource_version.clone();
    let (starts, stops) = (t.emu.emulator.calls(Operation::Start.name()), t.emu.emulator.calls(Operation::Stop.name()));
    let describes = t.emu.emulator.calls(Operation::Describe.name());
    // wait for two resyncs to have happened (each Describes once)
    support::wait_for("two resyncs", Duration::from_secs(15), || async {
        (t.emu.emulator.calls(Operation::Describe.name()) >= describes + 2).then_some(())
    })
    .await;
    let now = t.get("inv").await;
    assert!(
        now.metadata.resource_version == rv,
        "no write in steady state:\nbefore {}\nafter {}",
        serde_json::to_string_pretty(&settled).unwrap(),
        serde_json::to_string_pretty(&now).unwrap()
    );
    assert_eq!(
        (t.emu.emulator.calls(Operation::Start.name()), t.emu.emulator.calls(Operation::Stop.name())),
        (starts, stops)
    );
}

#[tokio::test]
async fn examples_basic_then_stopped() {
    let t = Test::new("examples", cfg()).await;
    let _op = t.operator(|_| {}).await;
    let name = t.apply_example("basic.yaml", "", |_| {}).await;
    t.wait_ready(&name).await;
    let stopped_name = t.apply_example("stopped.yaml", "", |_| {}).await;
    assert_eq!(stopped_name, name, "stopped.yaml stops the export basic.yaml started");
    t.wait_status(&name, "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE") && s.is_true(CONDITION_READY))
        .await;
}

#[tokio::test]
async fn stopped_on_creation_starts_nothing() {
    let t = Test::new("nostart", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.create("idle", json!({"stopped": true})).await;
    let st = t.wait_ready("idle").await.status.unwrap();
    assert_eq!(st.condition(CONDITION_READY).unwrap().reason, "NotStarted");
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 0);
}

#[tokio::test]
async fn crash_between_start_and_status_write_leaves_one_export() {
    let t = Test::new("crash", cfg()).await;
    // Start takes effect at once but answers after 5 s: the operator is killed meanwhile.
    t.emu.emulator.inject_fault(Fault::new(Some(Operation::Start.name()), FaultKind::Latency { ms: 5000 }).times(1));
    let mut first = t.operator_process().await;
    t.create("inv", json!({})).await;
    support::wait_for("start-pending annotation", Duration::from_secs(30), || async {
        let o = t.get("inv").await;
        o.metadata.annotations.unwrap_or_default().contains_key("adsexport.io/start-pending").then_some(())
    })
    .await;
    support::wait_for("the Start call to take effect", Duration::from_secs(10), || async {
        (t.emu.emulator.exports().len() == 1).then_some(())
    })
    .await;
    first.kill().await;
    let o = t.get("inv").await;
    assert!(o.status.and_then(|s| s.export_id).is_none(), "killed before status was written");

    let _second = t.operator_process().await;
    let st = t.wait_ready("inv").await.status.unwrap();
    let exports = t.emu.emulator.exports();
    assert_eq!(exports.len(), 1, "exactly one export: {exports:?}");
    assert_eq!(st.export_id.as_deref(), Some(exports[0].export_id.as_str()));
    // The emulator counts a call when it takes effect: the first Start is counted
    // although its answer was cut off by the kill; a second would make it 2.
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 1, "no second Start");
    support::wait_for("the start-pending annotation to go", DEADLINE, || async {
        let o = t.get("inv").await;
        (!o.metadata.annotations.unwrap_or_default().contains_key("adsexport.io/start-pending")).then_some(())
    })
    .await;
    t.expect_event("inv", "Recovered").await;
}

#[tokio::test]
async fn crd_files_match_generated() {
    for name in ads_export_operator::api::CRD_NAMES {
        let generated = ads_export_operator::api::crd_yaml_named(name).expect("a known CRD").unwrap();
        let path = support::repo_root().join(format!("crds/{name}.yaml"));
        assert!(
            std::fs::read_to_string(&path).unwrap_or_default() == generated,
            "{} is out of date: run `cargo run -- crd {name} > crds/{name}.yaml`",
            path.display()
        );
        let chart = support::repo_root().join(format!("charts/ads-export-operator/crds/{name}.yaml"));
        assert!(
            std::fs::read_to_string(&chart).unwrap_or_default() == generated,
            "{} is out of date: copy crds/{name}.yaml there",
            chart.display()
        );
    }
    let all = ads_export_operator::api::all_crds_yaml().unwrap();
    assert_eq!(all.matches("kind: CustomResourceDefinition").count(), 2, "`crd` prints both CRDs");
}

#[tokio::test]
async fn unknown_region_in_spec_is_rejected_by_schema() {
    let t = Test::new("region", cfg()).await;
    let err = t.try_create("bad", json!({"region": "Mars 1"})).await.unwrap_err();
    assert!(err.contains("spec.region"), "{err}");
    t.create("ok", json!({"region": REGION})).await;
    let err = t.try_patch_spec("ok", json!({"region": "eu-west-1"})).await.unwrap_err();
    assert!(err.contains("spec.region is immutable"), "{err}");
}

#[tokio::test]
async fn two_objects_cannot_manage_one_export_until_the_first_is_gone() {
    let t = Test::new("dup", cfg()).await;
    let _op = t.operator(|s| s.resync_period = Duration::from_secs(2)).await;
    t.create("first", json!({"deletionPolicy": "Retain"})).await;
    let id = t.wait_ready("first").await.status.unwrap().export_id.unwrap();
    t.create("second", json!({"exportId": id})).await;
    let st = t.wait_status("second", "Stalled", |s| s.is_true(CONDITION_STALLED)).await.status.unwrap();
    let stalled = st.condition(CONDITION_STALLED).unwrap();
    assert_eq!(stalled.reason, "AlreadyManaged");
    assert!(stalled.message.contains(&format!("already managed by ContinuousExport {}/first", t.ns)), "{stalled:?}");
    assert!(!st.is_true(CONDITION_READY));
    t.expect_event("second", "AlreadyManaged").await;

    // The first lets go (Retain): the second adopts the export at its next resync.
    t.api.delete("first", &DeleteParams::default()).await.unwrap();
    t.wait_gone("first").await;
    let st = t.wait_ready("second").await.status.unwrap();
    assert_eq!(st.export_id.as_deref(), Some(id.as_str()));
    assert!(!st.is_true(CONDITION_STALLED));
    assert_eq!(t.export_status(&id), "ACTIVE");
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 0);
}

#[tokio::test]
async fn start_is_never_retried_by_the_sdk() {
    // The binary uses the SDK's standard retry policy, except for Start: a retried
    // Start after a lost answer would conflict with the export the first one created.
    let t = Test::new("noretry", cfg()).await;
    t.emu.emulator.inject_fault(Fault::new(Some(Operation::Start.name()), FaultKind::Http { status: 503 }).times(1));
    let _op = t.operator_process().await;
    t.create("inv", json!({})).await;
    t.wait_ready("inv").await;
    // the 503 reached the controller (an SDK retry would have hidden it) ...
    t.expect_event("inv", "ServerError").await;
    // ... which started again itself, once
    assert_eq!(t.emu.emulator.exports().len(), 1);
    assert_eq!(t.emu.emulator.counters().get(Operation::Start.name(), "ok"), 1);
}

#[tokio::test]
async fn export_id_can_only_be_set_at_creation() {
    let t = Test::new("idlater", cfg()).await;
    t.create("plain", json!({})).await;
    let err = t.try_patch_spec("plain", json!({"exportId": "export-x"})).await.unwrap_err();
    assert!(err.contains("can only be set when the ContinuousExport is created"), "{err}");
    let err = t.try_create("empty", json!({"exportId": ""})).await.unwrap_err();
    assert!(err.contains("spec.exportId"), "{err}");
}

#[tokio::test]
async fn objects_adopting_one_export_at_once_leave_exactly_one_owner() {
    let t = Test::new("adoptrace", cfg()).await;
    let id = t.start_export_out_of_band().await;
    let names = ["r1", "r2", "r3"];
    for n in names {
        t.create(n, json!({"exportId": id, "deletionPolicy": "Delete"})).await;
    }
    let _op = t.operator(|s| s.max_concurrent_reconciles = 3).await;
    let (owner, others) = support::wait_for_ok("one owner, two stalled", DEADLINE, || async {
        let mut ready = Vec::new();
        let mut stalled = Vec::new();
        for n in names {
            let st = t.get(n).await.status.unwrap_or_default();
            if st.is_true(CONDITION_READY) && st.export_id.as_deref() == Some(id.as_str()) {
                ready.push(n);
            } else if st.is_true(CONDITION_STALLED) && st.export_id.is_none() {
                stalled.push(n);
            }
        }
        match (ready.as_slice(), stalled.len()) {
            ([owner], 2) => Ok((*owner, stalled)),
            _ => Err(format!("ready {ready:?}, stalled {stalled:?}")),
        }
    })
    .await;
    for n in &others {
        t.api.delete(n, &DeleteParams::default()).await.unwrap();
        t.wait_gone(n).await;
    }
    assert_eq!(t.export_status(&id), "ACTIVE", "deleting the refused objects must not stop the owner's export");
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), 0);
    assert!(t.get(owner).await.status.unwrap().is_true(CONDITION_READY));
}
