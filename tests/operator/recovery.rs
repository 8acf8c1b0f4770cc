//! Recovery from AWS answers that hide what happened: a call that took effect but
//! whose answer was an error.

use ads_export_operator::ads::aws::op;
use ads_export_operator::emulator::{Fault, FaultKind};
use kube::api::DeleteParams;
use serde_json::json;

use super::harness::*;
use super::support;

const START_PENDING: &str = "adsexport.io/start-pending";

#[tokio::test]
async fn start_answered_500_after_creating_the_export_is_recovered_not_duplicated() {
    let t = Test::new("recover5xx", cfg()).await;
    // The first Start creates an export, then answers HTTP 500: the operator must not
    // take the 500 as "nothing happened".
    t.emu.emulator.inject_fault(Fault::new(Some(op::START), FaultKind::Http { status: 500 }).times(1).after_effect());
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
    assert_eq!(counters.get(op::START, "http500"), 1);
    assert_eq!(counters.get(op::START, "ok"), 0, "no second successful Start: {counters:?}");
    assert_eq!(t.emu.emulator.calls(op::START), 1, "no second Start at all: {counters:?}");
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
