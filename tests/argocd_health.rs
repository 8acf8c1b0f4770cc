//! The Argo CD health check in `examples/argocd/health.lua`, run in Lua 5.1 (the
//! dialect of Argo CD's gopher-lua) with only the libraries Argo CD opens,
//! against sample ContinuousExports: every status-to-health rule, its
//! precedence, and the `argocd-cm` patch that ships the script.

use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Table};
use serde_json::{Value, json};

const SCRIPT: &str = include_str!("../examples/argocd/health.lua");
const CM_PATCH: &str = include_str!("../examples/argocd/argocd-cm-patch.yaml");
const CM_KEY: &str = "resource.customizations.health.adsexport.io_ContinuousExport";

/// Runs the script the way Argo CD does (`obj` global, returns `{status, message}`).
fn health(obj: &Value) -> (String, String) {
    // Base functions plus table/string/math, as in Argo CD: no os, io or package.
    let lua =
        Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::default()).expect("create Lua state");
    // JSON null must become nil, as in Argo CD (which converts via Go maps).
    let options = SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false);
    let value = lua.to_value_with(obj, options).expect("JSON to Lua");
    lua.globals().set("obj", value).expect("set obj");
    let hs: Table =
        lua.load(SCRIPT).set_name("health.lua").eval().unwrap_or_else(|e| panic!("health.lua failed on {obj}: {e}"));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: String = hs.get("message").expect("hs.message is a string");
    (status, message)
}

#[track_caller]
fn assert_health(obj: Value, status: &str, message: &str) {
    let got = health(&obj);
    assert_eq!(got, (status.to_string(), message.to_string()), "health of {obj:#}");
}

/// A ContinuousExport at `generation` with the given status (`Value::Null`: none).
fn cex(generation: i64, status: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "adsexport.io/v1alpha1",
        "kind": "ContinuousExport",
        "metadata": {
            "name": "inventory-export",
            "namespace": "discovery",
            "generation": generation,
            "finalizers": ["adsexport.io/stop-export"],
        },
        "spec": { "stopped": false, "deletionPolicy": "Delete" },
    });
    if !status.is_null() {
        obj["status"] = status;
    }
    obj
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    })
}

/// A status for generation 1 with the given export status and conditions.
fn status(export_status: Option<&str>, conditions: Vec<Value>) -> Value {
    let mut s = json!({ "observedGeneration": 1, "conditions": conditions });
    if let Some(es) = export_status {
        s["exportId"] = json!("export-1a2b3c4d");
        s["exportStatus"] = json!(es);
    }
    s
}

#[test]
fn no_status_is_progressing() {
    assert_health(cex(1, Value::Null), "Progressing", "Waiting for status");
}

#[test]
fn null_status_is_progressing() {
    let mut obj = cex(1, Value::Null);
    obj["status"] = Value::Null;
    assert_health(obj, "Progressing", "Waiting for status");
}

#[test]
fn status_without_observed_generation_is_progressing() {
    assert_health(
        cex(1, json!({ "conditions": [] })),
        "Progressing",
        "Waiting for the operator to observe generation 1",
    );
}

#[test]
fn stale_status_is_progressing_even_if_it_said_ready() {
    let s = status(Some("ACTIVE"), vec![cond("Ready", "True", "Active", "Export export-1a2b3c4d is ACTIVE")]);
    assert_health(cex(2, s), "Progressing", "Waiting for the operator to observe generation 2");
}

#[test]
fn stalled_is_degraded_with_its_message() {
    let s = status(
        None,
        vec![
            cond("Ready", "False", "NotFound", "export e-123 does not exist"),
            cond("Synced", "False", "NotFound", "export e-123 does not exist"),
            cond("Reconciling", "False", "NotFound", ""),
            cond("Stalled", "True", "NotFound", "export e-123 does not exist"),
        ],
    );
    assert_health(cex(1, s), "Degraded", "export e-123 does not exist");
}

#[test]
fn stalled_without_message_falls_back_to_reason() {
    let s = status(None, vec![cond("Stalled", "True", "InvalidParameter", "")]);
    assert_health(cex(1, s), "Degraded", "InvalidParameter");
}

#[test]
fn stalled_wins_over_ready() {
    let s = status(
        Some("ACTIVE"),
        vec![
            cond("Ready", "True", "Active", "Export export-1a2b3c4d is ACTIVE"),
            cond("Stalled", "True", "OperationNotPermitted", "not permitted"),
        ],
    );
    assert_health(cex(1, s), "Degraded", "not permitted");
}

#[test]
fn ready_is_healthy_with_its_message() {
    let s = status(
        Some("ACTIVE"),
        vec![
            cond("Ready", "True", "Active", "Export export-1a2b3c4d is ACTIVE"),
            cond("Synced", "True", "Succeeded", ""),
            cond("Reconciling", "False", "Active", ""),
            cond("Stalled", "False", "Active", ""),
        ],
    );
    assert_health(cex(1, s), "Healthy", "Export export-1a2b3c4d is ACTIVE");
}

#[test]
fn ready_without_message_describes_the_export() {
    let s = status(Some("ACTIVE"), vec![cond("Ready", "True", "Active", "")]);
    assert_health(cex(1, s), "Healthy", "Export export-1a2b3c4d is ACTIVE");
}

#[test]
fn stopped_and_inactive_is_healthy() {
    let mut obj = cex(
        2,
        json!({
            "observedGeneration": 2,
            "exportId": "export-1a2b3c4d",
            "exportStatus": "INACTIVE",
            "conditions": [cond("Ready", "True", "Stopped", "Export export-1a2b3c4d is stopped")],
        }),
    );
    obj["spec"]["stopped"] = json!(true);
    assert_health(obj, "Healthy", "Export export-1a2b3c4d is stopped");
}

#[test]
fn ready_wins_over_a_failed_export_status() {
    // Ready is the operator's verdict: exportStatus alone only matters without it.
    let mut s = status(Some("STOP_FAILED"), vec![cond("Ready", "True", "Stopped", "done")]);
    s["statusDetail"] = json!("S3 bucket is missing");
    assert_health(cex(1, s), "Healthy", "done");
}

#[test]
fn reconciling_is_progressing_with_its_message() {
    let s = status(
        Some("START_IN_PROGRESS"),
        vec![
            cond("Ready", "False", "Starting", "waiting for export-1a2b3c4d"),
            cond("Synced", "True", "Succeeded", ""),
            cond("Reconciling", "True", "Starting", "Export export-1a2b3c4d is START_IN_PROGRESS"),
            cond("Stalled", "False", "Starting", ""),
        ],
    );
    assert_health(cex(1, s), "Progressing", "Export export-1a2b3c4d is START_IN_PROGRESS");
}

#[test]
fn failed_call_being_retried_is_progressing() {
    let s = status(
        None,
        vec![
            cond("Ready", "False", "Throttled", "Rate exceeded"),
            cond("Synced", "False", "Throttled", "Rate exceeded"),
            cond("Reconciling", "True", "Throttled", "Rate exceeded; retrying at 2026-01-01T00:00:10Z"),
        ],
    );
    assert_health(cex(1, s), "Progressing", "Rate exceeded; retrying at 2026-01-01T00:00:10Z");
}

#[test]
fn failed_call_not_being_retried_is_degraded() {
    let s = status(
        Some("ACTIVE"),
        vec![
            cond("Ready", "False", "AuthorizationError", "not authorized"),
            cond(
                "Synced",
                "False",
                "AuthorizationError",
                "User is not authorized to perform discovery:DescribeContinuousExports",
            ),
            cond("Reconciling", "False", "AuthorizationError", ""),
        ],
    );
    assert_health(cex(1, s), "Degraded", "User is not authorized to perform discovery:DescribeContinuousExports");
}

#[test]
fn synced_false_without_message_falls_back_to_reason() {
    let s = status(None, vec![cond("Synced", "False", "Unreachable", "")]);
    assert_health(cex(1, s), "Degraded", "Unreachable");
}

#[test]
fn failed_export_status_without_ready_is_degraded() {
    for (export_status, detail, message) in [
        (
            "ERROR",
            Some("Kinesis Data Firehose delivery failed"),
            "Export is ERROR: Kinesis Data Firehose delivery failed",
        ),
        ("START_FAILED", None, "Export is START_FAILED"),
        ("STOP_FAILED", Some("Glue database in use"), "Export is STOP_FAILED: Glue database in use"),
    ] {
        let mut s = status(Some(export_status), vec![]);
        if let Some(d) = detail {
            s["statusDetail"] = json!(d);
        }
        assert_health(cex(1, s), "Degraded", message);

        // The same with Ready=False (and nothing else set) is still Degraded.
        let mut s = status(Some(export_status), vec![cond("Ready", "False", "Failed", "see statusDetail")]);
        if let Some(d) = detail {
            s["statusDetail"] = json!(d);
        }
        assert_health(cex(1, s), "Degraded", message);
    }
}

#[test]
fn anything_else_is_waiting() {
    // Ready=False with no transition under way and no error: not decided yet.
    let s = status(
        Some("ACTIVE"),
        vec![
            cond("Ready", "False", "Pending", "pending"),
            cond("Synced", "True", "Succeeded", ""),
            cond("Reconciling", "False", "Pending", ""),
        ],
    );
    assert_health(cex(1, s), "Progressing", "Waiting for status");
    // A current status with no conditions at all.
    assert_health(cex(1, json!({ "observedGeneration": 1 })), "Progressing", "Waiting for status");
}

#[test]
fn tolerates_odd_shapes() {
    // conditions not a list, entries that are not objects, no metadata.generation.
    let obj = json!({
        "metadata": { "name": "x" },
        "status": { "conditions": "oops", "exportStatus": "ACTIVE" },
    });
    assert_health(obj, "Progressing", "Waiting for status");
    let s = json!({ "observedGeneration": 1, "conditions": [1, "two", cond("Ready", "True", "Active", "ok")] });
    assert_health(cex(1, s), "Healthy", "ok");
}

#[test]
fn argocd_cm_patch_embeds_the_script_verbatim() {
    let cm: Value = serde_yaml::from_str(CM_PATCH).expect("argocd-cm-patch.yaml is YAML");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let embedded = cm["data"][CM_KEY].as_str().unwrap_or_else(|| panic!("data.{CM_KEY} missing"));
    assert!(
        embedded == SCRIPT,
        "examples/argocd/argocd-cm-patch.yaml is out of date: re-indent examples/argocd/health.lua \
         into data.\"{CM_KEY}\" (4 spaces)"
    );
}
