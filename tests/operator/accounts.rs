//! Many AWS accounts from one cluster (`ExportAccount`, `spec.accountRef`): the operator
//! binary with the emulator as ADS and as STS (`AWS_ENDPOINT_URL_STS`), its own identity a
//! static key of the emulator's default account, which each account's role trusts (its
//! account root, `arn:aws:iam::123456789012:root`). Each test labels its ExportAccounts
//! `adsexport.io/test: <namespace>` and the operator selects only those
//! (`--account-selector`), so tests running at once never see each other's accounts.

use ads_export_operator::api::{CONDITION_READY, CONDITION_STALLED, CONDITION_SYNCED, ExportAccount};
use ads_export_operator::emulator::identity::{ACCOUNT_ID, Role, StaticKey, account_root};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::harness::{DEADLINE, Process, Test, cfg};
use super::{REGION, support};

const TEST_LABEL: &str = "adsexport.io/test";
const ADS_OPERATIONS: [&str; 3] = ["StartContinuousExport", "DescribeContinuousExports", "StopContinuousExport"];

fn role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ads-export")
}

/// The emulator's trust policy for `account`'s role: the operator's account root, with
/// `external_id`; the account's home region is [`REGION`].
fn trust(t: &Test, account: &str, external_id: Option<&str>) {
    let role = Role {
        role_arn: role_arn(account),
        principals: vec![account_root(ACCOUNT_ID)],
        external_id: external_id.map(str::to_owned),
        ..Role::default()
    };
    t.emu.emulator.identity().set_role(role);
    t.emu.emulator.set_account_home_region(account, Some(REGION.into()));
}

fn accounts_api(t: &Test) -> Api<ExportAccount> {
    Api::all(t.client.clone())
}

/// The name of this test's ExportAccount `suffix` (unique: the namespace is).
fn name(t: &Test, suffix: &str) -> String {
    format!("{}-{suffix}", t.ns)
}

/// Creates ExportAccount `suffix` for AWS `account` with `spec` (roleArn filled in).
async fn create_account(t: &Test, suffix: &str, account: &str, mut spec: Value) {
    spec["roleArn"] = json!(role_arn(account));
    let body = json!({
        "apiVersion": "adsexport.io/v1alpha1", "kind": "ExportAccount",
        "metadata": {"name": name(t, suffix), "labels": {TEST_LABEL: t.ns}},
        "spec": spec,
    });
    let obj: ExportAccount = serde_json::from_value(body).unwrap();
    accounts_api(t)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create account {suffix}: {e}"));
}

/// The operator binary for this namespace, using and reconciling this test's accounts;
/// its static key (the harness's) is known to the emulated STS, in the default account.
async fn operator(t: &Test) -> Process {
    t.emu.emulator.identity().add_static_key(StaticKey {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "test-secret".into(),
        ..StaticKey::default()
    });
    let mut args = t.operator_args();
    let selector = format!("{TEST_LABEL}={}", t.ns);
    args.extend(["--account-selector", &selector, "--reconcile-accounts", "true"].map(str::to_owned));
    let sts = t.emu.endpoint_url();
    t.spawn_operator("accounts", &args, &[("AWS_ENDPOINT_URL_STS", &sts)], support::testbed().kubeconfig_path()).await
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until the object's condition `type_` has `status` and `reason`; returns its message.
async fn wait_condition(t: &Test, obj: &str, type_: &str, status: &str, reason: &str) -> String {
    let what = format!("{type_}={status} ({reason})");
    let o = t
        .wait_status(obj, &what, |s| s.condition(type_).is_some_and(|c| c.status == status && c.reason == reason))
        .await;
    o.status.unwrap().condition(type_).unwrap().message.clone()
}

/// Waits until ExportAccount `suffix` has `Ready` = `status` with `reason`.
async fn wait_account_ready(t: &Test, suffix: &str, status: &str, reason: &str) -> ExportAccount {
    let api = accounts_api(t);
    let n = name(t, suffix);
    support::wait_for_ok(&format!("ExportAccount {n}: Ready={status} ({reason})"), DEADLINE, || async {
        let a = api.get(&n).await.map_err(|e| e.to_string())?;
        let conditions = a.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        match condition(conditions, CONDITION_READY) {
            Some(c) if c.status == status && c.reason == reason => Ok(a),
            _ => Err(format!("{:#?}", a.status)),
        }
    })
    .await
}

/// ADS calls the emulator answered in `account`.
fn ads_calls(t: &Test, account: &str) -> u64 {
    let counters = t.emu.emulator.account_counters(account);
    ADS_OPERATIONS.iter().map(|op| counters.total(op)).sum()
}

/// Deletes this test's objects, then its accounts, and waits until they are gone.
async fn clean_up(t: &Test, objects: &[&str], accounts: &[&str]) {
    for o in objects {
        let _ = t.api.delete(o, &DeleteParams::default()).await;
    }
    for o in objects {
        t.wait_gone(o).await;
    }
    let api = accounts_api(t);
    for a in accounts {
        let _ = api.delete(&name(t, a), &DeleteParams::default()).await;
    }
    for a in accounts {
        let n = name(t, a);
        support::wait_for_ok(&format!("ExportAccount {n} deleted"), DEADLINE, || async {
            match api.get_opt(&n).await {
                Ok(None) => Ok(()),
                Ok(Some(a)) => Err(format!("still there: {:?}", a.status)),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }
}

#[tokio::test]
async fn three_accounts_each_hold_their_own_export_at_once_in_the_same_region() {
    let t = Test::new("acct-three", cfg()).await;
    let ids = ["111111111111", "222222222222", "333333333333"];
    for (i, id) in ids.iter().enumerate() {
        trust(&t, id, Some("ext-1"));
        create_account(&t, &format!("a{i}"), id, json!({"externalId": "ext-1", "allowedNamespaces": [t.ns]})).await;
    }
    let _op = operator(&t).await;
    for i in 0..3 {
        t.create(&format!("inv{i}"), json!({"accountRef": {"name": name(&t, &format!("a{i}"))}})).await;
    }
    let mut started = Vec::new();
    for i in 0..3 {
        started.push(t.wait_ready(&format!("inv{i}")).await.status.unwrap().export_id.unwrap());
    }
    let exports = t.emu.emulator.exports();
    for (i, id) in ids.iter().enumerate() {
        let theirs: Vec<_> = exports.iter().filter(|e| e.account_id == *id).collect();
        assert_eq!(theirs.len(), 1, "account {id} holds exactly its own export: {exports:?}");
        assert_eq!((theirs[0].export_id.as_str(), theirs[0].region.as_str()), (started[i].as_str(), REGION));
        assert_eq!(theirs[0].status.as_str(), "ACTIVE", "all three ACTIVE at once in {REGION}");
        let a = wait_account_ready(&t, &format!("a{i}"), "True", "Assumed").await;
        let s = a.status.unwrap();
        assert_eq!(s.account_id.as_deref(), Some(*id), "GetCallerIdentity with the assumed role");
        assert_eq!(s.in_use_by, Some(1));
        assert!(s.last_verified_time.is_some() && s.last_error.is_none(), "{s:?}");
    }
    assert!(exports.iter().all(|e| e.account_id != ACCOUNT_ID), "nothing in the operator's own account");
    clean_up(&t, &["inv0", "inv1", "inv2"], &["a0", "a1", "a2"]).await;
}

#[tokio::test]
async fn a_namespace_not_allowed_stalls_without_an_ads_call_until_the_account_allows_it() {
    let t = Test::new("acct-deny", cfg()).await;
    let id = "444444444444";
    trust(&t, id, None);
    create_account(&t, "a", id, json!({"allowedNamespaces": ["somewhere-else"]})).await;
    let _op = operator(&t).await;
    t.create("inv", json!({"accountRef": {"name": name(&t, "a")}})).await;
    let msg = wait_condition(&t, "inv", CONDITION_STALLED, "True", "AccountNotAllowed").await;
    assert!(msg.contains(&format!("ExportAccount {} does not allow namespace {}", name(&t, "a"), t.ns)), "{msg}");
    // The account itself is verified (STS) by its reconciler; the object made no ADS call.
    wait_account_ready(&t, "a", "True", "Assumed").await;
    assert_eq!(ads_calls(&t, id), 0, "no ADS call for a namespace the account does not allow");
    assert_eq!(ads_calls(&t, ACCOUNT_ID), 0, "nor with the operator's own identity");
    // The grant reconciles the object at once (its stall is otherwise looked at every 10 min).
    let patch = json!({"spec": {"allowedNamespaces": ["somewhere-else", t.ns]}});
    accounts_api(&t).patch(&name(&t, "a"), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    t.wait_ready("inv").await;
    assert!(t.emu.emulator.exports().iter().any(|e| e.account_id == id), "started in the account");
    clean_up(&t, &["inv"], &["a"]).await;
}

#[tokio::test]
async fn a_missing_account_is_found_as_soon_as_it_is_created() {
    let t = Test::new("acct-late", cfg()).await;
    let id = "555555555555";
    trust(&t, id, None);
    let _op = operator(&t).await;
    t.create("inv", json!({"accountRef": {"name": name(&t, "a")}})).await;
    let msg = wait_condition(&t, "inv", CONDITION_STALLED, "True", "AccountNotFound").await;
    assert!(msg.contains(&format!("ExportAccount {} (spec.accountRef.name) does not exist", name(&t, "a"))), "{msg}");
    create_account(&t, "a", id, json!({"allowedNamespaces": [t.ns]})).await;
    t.wait_ready("inv").await;
    clean_up(&t, &["inv"], &["a"]).await;
}

#[tokio::test]
async fn a_broken_trust_policy_stalls_only_its_own_objects_and_recovers_when_fixed() {
    let t = Test::new("acct-trust", cfg()).await;
    let (good, bad) = ("666666666666", "777777777777");
    trust(&t, good, None);
    trust(&t, bad, Some("the-right-one"));
    create_account(&t, "good", good, json!({"allowedNamespaces": [t.ns]})).await;
    create_account(&t, "bad", bad, json!({"externalId": "a-wrong-one", "allowedNamespaces": [t.ns]})).await;
    let _op = operator(&t).await;
    t.create("ok", json!({"accountRef": {"name": name(&t, "good")}})).await;
    t.create("broken", json!({"accountRef": {"name": name(&t, "bad")}})).await;
    t.wait_ready("ok").await;
    let msg = wait_condition(&t, "broken", CONDITION_SYNCED, "False", "AuthorizationError").await;
    assert!(msg.contains(&format!("could not assume role {}", role_arn(bad))), "{msg}");
    let a = wait_account_ready(&t, "bad", "False", "AuthorizationError").await;
    assert!(a.status.unwrap().last_error.unwrap().contains("AccessDenied"), "STS's code");
    assert_eq!(ads_calls(&t, bad), 0, "nothing reached ADS in the broken account");
    // Fixed: the role now trusts the external ID the account sends.
    trust(&t, bad, Some("a-wrong-one"));
    t.wait_ready("broken").await;
    wait_account_ready(&t, "bad", "True", "Assumed").await;
    clean_up(&t, &["ok", "broken"], &["good", "bad"]).await;
}

#[tokio::test]
async fn one_throttled_account_does_not_slow_the_others() {
    let t = Test::new("acct-throttle", cfg()).await;
    let (slow, fast) = ("888888888888", "999999999999");
    trust(&t, slow, None);
    trust(&t, fast, None);
    // The slow account answers ThrottlingException to every ADS call until lifted.
    t.emu.emulator.set_account_rate_limit(slow, Some(0.001));
    create_account(&t, "slow", slow, json!({"allowedNamespaces": [t.ns]})).await;
    create_account(&t, "fast", fast, json!({"allowedNamespaces": [t.ns]})).await;
    let _op = operator(&t).await;
    t.create("throttled", json!({"accountRef": {"name": name(&t, "slow")}})).await;
    t.create("free", json!({"accountRef": {"name": name(&t, "fast")}})).await;
    t.wait_ready("free").await;
    let fast_counters = t.emu.emulator.account_counters(fast);
    let throttled_fast: u64 = ADS_OPERATIONS.iter().map(|op| fast_counters.get(op, "ThrottlingException")).sum();
    assert_eq!(throttled_fast, 0, "the other account is not throttled: {fast_counters:?}");
    support::wait_for("a throttled call in the slow account", DEADLINE, || async {
        let c = t.emu.emulator.account_counters(slow);
        (ADS_OPERATIONS.iter().map(|op| c.get(op, "ThrottlingException")).sum::<u64>() > 0).then_some(())
    })
    .await;
    t.emu.emulator.set_account_rate_limit(slow, None);
    t.wait_ready("throttled").await;
    clean_up(&t, &["throttled", "free"], &["slow", "fast"]).await;
}

#[tokio::test]
async fn deleting_an_account_in_use_waits_for_its_objects() {
    let t = Test::new("acct-del", cfg()).await;
    let id = "121212121212";
    trust(&t, id, None);
    create_account(&t, "a", id, json!({"allowedNamespaces": [t.ns]})).await;
    let _op = operator(&t).await;
    t.create("inv", json!({"accountRef": {"name": name(&t, "a")}})).await;
    t.wait_ready("inv").await;
    let api = accounts_api(&t);
    api.delete(&name(&t, "a"), &DeleteParams::default()).await.unwrap();
    let a = wait_account_ready(&t, "a", "False", "InUse").await;
    let message = condition(&a.status.unwrap().conditions, CONDITION_READY).unwrap().message.clone();
    assert_eq!(message, format!("deletion waits for 1 ContinuousExports: {}/inv", t.ns));
    assert!(a.metadata.deletion_timestamp.is_some(), "marked, kept by its finalizer");
    // The object's deletion stops its export with the account's credentials, then lets the account go.
    clean_up(&t, &["inv"], &["a"]).await;
    let exports = t.emu.emulator.exports();
    assert!(exports.iter().filter(|e| e.account_id == id).all(|e| e.status.as_str() != "ACTIVE"), "{exports:?}");
}

/// Merge-patches the labels of this test's namespace.
async fn label_namespace(t: &Test, labels: Value) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(t.client.clone());
    let patch = json!({"metadata": {"labels": labels}});
    api.patch(&t.ns, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test]
async fn a_namespace_label_grants_the_account_at_once_and_a_revoked_grant_releases_without_an_aws_call() {
    let t = Test::new("acct-label", cfg()).await;
    let id = "131313131313";
    trust(&t, id, None);
    let selector = json!({"matchLabels": {"adsexport.io/account-grant": t.ns}});
    create_account(&t, "a", id, json!({"namespaceSelector": selector})).await;
    let _op = operator(&t).await;
    t.create("inv", json!({"accountRef": {"name": name(&t, "a")}})).await;
    wait_condition(&t, "inv", CONDITION_STALLED, "True", "AccountNotAllowed").await;
    assert_eq!(ads_calls(&t, id), 0);
    // The label matches the selector: the namespace's watch reconciles the object at once.
    label_namespace(&t, json!({"adsexport.io/account-grant": t.ns})).await;
    let id_started = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    // The label is removed (the grant revoked), then the object deleted: no AWS call,
    // the finalizer released, a Warning names the export left running.
    label_namespace(&t, json!({"adsexport.io/account-grant": null})).await;
    wait_condition(&t, "inv", CONDITION_STALLED, "True", "AccountNotAllowed").await;
    let before = ads_calls(&t, id);
    t.api.delete("inv", &DeleteParams::default()).await.unwrap();
    t.wait_gone("inv").await;
    t.expect_event("inv", "AccountNotAllowed").await;
    assert_eq!(ads_calls(&t, id), before, "no ADS call for the revoked namespace's deletion");
    let left = t.emu.emulator.exports().into_iter().find(|e| e.export_id == id_started).expect("the export");
    assert_eq!(left.status.as_str(), "ACTIVE", "left running, as the Warning says");
    clean_up(&t, &[], &["a"]).await;
}
