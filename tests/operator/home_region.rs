//! The Migration Hub home region on the real bed: the operator binary, the emulator
//! serving ADS and Migration Hub Config (and STS GetCallerIdentity) on one port.

use ads_export_operator::api::CONDITION_SYNCED;
use ads_export_operator::emulator::{EmulatorConfig, Fault, FaultKind};
use kube::api::DeleteParams;
use serde_json::json;

use super::harness::*;
use super::support;

const HOME: &str = "eu-central-1";

/// The operator's `run` flags without `--aws-region`: objects without `spec.region`
/// run in the home region.
fn args_without_region(t: &Test) -> Vec<String> {
    let mut args = t.operator_args();
    let at = args.iter().position(|a| a == "--aws-region").expect("--aws-region in the default flags");
    args.drain(at..at + 2);
    args
}

async fn operator_without_region(t: &Test) -> Process {
    let kubeconfig = support::testbed().kubeconfig_path();
    t.spawn_operator("operator", &args_without_region(t), &[], kubeconfig).await
}

/// The `Synced` condition's message once its reason is `reason` and its message holds `text`.
async fn synced_message(t: &Test, name: &str, reason: &str, text: &str) -> String {
    let obj = t
        .wait_status(name, &format!("Synced {reason} saying {text:?}"), |s| {
            s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == reason && c.message.contains(text))
        })
        .await;
    obj.status.unwrap().condition(CONDITION_SYNCED).unwrap().message.clone()
}

async fn wait_log(op: &Process, text: &str) {
    support::wait_for_ok(&format!("{text:?} in the operator log"), DEADLINE, || async {
        if op.log_text().contains(text) { Ok(()) } else { Err(op.exited().unwrap_or_default()) }
    })
    .await;
}

#[tokio::test]
async fn without_a_region_objects_run_in_the_home_region() {
    let t = Test::new("hr-discover", EmulatorConfig { home_region: Some(HOME.into()), ..cfg() }).await;
    let _op = operator_without_region(&t).await;
    t.create("inv", json!({})).await;
    t.create("idle", json!({"stopped": true})).await;
    let obj = t.wait_ready("inv").await;
    let st = obj.status.unwrap();
    assert_eq!(st.region.as_deref(), Some(HOME));
    let id = st.export_id.expect("exportId");
    let exports = t.emu.emulator.exports();
    assert_eq!(
        exports.iter().map(|e| (e.export_id.as_str(), e.region.as_str())).collect::<Vec<_>>(),
        [(id.as_str(), HOME)]
    );
    let idle = t.wait_ready("idle").await;
    assert_eq!(idle.status.unwrap().region.as_deref(), Some(HOME));
    // looked up once for the account, not once per object or pass
    assert_eq!(t.emu.emulator.counters().get("GetHomeRegion", "ok"), 1);
}

#[tokio::test]
async fn a_home_region_set_elsewhere_is_named_in_the_condition() {
    let t = Test::new("hr-elsewhere", EmulatorConfig { home_region: Some(HOME.into()), ..cfg() }).await;
    let _op = t.operator_process().await; // --aws-region us-west-2
    t.create("pinned", json!({"region": "us-west-2"})).await;
    t.create("default", json!({})).await;
    let pinned = synced_message(&t, "pinned", "HomeRegionNotSet", "home region of this account").await;
    assert!(
        pinned.contains(&format!(
            "the Migration Hub home region of this account is {HOME}; set spec.region: {HOME} (spec.region is immutable"
        )),
        "{pinned}"
    );
    let default = synced_message(&t, "default", "HomeRegionNotSet", "home region of this account").await;
    assert!(
        default.contains(&format!(
            "create a new ContinuousExport with spec.region: {HOME} (spec.region is immutable), or start the operator \
             with --aws-region {HOME}"
        )),
        "{default}"
    );
    assert!(t.emu.emulator.exports().is_empty());
}

#[tokio::test]
async fn no_home_region_names_the_command_and_setting_one_recovers() {
    let t = Test::new("hr-none", EmulatorConfig { home_region: None, ..cfg() }).await;
    let _op = operator_without_region(&t).await;
    t.create("inv", json!({})).await;
    t.create("pinned", json!({"region": HOME})).await;
    let command = "aws migrationhub-config create-home-region-control --home-region";
    let inv = synced_message(&t, "inv", "HomeRegionNotSet", command).await;
    assert!(
        inv.contains(&format!("{command} <region> --target Type=ACCOUNT,Id=123456789012`")),
        "the account from STS GetCallerIdentity: {inv}"
    );
    let pinned = synced_message(&t, "pinned", "HomeRegionNotSet", command).await;
    assert!(pinned.contains(&format!("{command} {HOME} --target Type=ACCOUNT,Id=123456789012`")), "{pinned}");
    assert!(t.get("inv").await.status.unwrap().region.is_none(), "no region known yet");
    // one export per region: only `inv` is left to start one
    t.api.delete("pinned", &DeleteParams::default()).await.unwrap();
    t.wait_gone("pinned").await;

    // the home region is set (the admin call moves ADS and Migration Hub Config alike)
    let resp = reqwest::Client::new()
        .post(format!("{}/_emulator/home-region", t.emu.endpoint_url()))
        .json(&json!({"region": HOME}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let inv = t.wait_ready("inv").await;
    assert_eq!(inv.status.unwrap().region.as_deref(), Some(HOME));
    let exports = t.emu.emulator.exports();
    assert_eq!(exports.iter().map(|e| e.region.as_str()).collect::<Vec<_>>(), [HOME], "{exports:?}");
}

#[tokio::test]
async fn without_mgh_get_home_region_permission_the_old_message_stays_and_the_log_names_it() {
    let t = Test::new("hr-denied", EmulatorConfig { home_region: Some(HOME.into()), ..cfg() }).await;
    t.emu.emulator.inject_fault(Fault::new(
        Some("GetHomeRegion"),
        FaultKind::Error {
            name: "AccessDeniedException".into(),
            message: Some("User is not authorized to perform: mgh:GetHomeRegion".into()),
        },
    ));
    let op = operator_without_region(&t).await;
    t.create("inv", json!({})).await;
    t.create("pinned", json!({"region": "us-west-2"})).await;
    t.create("home", json!({"region": HOME})).await;
    let inv = synced_message(&t, "inv", "UnknownError", "no AWS region").await;
    assert!(inv.contains("start the operator with --aws-region"), "{inv}");
    let pinned = synced_message(&t, "pinned", "HomeRegionNotSet", "").await;
    assert!(!pinned.contains("home region of this account"), "ADS's own message: {pinned}");
    assert!(pinned.contains("The request was sent to us-west-2"), "{pinned}");
    wait_log(&op, "missing IAM permission mgh:GetHomeRegion").await;
    // nothing else breaks: an object in the home region runs
    let home = t.wait_ready("home").await;
    assert_eq!(home.status.unwrap().region.as_deref(), Some(HOME));
    assert!(t.emu.emulator.counters().get("GetHomeRegion", "AccessDeniedException") >= 1);
}
