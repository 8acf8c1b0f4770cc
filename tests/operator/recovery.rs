//! Recovery from AWS answers that hide what happened (a call that took effect but
//! whose answer was an error), and from the failed states AWS documents a recovery for.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ads_export_operator::ads::Operation;
use ads_export_operator::api::{CONDITION_READY, CONDITION_STALLED, CONDITION_SYNCED, ContinuousExportStatus};
use ads_export_operator::emulator::{ExportStatus, Fault, FaultKind};
use futures::StreamExt;
use kube::api::DeleteParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::harness::*;
use super::support;

const START_PENDING: &str = "adsexport.io/start-pending";

#[tokio::test]
async fn start_answered_500_after_creating_the_export_is_recovered_not_duplicated() {
    let t = Test::new("recover5xx", cfg()).await;
    // The first Start creates an export, then answers HTTP 500: the operator must not
    // take the 500 as "nothing happened".
    t.emu.emulator.inject_fault(
        Fault::new(Some(Operation::Start.name()), FaultKind::Http { status: 500 }).times(1).after_effect(),
    );
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;

    let st = t.wait_ready("inv").await.status.unwrap();
    let exports = t.emu.emulator.exports();
    assert_eq!(exports.len(), 1, "exactly one export: {exports:?}");
    assert_eq!(st.export_id.as_deref(), Some(exports[0].export_id.as_str()), "manages the export the 500 hid");
    assert_eq!(st.export_status.as_deref(), Some("ACTIVE"));
    // The 500 reached the controller, which then found the export instead of starting again.
    t.expect_event("inv", "ServerError").await;
    t.expect_event("inv", "Recovered").await;
    let counters = t.emu.emulator.counters();
    assert_eq!(counters.get(Operation::Start.name(), "http500"), 1);
    assert_eq!(counters.get(Operation::Start.name(), "ok"), 0, "no second successful Start: {counters:?}");
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 1, "no second Start at all: {counters:?}");
    support::wait_for("the start-pending annotation to go", DEADLINE, || async {
        let o = t.get("inv").await;
        (!o.metadata.annotations.unwrap_or_default().contains_key(START_PENDING)).then_some(())
    })
    .await;

    // Deleting the object stops that export: nothing leaked.
    let id = exports[0].export_id.clone();
    t.api.delete("inv", &DeleteParams::default()).await.unwrap();
    t.wait_gone("inv").await;
    assert_eq!(t.export_status(&id), "INACTIVE");
    assert_eq!(t.emu.emulator.exports().len(), 1);
}

/// Every status object `name` is written with from now on, as a watch delivers them
/// (polling could miss a condition that holds for less than a poll interval). Stops
/// when dropped.
struct History {
    seen: Arc<Mutex<Vec<ContinuousExportStatus>>>,
    task: tokio::task::JoinHandle<()>,
}

impl History {
    fn record(t: &Test, name: &str) -> History {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(t.api.clone(), config).applied_objects();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    if let Ok(obj) = item {
                        seen.lock().unwrap().push(obj.status.unwrap_or_default());
                    }
                }
            }
        });
        History { seen, task }
    }

    /// The `(status, reason, message)` of condition `type_` in every recorded status,
    /// consecutive repeats dropped.
    fn condition(&self, type_: &str) -> Vec<(String, String, String)> {
        let mut out: Vec<(String, String, String)> = Vec::new();
        for st in self.seen.lock().unwrap().iter() {
            if let Some(c) = st.condition(type_) {
                let entry = (c.status.clone(), c.reason.clone(), c.message.clone());
                if out.last() != Some(&entry) {
                    out.push(entry);
                }
            }
        }
        out
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// AWS, ContinuousExportDescription.status: "STOP_FAILED - an error occurred stopping
/// the export. To recover, call stop-continuous-export again." The operator does, and
/// the object ends stopped.
#[tokio::test]
async fn stop_failed_is_stopped_again_and_ends_inactive() {
    let t = Test::new("stopfailed", cfg()).await;
    let _op = t
        .operator(|s| {
            s.backoff_base = Duration::from_millis(500);
            s.backoff_max = Duration::from_secs(2);
        })
        .await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();

    // Stops hold in STOP_IN_PROGRESS until the delay is lifted: time to make this one fail.
    t.emu.emulator.set_delays(Duration::ZERO, Duration::from_secs(3600));
    let history = History::record(&t, "inv");
    t.patch_spec("inv", json!({"stopped": true})).await;
    t.wait_status("inv", "STOP_IN_PROGRESS", |s| s.export_status.as_deref() == Some("STOP_IN_PROGRESS")).await;
    t.emu.emulator.set_status(&id, ExportStatus::StopFailed, Some("FIREHOSE_ROLE_MISSING")).unwrap();

    // The operator sees STOP_FAILED, says so, and sends Stop again, which ADS accepts.
    t.expect_event("inv", "StopFailed").await;
    support::wait_for("the second Stop", DEADLINE, || async {
        (t.emu.emulator.counters().get(Operation::Stop.name(), "ok") == 2).then_some(())
    })
    .await;
    assert_eq!(t.export_status(&id), "STOP_IN_PROGRESS");

    t.emu.emulator.set_delays(Duration::ZERO, Duration::ZERO);
    let done = t
        .wait_status("inv", "INACTIVE, Ready=True (Stopped), Synced=True", |s| {
            s.export_status.as_deref() == Some("INACTIVE")
                && s.condition(CONDITION_READY).is_some_and(|c| c.status == "True" && c.reason == "Stopped")
                && s.is_true(CONDITION_SYNCED)
        })
        .await;
    let st = done.status.unwrap();
    assert!(!st.is_true(CONDITION_STALLED), "{:?}", st.conditions);
    assert_eq!(st.status_detail.as_deref(), Some("Export was stopped by the user"));
    let e = t.emu.emulator.exports().into_iter().find(|e| e.export_id == id).unwrap();
    assert_eq!(st.stop_time.as_deref(), Some(format_ms(e.stop_time_ms.unwrap()).as_str()), "the second stop's time");

    // On the way, Synced went False with reason StopFailed, naming ADS's detail.
    let synced = history.condition(CONDITION_SYNCED);
    let failed = synced.iter().find(|(status, reason, _)| status == "False" && reason == "StopFailed");
    let (_, _, message) = failed.unwrap_or_else(|| panic!("Synced never had reason StopFailed: {synced:#?}"));
    assert!(message.contains("FIREHOSE_ROLE_MISSING") && message.contains("sent again"), "{message}");
    assert!(
        !synced.iter().any(|(_, reason, _)| reason == "OperationNotPermitted"),
        "ADS refused the second Stop: {synced:#?}"
    );

    // Exactly two Stops (the first, and the one after STOP_FAILED), no refusal.
    let counters = t.emu.emulator.counters();
    assert_eq!(counters.total(Operation::Stop.name()), 2, "{counters:?}");
    assert_eq!(t.emu.emulator.exports().len(), 1, "no export started: {counters:?}");
}

#[tokio::test]
async fn a_start_failed_export_is_replaced_by_a_new_one() {
    // AWS: "START_FAILED - ... To recover, call start-continuous-export again."
    let t = Test::new("startfailed", cfg()).await;
    t.emu.emulator.set_delays(Duration::from_secs(600), Duration::ZERO); // stays START_IN_PROGRESS
    let _op = t.operator(|_| {}).await;
    t.create("inv", json!({})).await;
    let first = t
        .wait_status("inv", "START_IN_PROGRESS", |s| s.export_status.as_deref() == Some("START_IN_PROGRESS"))
        .await
        .status
        .unwrap()
        .export_id
        .unwrap();
    t.emu.emulator.set_status(&first, ExportStatus::StartFailed, Some("ACCESS_DENIED")).unwrap();
    t.emu.emulator.set_delays(Duration::ZERO, Duration::ZERO);

    let obj = t
        .wait_status("inv", "a new export, ACTIVE", |s| {
            s.export_status.as_deref() == Some("ACTIVE") && s.export_id.as_deref().is_some_and(|id| id != first)
        })
        .await;
    assert!(obj.status.unwrap().is_true(CONDITION_READY));
    // The status write comes first and the annotation's removal second (crash safety),
    // so a read between the two still sees it: wait for the removal, with a deadline.
    t.wait_annotation_gone("inv", START_PENDING).await;
    t.expect_event("inv", "StartFailed").await;
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 2);
    assert_eq!(t.export_status(&first), "START_FAILED", "the failed one is left as ADS has it");
}
