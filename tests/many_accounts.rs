//! Issue 13's end-to-end test of many accounts: ONE operator binary watching ALL
//! namespaces serves three AWS accounts (three `ExportAccount`s) and six namespaces, two
//! per account (one granted by name, one by a namespace label), plus a seventh namespace
//! no account allows, on the real bed with the emulator as ADS and STS.
//!
//! Its own test binary: an all-namespace operator would take over the objects of the
//! concurrently running tests in `tests/operator` (cargo runs test binaries one after
//! another). Its cluster-scoped objects (ExportAccounts, the admission policy and its
//! binding) have names unique to the run; the binding matches only the seventh
//! namespace, so a leftover cannot refuse another binary's writes. [`Cleanup`] removes
//! them also when an assertion fails.

#[path = "support/mod.rs"]
mod support;

#[path = "operator/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::process::Stdio;
use std::time::Duration;

use ads_export_operator::api::{CONDITION_READY, CONDITION_STALLED, CONDITION_SYNCED, ContinuousExport, ExportAccount};
use ads_export_operator::emulator::identity::{ACCOUNT_ID, Role, StaticKey, account_root};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

use harness::{Process, Test, cfg};

const REGION: &str = "us-west-2";
/// Generous: one operator serves everything on a shared 2-core machine.
const DEADLINE: Duration = Duration::from_secs(120);
/// The label the operator's `--account-selector` selects (value: the run's name).
const TEST_LABEL: &str = "adsexport.io/test";
/// The namespace label each account's `namespaceSelector` matches (value: `<run>-<account>`).
const GRANT_LABEL: &str = "adsexport.io/many-accounts-grant";
const ADS_OPERATIONS: [&str; 3] = ["StartContinuousExport", "DescribeContinuousExports", "StopContinuousExport"];
/// Lifetime of the credentials the emulated STS issues: short, so the SDK re-assumes the
/// roles while the test runs and a broken trust policy shows.
const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(30);

/// One AWS account of the test: its `ExportAccount` and its two namespaces.
struct Account {
    key: &'static str,
    id: &'static str,
    external_id: Option<&'static str>,
    /// Granted by `spec.allowedNamespaces`; its object is created first.
    by_name: String,
    /// Granted by `spec.namespaceSelector` (label [`GRANT_LABEL`]).
    by_label: String,
}

fn role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/ads-export")
}

/// The run's ExportAccount for `key` (unique: the run's namespace is).
fn account_name(run: &str, key: &str) -> String {
    format!("{run}-{key}")
}

/// Removes the run's cluster-scoped objects (the admission policy and binding, the
/// ExportAccounts, their finalizers first) and deletes its namespaces, on drop, so a
/// failed assertion leaves nothing that could refuse or confuse another test binary.
/// Everything is idempotent (`--ignore-not-found`); after a passing run there is
/// nothing left to remove but the namespaces (the bed never finishes deleting them).
#[derive(Default)]
struct Cleanup {
    admission: Vec<(String, String)>,
    accounts: Vec<String>,
    namespaces: Vec<String>,
}

impl Cleanup {
    fn kubectl(args: &[&str]) {
        let bed = support::testbed();
        let _ = bed.command(bed.kubectl()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, name) in &self.admission {
            Self::kubectl(&["delete", kind, name, "--ignore-not-found", "--wait=false"]);
        }
        let release = r#"{"metadata":{"finalizers":null}}"#;
        for ns in &self.namespaces {
            // The operator is gone once the test ends: release what it still guards.
            let bed = support::testbed();
            let out = bed.command(bed.kubectl()).args(["get", "continuousexports", "-n", ns, "-o", "name"]).output();
            for obj in out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default().lines() {
                Self::kubectl(&["patch", obj, "-n", ns, "--type=merge", "-p", release]);
            }
            Self::kubectl(&["delete", "namespace", ns, "--ignore-not-found", "--wait=false"]);
        }
        for a in &self.accounts {
            Self::kubectl(&["patch", "exportaccount", a, "--type=merge", "-p", release]);
            Self::kubectl(&["delete", "exportaccount", a, "--ignore-not-found", "--wait=false"]);
        }
    }
}

/// The emulated trust policy of `account`'s role: the operator's account root (its
/// static key's account), with `external_id`; the account's home region is [`REGION`].
fn trust(t: &Test, account: &Account, principals: Vec<String>) {
    let role = Role {
        role_arn: role_arn(account.id),
        principals,
        external_id: account.external_id.map(str::to_owned),
        ..Role::default()
    };
    t.emu.emulator.identity().set_role(role);
    t.emu.emulator.set_account_home_region(account.id, Some(REGION.into()));
}

async fn create_account(t: &Test, account: &Account) {
    let run = &t.ns;
    let mut spec = json!({
        "roleArn": role_arn(account.id),
        "allowedNamespaces": [account.by_name],
        "namespaceSelector": {"matchLabels": {GRANT_LABEL: account_name(run, account.key)}},
    });
    if let Some(e) = account.external_id {
        spec["externalId"] = json!(e);
    }
    let body = json!({
        "apiVersion": "adsexport.io/v1alpha1", "kind": "ExportAccount",
        "metadata": {"name": account_name(run, account.key), "labels": {TEST_LABEL: run}},
        "spec": spec,
    });
    let obj: ExportAccount = serde_json::from_value(body).unwrap();
    Api::<ExportAccount>::all(t.client.clone())
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create ExportAccount {}: {e}", account.key));
}

async fn label_namespace(client: &Client, ns: &str, labels: Value) {
    let patch = json!({"metadata": {"labels": labels}});
    Api::<Namespace>::all(client.clone()).patch(ns, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// The operator binary watching all namespaces, reconciling this run's ExportAccounts,
/// ADS and STS at the emulator; its static key (the harness's) is the emulator's default
/// account's. Resync every 10 s, so steady objects call ADS (and refresh credentials).
async fn operator(t: &Test) -> Process {
    t.emu.emulator.identity().add_static_key(StaticKey {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "test-secret".into(),
        ..StaticKey::default()
    });
    let url = t.emu.endpoint_url();
    let selector = format!("{TEST_LABEL}={}", t.ns);
    let args: Vec<String> = ["run", "--aws-region", REGION, "--aws-endpoint-url", &url, "--resync-period", "10s"]
        .into_iter()
        .chain(["--backoff-base", "500ms", "--backoff-max", "5s", "--metrics-addr", "127.0.0.1:0"])
        .chain(["--account-selector", &selector, "--reconcile-accounts", "true"])
        .map(str::to_owned)
        .collect();
    t.spawn_operator("all-namespaces", &args, &[("AWS_ENDPOINT_URL_STS", &url)], support::testbed().kubeconfig_path())
        .await
}

fn exports_in(client: &Client, ns: &str) -> Api<ContinuousExport> {
    Api::namespaced(client.clone(), ns)
}

async fn create_export(client: &Client, ns: &str, account: &str) {
    let body = json!({
        "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
        "metadata": {"name": "inv", "namespace": ns},
        "spec": {"accountRef": {"name": account}},
    });
    let obj: ContinuousExport = serde_json::from_value(body).unwrap();
    exports_in(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {ns}/inv: {e}"));
}

/// Waits until `ns/inv`'s condition `type_` has `status` and `reason` on the current
/// generation; returns the object.
async fn wait_condition(client: &Client, ns: &str, type_: &str, status: &str, reason: &str) -> ContinuousExport {
    let api = exports_in(client, ns);
    support::wait_for_ok(&format!("{ns}/inv: {type_}={status} ({reason})"), DEADLINE, || async {
        let o = api.get("inv").await.map_err(|e| e.to_string())?;
        let c = o.status.as_ref().and_then(|s| s.condition(type_));
        match c {
            Some(c) if c.status == status && c.reason == reason && c.observed_generation == o.metadata.generation => {
                Ok(o)
            }
            _ => Err(format!("{:#?}", o.status)),
        }
    })
    .await
}

fn message(o: &ContinuousExport, type_: &str) -> String {
    o.status.as_ref().and_then(|s| s.condition(type_)).map(|c| c.message.clone()).unwrap_or_default()
}

/// Waits until ExportAccount `name` has `Ready` = `status` with `reason`.
async fn wait_account(client: &Client, name: &str, status: &str, reason: &str) -> ExportAccount {
    let api = Api::<ExportAccount>::all(client.clone());
    support::wait_for_ok(&format!("ExportAccount {name}: Ready={status} ({reason})"), DEADLINE, || async {
        let a = api.get(name).await.map_err(|e| e.to_string())?;
        let conditions = a.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        match conditions.iter().find(|c| c.type_ == CONDITION_READY) {
            Some(c) if c.status == status && c.reason == reason => Ok(a),
            _ => Err(format!("{:#?}", a.status)),
        }
    })
    .await
}

async fn wait_account_gone(client: &Client, name: &str) {
    let api = Api::<ExportAccount>::all(client.clone());
    support::wait_for_ok(&format!("ExportAccount {name} deleted"), DEADLINE, || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(a)) => Err(format!("still there: {:#?}", a.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

async fn wait_export_gone(client: &Client, ns: &str) {
    let api = exports_in(client, ns);
    support::wait_for_ok(&format!("{ns}/inv deleted"), DEADLINE, || async {
        match api.get_opt("inv").await {
            Ok(None) => Ok(()),
            Ok(Some(o)) => Err(format!("still there: {:#?}", o.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

/// ADS calls the emulator answered in `account`.
fn ads_calls(t: &Test, account: &str) -> u64 {
    let counters = t.emu.emulator.account_counters(account);
    ADS_OPERATIONS.iter().map(|op| counters.total(op)).sum()
}

/// `GET /_emulator/exports`: every export, each with its `accountId`.
async fn emulator_exports(t: &Test) -> Vec<Value> {
    let url = format!("{}/_emulator/exports", t.emu.endpoint_url());
    reqwest::get(&url).await.unwrap().error_for_status().unwrap().json().await.unwrap()
}

/// `kubectl create` of `doc` as a server-side dry run: Ok, or Err with stderr.
fn dry_run_create(doc: &Value) -> Result<(), String> {
    let bed = support::testbed();
    let mut child = bed
        .command(bed.kubectl())
        .args(["create", "--dry-run=server", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(doc.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// The chart's ValidatingAdmissionPolicy and binding (`helm template --show-only`, as on
/// a cluster serving ValidatingAdmissionPolicy and the ExportAccount CRD), the binding
/// matching only namespace `ns` (`watchNamespace`), applied to the bed. Their (kind, name)s.
fn apply_admission_policy(ns: &str) -> Vec<(String, String)> {
    let bed = support::testbed();
    let chart = support::repo_root().join("charts/ads-export-operator");
    let out = bed
        .command(bed.helm())
        .args(["template", "many", chart.to_str().unwrap(), "--namespace", ns])
        .args(["--show-only", "templates/account-admission-policy.yaml"])
        .args(["--api-versions", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"])
        .args(["--api-versions", "adsexport.io/v1alpha1/ExportAccount"])
        .args(["--set", &format!("watchNamespace={ns}")])
        .output()
        .expect("helm");
    assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
    let yaml = String::from_utf8(out.stdout).unwrap();
    let mut applied = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let doc = Value::deserialize(doc).expect("a YAML document");
        if doc.is_null() {
            continue;
        }
        applied.push((doc["kind"].as_str().unwrap().to_owned(), doc["metadata"]["name"].as_str().unwrap().to_owned()));
    }
    let kinds: Vec<&str> = applied.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"], "{yaml}");
    let mut child = bed
        .command(bed.kubectl())
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl apply the policy: {}", String::from_utf8_lossy(&out.stderr));
    applied
}

fn not_allowed(account: &str, ns: &str) -> String {
    format!("ExportAccount {account} does not allow namespace {ns}")
}

#[tokio::test]
async fn one_operator_serves_three_accounts_in_six_namespaces_and_refuses_a_seventh() {
    let started = std::time::Instant::now();
    // The harness's namespace is the seventh, allowed by no account; its name names the run.
    let t = Test::new("many", cfg()).await;
    let client = t.client.clone();
    let run = t.ns.clone();
    let mut cleanup = Cleanup::default();
    cleanup.namespaces.push(run.clone());
    let specs = [("a", "111111111111", None), ("b", "222222222222", None), ("c", "333333333333", Some("ext-c"))];
    let mut accounts = Vec::new();
    for (key, id, external_id) in specs {
        let by_name = support::namespace(&client, &format!("many-{key}-name")).await;
        let by_label = support::namespace(&client, &format!("many-{key}-label")).await;
        cleanup.namespaces.extend([by_name.clone(), by_label.clone()]);
        label_namespace(&client, &by_label, json!({GRANT_LABEL: account_name(&run, key)})).await;
        accounts.push(Account { key, id, external_id, by_name, by_label });
    }
    t.emu.emulator.identity().set_lifetime(CREDENTIAL_LIFETIME);
    let operator_root = vec![account_root(ACCOUNT_ID)];
    for a in &accounts {
        trust(&t, a, operator_root.clone());
        cleanup.accounts.push(account_name(&run, a.key));
        create_account(&t, a).await;
    }
    let op = operator(&t).await;
    let name_of = |a: &Account| account_name(&run, a.key);
    let (a, b, c) = (&accounts[0], &accounts[1], &accounts[2]);

    // The seventh namespace, at admission: the chart's policy refuses it.
    cleanup.admission = apply_admission_policy(&run);
    let seventh = json!({
        "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
        "metadata": {"name": "inv", "namespace": run},
        "spec": {"accountRef": {"name": name_of(a)}},
    });
    support::wait_for_ok(&format!("the policy to refuse {run} naming {}", name_of(a)), DEADLINE, || async {
        match dry_run_create(&seventh) {
            Ok(()) => Err("admitted".to_owned()),
            Err(e) if e.contains(&not_allowed(&name_of(a), &run)) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await;
    // ... and, the binding removed, by the operator, without an ADS call in account A
    // (which holds nothing yet, so any call there would be this object's).
    let (binding_kind, binding) = cleanup.admission[1].clone();
    Cleanup::kubectl(&["delete", &binding_kind, &binding]);
    support::wait_for_ok("the policy's binding to be out of effect", DEADLINE, || async { dry_run_create(&seventh) })
        .await;
    create_export(&client, &run, &name_of(a)).await;
    let o = wait_condition(&client, &run, CONDITION_STALLED, "True", "AccountNotAllowed").await;
    let msg = message(&o, CONDITION_STALLED);
    assert!(msg.contains(&not_allowed(&name_of(a), &run)), "{msg}");
    wait_account(&client, &name_of(a), "True", "Assumed").await;
    assert_eq!(ads_calls(&t, a.id), 0, "no ADS call in account A for a namespace it does not allow");
    exports_in(&client, &run).delete("inv", &DeleteParams::default()).await.unwrap();
    wait_export_gone(&client, &run).await;
    assert_eq!(ads_calls(&t, a.id), 0, "its deletion made no ADS call either");
    eprintln!("seventh namespace refused at admission and by the operator after {:?}", started.elapsed());

    // Six namespaces: each account's first object (granted by name) starts its export...
    for acc in &accounts {
        create_export(&client, &acc.by_name, &name_of(acc)).await;
    }
    let mut ids = Vec::new();
    for acc in &accounts {
        let o = wait_condition(&client, &acc.by_name, CONDITION_READY, "True", "Active").await;
        ids.push(o.status.unwrap().export_id.expect("exportId"));
    }
    // ... and its second (granted by label) finds the account's region busy: Conflict,
    // StartContinuousExport not sent.
    for acc in &accounts {
        create_export(&client, &acc.by_label, &name_of(acc)).await;
    }
    for acc in &accounts {
        let o = wait_condition(&client, &acc.by_label, CONDITION_SYNCED, "False", "Conflict").await;
        let msg = message(&o, CONDITION_SYNCED);
        let owner = format!("managed by ContinuousExport {}/inv", acc.by_name);
        assert!(msg.contains(&owner) && msg.contains("StartContinuousExport not sent"), "{msg}");
        assert_eq!(msg.matches("one active export per region").count(), 1, "said once: {msg}");
        assert!(!o.status.unwrap().is_true(CONDITION_READY));
    }
    let exports = emulator_exports(&t).await;
    for (acc, id) in accounts.iter().zip(&ids) {
        let theirs: Vec<&Value> = exports.iter().filter(|e| e["accountId"] == acc.id).collect();
        assert_eq!(theirs.len(), 1, "account {} holds exactly one export: {exports:#?}", acc.id);
        assert_eq!(theirs[0]["exportId"], id.as_str());
        assert_eq!((theirs[0]["status"].as_str(), theirs[0]["region"].as_str()), (Some("ACTIVE"), Some(REGION)));
        let starts = t.emu.emulator.account_counters(acc.id).total("StartContinuousExport");
        assert_eq!(starts, 1, "one Start in account {}: the second object's was not sent", acc.id);
    }
    // (Objects other test binaries left in the bed, which this all-namespace operator also
    // reconciles, use its own identity: the emulator's default account, not these.)
    let ours: Vec<&Value> = exports.iter().filter(|e| accounts.iter().any(|acc| e["accountId"] == acc.id)).collect();
    assert_eq!(ours.len(), 3, "three ACTIVE exports at once in {REGION}, one per account: {exports:#?}");
    for acc in &accounts {
        let api = Api::<ExportAccount>::all(client.clone());
        let n = name_of(acc);
        let s = support::wait_for_ok(&format!("ExportAccount {n}: Ready=True, inUseBy 2"), DEADLINE, || async {
            let s = api.get(&n).await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            let ready = s.conditions.iter().any(|c| c.type_ == CONDITION_READY && c.status == "True");
            if ready && s.in_use_by == Some(2) { Ok(s) } else { Err(format!("{s:#?}")) }
        })
        .await;
        assert_eq!(s.account_id.as_deref(), Some(acc.id), "GetCallerIdentity with the assumed role");
    }
    eprintln!("three accounts ACTIVE, three conflicts after {:?}", started.elapsed());

    // Account C's trust broken: the role no longer trusts the operator. Only C's objects
    // go Synced=False AuthorizationError, once its credentials are due for refresh.
    trust(&t, c, vec![account_root("999999999999")]);
    for ns in [&c.by_name, &c.by_label] {
        let o = wait_condition(&client, ns, CONDITION_SYNCED, "False", "AuthorizationError").await;
        let msg = message(&o, CONDITION_SYNCED);
        assert!(msg.contains(&role_arn(c.id)), "names C's role: {msg}");
    }
    wait_account(&client, &name_of(c), "False", "AuthorizationError").await;
    for acc in [a, b] {
        let first = exports_in(&client, &acc.by_name).get("inv").await.unwrap().status.unwrap();
        assert!(first.is_true(CONDITION_READY) && first.is_true(CONDITION_SYNCED), "{:#?}", first.conditions);
        let second = exports_in(&client, &acc.by_label).get("inv").await.unwrap().status.unwrap();
        assert_eq!(second.condition(CONDITION_SYNCED).map(|c| c.reason.as_str()), Some("Conflict"));
        wait_account(&client, &name_of(acc), "True", "Assumed").await;
    }
    eprintln!("C's broken trust stalled only C after {:?}", started.elapsed());

    // Deleting ExportAccount A while in use: kept by its finalizer, Ready=False InUse.
    let api = Api::<ExportAccount>::all(client.clone());
    api.delete(&name_of(a), &DeleteParams::default()).await.unwrap();
    let acc_a = wait_account(&client, &name_of(a), "False", "InUse").await;
    assert!(acc_a.metadata.deletion_timestamp.is_some(), "marked for deletion, kept by its finalizer");
    assert!(acc_a.metadata.finalizers.unwrap_or_default().iter().any(|f| f == "adsexport.io/account-in-use"));
    let in_use = acc_a.status.unwrap().conditions.into_iter().find(|c| c.type_ == CONDITION_READY).unwrap().message;
    for ns in [&a.by_name, &a.by_label] {
        assert!(in_use.contains(&format!("{ns}/inv")), "{in_use}");
    }
    // A's objects deleted: their export stopped in account A only, then A goes away.
    for ns in [&a.by_name, &a.by_label] {
        exports_in(&client, ns).delete("inv", &DeleteParams::default()).await.unwrap();
    }
    for ns in [&a.by_name, &a.by_label] {
        wait_export_gone(&client, ns).await;
    }
    wait_account_gone(&client, &name_of(a)).await;
    let exports = emulator_exports(&t).await;
    let status_in = |acc: &Account| -> Vec<String> {
        exports.iter().filter(|e| e["accountId"] == acc.id).map(|e| e["status"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(status_in(a), vec!["INACTIVE".to_owned()], "A's export stopped: {exports:#?}");
    assert_eq!(status_in(b), vec!["ACTIVE".to_owned()], "B's untouched");
    assert_eq!(status_in(c), vec!["ACTIVE".to_owned()], "C's untouched");
    assert_eq!(t.emu.emulator.account_counters(a.id).total("StopContinuousExport"), 1);
    for acc in [b, c] {
        assert_eq!(t.emu.emulator.account_counters(acc.id).total("StopContinuousExport"), 0, "{}", acc.id);
    }
    eprintln!("ExportAccount A released after its objects, {:?}", started.elapsed());

    // Clean up through the operator: C trusted again, so its exports can be stopped.
    trust(&t, c, operator_root.clone());
    for acc in [b, c] {
        for ns in [&acc.by_name, &acc.by_label] {
            exports_in(&client, ns).delete("inv", &DeleteParams::default()).await.unwrap();
        }
    }
    for acc in [b, c] {
        for ns in [&acc.by_name, &acc.by_label] {
            wait_export_gone(&client, ns).await;
        }
        api.delete(&name_of(acc), &DeleteParams::default()).await.unwrap();
        wait_account_gone(&client, &name_of(acc)).await;
    }
    let exports = emulator_exports(&t).await;
    let running = |e: &&Value| e["status"] == "ACTIVE" && accounts.iter().any(|acc| e["accountId"] == acc.id);
    assert!(!exports.iter().any(|e| running(&e)), "nothing left running: {exports:#?}");
    assert!(op.exited().is_none(), "the operator still runs: {:?}", op.exited());
    drop(cleanup);
    eprintln!("done in {:?}", started.elapsed());
}
