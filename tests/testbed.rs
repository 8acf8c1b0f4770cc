//! Proves the test bed behaves like a real control plane: CRDs with a status
//! subresource and CEL validation, RBAC, and the bundled kubectl and helm.
//! Uses a throwaway CRD in its own API group, independent of the operator.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use support::{api_resource, apply_crd, namespace, testbed, wait_for};

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.proof.testbed.io" },
        "spec": {
            "group": "proof.testbed.io",
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList"
            },
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["count"],
                            "properties": {
                                "count": { "type": "integer" },
                                "color": { "type": "string" }
                            },
                            "x-kubernetes-validations": [
                                { "rule": "self.count >= 0", "message": "count must not be negative" },
                                {
                                    "rule": "!has(oldSelf.color) || (has(self.color) && self.color == oldSelf.color)",
                                    "message": "color is immutable"
                                }
                            ]
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": { "type": "string" },
                                "observedCount": { "type": "integer" }
                            }
                        }
                    }
                }}
            }]
        }
    }))
    .expect("valid CRD")
}

fn widget(name: &str, count: i64, color: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "proof.testbed.io/v1alpha1",
        "kind": "Widget",
        "metadata": { "name": name },
        "spec": { "count": count, "color": color }
    }))
    .expect("valid object")
}

/// The apiserver's rejection of a request, as (HTTP code, message).
fn rejection<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("expected the apiserver to reject the request, got {other:?}"),
    }
}

fn pinned(key: &str) -> String {
    let env = std::fs::read_to_string(support::repo_root().join("hack/versions.env")).expect("hack/versions.env");
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in hack/versions.env"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn crd_with_status_subresource_and_cel_rules() {
    let bed = testbed();
    let client = bed.client().await;
    let crd = widget_crd();
    apply_crd(&client, &crd).await;
    apply_crd(&client, &crd).await; // re-applying is a no-op

    let ns = namespace(&client, "proof").await;
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &api_resource(&crd));

    // Create.
    let created = widgets.create(&PostParams::default(), &widget("w1", 1, "red")).await.expect("create widget");
    assert_eq!(created.data["spec"], json!({ "count": 1, "color": "red" }));

    // The status subresource stores status and ignores spec changes.
    let patched = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "spec": { "count": 99 },
                "status": { "phase": "Ready", "observedCount": 1 }
            })),
        )
        .await
        .expect("patch status");
    assert_eq!(patched.data["spec"]["count"], json!(1));
    assert_eq!(patched.data["status"]["phase"], json!("Ready"));
    let stored = widgets.get("w1").await.expect("get widget");
    assert_eq!(stored.data["spec"], json!({ "count": 1, "color": "red" }));
    assert_eq!(stored.data["status"], json!({ "phase": "Ready", "observedCount": 1 }));

    // And the main resource ignores status changes.
    let after_spec_patch = widgets
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "count": 2 }, "status": { "phase": "Hacked" } })),
        )
        .await
        .expect("patch spec");
    assert_eq!(after_spec_patch.data["spec"]["count"], json!(2));
    assert_eq!(after_spec_patch.data["status"]["phase"], json!("Ready"));

    // CEL: a plain rule on create...
    let (code, message) = rejection(widgets.create(&PostParams::default(), &widget("w2", -1, "blue")).await);
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("count must not be negative"), "{message}");
    assert!(widgets.get_opt("w2").await.unwrap().is_none());

    // ...and a transition rule on update.
    let (code, message) = rejection(
        widgets.patch("w1", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "color": "green" } }))).await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("color is immutable"), "{message}");

    // Delete: without finalizers the object is gone.
    widgets.delete("w1", &DeleteParams::default()).await.expect("delete widget");
    wait_for("w1 to be gone", Duration::from_secs(10), || async {
        match widgets.get_opt("w1").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
    let (code, _) = rejection(widgets.get("w1").await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn rbac_is_enforced() {
    let bed = testbed();
    let admin: Api<Namespace> = Api::all(bed.client().await);
    let names: Vec<String> = admin
        .list(&ListParams::default())
        .await
        .expect("admin lists namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "default"), "{names:?}");

    let nobody: Api<Namespace> = Api::all(bed.client_for("nobody").await);
    let (code, message) = rejection(nobody.list(&ListParams::default()).await);
    assert_eq!(code, 403, "{message}");
    assert!(message.contains("\"nobody\""), "{message}");
}

#[test]
fn kubectl_talks_to_the_bed() {
    let bed = testbed();
    let out = bed.command(bed.kubectl()).args(["version", "-o", "json"]).output().expect("run kubectl");
    assert!(out.status.success(), "kubectl version failed: {}", String::from_utf8_lossy(&out.stderr));
    let version: Value = serde_json::from_slice(&out.stdout).expect("kubectl json");
    let kube = pinned("KUBE_VERSION");
    assert_eq!(version["clientVersion"]["gitVersion"], json!(kube), "{version}");
    assert_eq!(version["serverVersion"]["gitVersion"], json!(kube), "{version}");

    let out = bed
        .command(bed.kubectl())
        .args(["--kubeconfig"])
        .arg(bed.kubeconfig_path())
        .args(["get", "namespace", "default", "-o", "name"])
        .output()
        .expect("run kubectl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn helm_runs_against_the_bed() {
    let bed = testbed();
    let out = bed.command(bed.helm()).args(["version", "--short"]).output().expect("run helm");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.starts_with("v4."),
        "helm version: {version} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = bed.command(bed.helm()).args(["list", "--all-namespaces", "-o", "json"]).output().expect("run helm");
    assert!(out.status.success(), "helm list failed: {}", String::from_utf8_lossy(&out.stderr));
    let releases: Value = serde_json::from_slice(&out.stdout).expect("helm json");
    assert!(releases.is_array(), "{releases}");
}
