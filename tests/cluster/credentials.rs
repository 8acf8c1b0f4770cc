//! AWS credentials as EKS delivers them, to the operator installed by helm as pods.
//!
//! The bed has no EKS webhook, so each release gets through chart values
//! (`extraEnv`, `extraVolumes`, `extraVolumeMounts`) exactly what EKS's webhooks inject:
//! for IRSA `AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE` and a projected
//! service-account token with audience `sts.amazonaws.com`; for EKS Pod Identity
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`, `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` and a
//! projected token with audience `pods.eks.amazonaws.com`. The kubelet writes and
//! rotates those tokens; the cluster's kube-apiserver signs them, and the emulator, in
//! strict credentials mode, verifies them against the keys the apiserver publishes
//! (`/openid/v1/jwks`).
//!
//! STS and the Pod Identity endpoint answer on one emulator port
//! (`AWS_ENDPOINT_URL_STS`, the full URI), ADS on another (`awsEndpointUrl`), sharing
//! the emulator's IAM side: each port's counters show which calls reached it, and the
//! call classes show how every ADS call was signed. The chart's securityContext is the
//! default one (read-only root filesystem): the SDK caches credentials in memory only.

use std::path::Path;
use std::time::{Duration, Instant};

use ads_export_operator::ads::Operation;
use ads_export_operator::api::{CONDITION_READY, CONDITION_SYNCED, ContinuousExport};
use ads_export_operator::emulator::identity::{CredentialSource, IssuedView, PodIdentityAssociation, Role};
use ads_export_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::fixture::*;
use crate::support;

const ROLE: &str = "arn:aws:iam::123456789012:role/ads-export-operator";

/// Where EKS's pod identity webhook mounts the IRSA token (its `AWS_WEB_IDENTITY_TOKEN_FILE`).
const IRSA_TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
/// Where the EKS Pod Identity webhook mounts its token.
const POD_IDENTITY_TOKEN_DIR: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
const POD_IDENTITY_TOKEN: &str = "eks-pod-identity-token";

/// The emulator pair of one release: ADS in strict credentials mode on one port, STS and
/// Pod Identity on another, one IAM side.
struct StrictEmulators {
    ads: RunningEmulator,
    sts: RunningEmulator,
}

impl StrictEmulators {
    /// Strict mode on, credentials living `lifetime`, the cluster's service-account issuer
    /// and its published keys registered.
    async fn start(lifetime: Duration) -> StrictEmulators {
        let cfg = || EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() };
        let ads = Emulator::new(cfg()).spawn("127.0.0.1:0").await.expect("start the ADS emulator");
        let sts = ads.emulator.sharing_identity(cfg()).spawn("127.0.0.1:0").await.expect("start the STS port");
        let discovery: Value = serde_json::from_str(&kubectl(&["get", "--raw", "/.well-known/openid-configuration"]))
            .expect("the apiserver's OIDC discovery document");
        let jwks = serde_json::from_str(&kubectl(&["get", "--raw", "/openid/v1/jwks"])).expect("apiserver JWKS");
        let id = ads.emulator.identity();
        id.set_oidc_provider(discovery["issuer"].as_str().expect("issuer").to_owned(), jwks);
        id.set_strict(true);
        id.set_lifetime(lifetime);
        StrictEmulators { ads, sts }
    }
}

/// IRSA as EKS's pod identity webhook injects it for a ServiceAccount annotated with
/// `eks.amazonaws.com/role-arn` (its env, volume and mount), STS at `sts`.
fn irsa_setup(sts: &RunningEmulator) -> Setup {
    let env = [
        ("AWS_STS_REGIONAL_ENDPOINTS", "regional".to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_ROLE_ARN", ROLE.to_owned()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", format!("{IRSA_TOKEN_DIR}/token")),
        ("AWS_ENDPOINT_URL_STS", sts.endpoint_url()),
    ];
    projected_token_setup(&env, "aws-iam-token", IRSA_TOKEN_DIR, "token", "sts.amazonaws.com")
}

/// EKS Pod Identity as its webhook injects it, the agent's endpoint at `sts`.
fn pod_identity_setup(sts: &RunningEmulator) -> Setup {
    let env = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{}/v1/credentials", sts.endpoint_url())),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", format!("{POD_IDENTITY_TOKEN_DIR}/{POD_IDENTITY_TOKEN}")),
    ];
    projected_token_setup(
        &env,
        POD_IDENTITY_TOKEN,
        POD_IDENTITY_TOKEN_DIR,
        POD_IDENTITY_TOKEN,
        "pods.eks.amazonaws.com",
    )
}

/// `env` plus a projected service-account token for `audience` (86400 s, as EKS) in
/// `dir/file`, read-only.
fn projected_token_setup(env: &[(&str, String)], volume: &str, dir: &str, file: &str, audience: &str) -> Setup {
    Setup {
        env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        volumes: vec![json!({"name": volume, "projected": {"sources": [
            {"serviceAccountToken": {"audience": audience, "expirationSeconds": 86400, "path": file}}
        ]}})],
        volume_mounts: vec![json!({"name": volume, "mountPath": dir, "readOnly": true})],
        // Debug logs of the operator and the SDK's credential code: more places a secret
        // could leak to.
        sets: vec!["logLevel=info\\,ads_export_operator=debug\\,aws_config=debug".into()],
    }
}

fn kubectl(args: &[&str]) -> String {
    let bed = support::testbed();
    run(&format!("kubectl {}", args.join(" ")), bed.command(bed.kubectl()).args(args))
}

/// The release's ServiceAccount as a token subject.
fn subject(r: &Release) -> String {
    format!("system:serviceaccount:{}:{}-ads-export-operator", r.ns, r.name)
}

fn trust(emus: &StrictEmulators, subject: &str) {
    let role = Role { role_arn: ROLE.into(), service_accounts: vec![subject.to_owned()], ..Role::default() };
    emus.ads.emulator.identity().set_role(role);
}

/// Every ADS call reached the ADS port, succeeded and was signed with credentials the
/// emulator issued (none with static keys); none reached the STS port. The number of
/// ADS calls.
fn assert_all_ads_calls_used_issued_credentials(r: &Release, sts: &RunningEmulator) -> u64 {
    let id = r.emu.emulator.identity();
    let classes = id.call_classes();
    let temporary = classes.get("temporary").copied().unwrap_or(0);
    assert!(temporary > 0 && classes.len() == 1, "call classes {classes:?}");
    let counters = r.emu.emulator.counters();
    let ok: u64 = Operation::ALL.iter().map(|op| counters.get(op.name(), "ok")).sum();
    let all: u64 = Operation::ALL.iter().map(|op| counters.total(op.name())).sum();
    assert_eq!((ok, all), (temporary, temporary), "ADS counters {counters:?}");
    let used: u64 = id.issued().iter().map(|i| i.calls).sum();
    assert_eq!(used, temporary, "calls recorded on issued credentials");
    let sts_side = sts.emulator.counters();
    assert!(Operation::ALL.iter().all(|op| sts_side.total(op.name()) == 0), "ADS calls on the STS port: {sts_side:?}");
    temporary
}

/// Every credential set was issued by `source` for [`ROLE`] to the release's ServiceAccount.
fn assert_issued_to_the_release(r: &Release, source: CredentialSource) {
    let issued = r.emu.emulator.identity().issued();
    assert!(!issued.is_empty());
    for i in issued {
        assert_eq!(
            (i.source, i.role_arn.as_str(), i.subject.clone()),
            (source, ROLE, subject(r)),
            "{}",
            i.access_key_id
        );
    }
}

/// What the operator pods hold that must never be logged: the tokens the kubelet
/// projected (the AWS one at `token_path` and the API server's), each whole and its
/// signature alone.
fn pod_tokens(pods: &[String], token_path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pod in pods {
        let pid = crate::fixture::operator_pids(|env| env.split('\0').any(|kv| kv == format!("POD_NAME={pod}")));
        let [pid] = pid.as_slice() else { panic!("{pod}: operator processes {pid:?}") };
        for path in [token_path, "/var/run/secrets/kubernetes.io/serviceaccount/token"] {
            let file = format!("/proc/{pid}/root{path}");
            let token = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{pod}: {path}: {e}"));
            let token = token.trim().to_owned();
            assert_eq!(token.split('.').count(), 3, "{pod}: {path} holds a JWT");
            out.push(token.rsplit('.').next().unwrap().to_owned());
            out.push(token);
        }
    }
    out
}

/// No issued secret key or session token, and none of `tokens`, is in the pods' logs (as
/// `kubectl logs` shows them and as the kubelet wrote them under `/var/log/pods`) or in
/// the events of the release's and the exports' namespaces.
fn assert_no_secrets_leaked(r: &Release, pods: &[String], tokens: &[String]) {
    let mut secrets = r.emu.emulator.identity().issued_secrets();
    assert!(!secrets.is_empty(), "no credentials issued");
    secrets.extend(tokens.iter().cloned());
    let mut places: Vec<(String, String)> = Vec::new();
    for pod in pods {
        let log = r.kubectl(&["logs", "-n", &r.ns, pod]);
        assert!(!log.is_empty(), "{pod}: empty log");
        places.push((format!("kubectl logs {pod}"), log));
    }
    let cluster_dir = std::env::var("ADS_CLUSTER_DIR").expect("ADS_CLUSTER_DIR");
    let mut files = Vec::new();
    for node in ["node-1", "node-2"] {
        collect_files(&Path::new(&cluster_dir).join(node).join("log/pods"), &format!("{}_", r.ns), &mut files);
    }
    assert!(files.len() >= pods.len(), "kubelet log files of {pods:?}: {files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        places.push((f.display().to_string(), text));
    }
    for ns in [&r.ns, &r.exports] {
        places.push((format!("events in {ns}"), kubectl(&["get", "events", "-n", ns, "-o", "json"])));
    }
    for (place, text) in &places {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret or token ({} chars) is in {place}", secret.len());
        }
    }
    eprintln!("no secret in {} places ({} secrets and tokens looked for)", places.len(), secrets.len());
}

/// Files under the directories of `root` whose names start with `prefix`.
fn collect_files(root: &Path, prefix: &str, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(prefix) {
            walk(&e.path(), out);
        }
    }
}

fn walk(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            walk(&e.path(), out);
        }
    } else if path.is_file() {
        out.push(path.to_owned());
    }
}

async fn pod_names(r: &Release) -> Vec<String> {
    r.pods().await.iter().filter_map(|p| p.metadata.name.clone()).collect()
}

/// Stops `inv` (export `id`) and waits until the emulator has it INACTIVE.
async fn stop(r: &Release, id: &str) {
    r.exports_api()
        .patch("inv", &PatchParams::default(), &Patch::Merge(json!({"spec": {"stopped": true}})))
        .await
        .expect("stop");
    r.wait_emulator_status(id, "INACTIVE").await;
}

/// The Synced condition of `inv`, once it is False with reason `reason`.
async fn wait_synced_false(r: &Release, reason: &str) -> Condition {
    let api: Api<ContinuousExport> = r.exports_api();
    support::wait_for_ok(&format!("inv Synced=False {reason}"), DEADLINE, || async {
        let o = api.get("inv").await.map_err(|e| e.to_string())?;
        let st = o.status.unwrap_or_default();
        match st.condition(CONDITION_SYNCED) {
            Some(c) if c.status == "False" && c.reason == reason => Ok(c.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn irsa_in_cluster_names_an_untrusted_role_backs_off_recovers_and_starts_and_stops() {
    let emus = StrictEmulators::start(Duration::from_secs(3600)).await;
    // The role trusts another ServiceAccount (a typical mistake: the trust policy names
    // the wrong namespace or name).
    trust(&emus, "system:serviceaccount:elsewhere:someone-else");
    let setup = irsa_setup(&emus.sts);
    let client = support::testbed().client().await;
    let exports = support::namespace(&client, "irsa-cex").await;
    let r = Release::install_with("irsa", crate::base_tag(), 18091, &exports, emus.ads, setup).await;
    let sts = emus.sts;
    let ns = r.exports.clone();
    r.create_export(&ns, "inv", json!({"deletionPolicy": "Delete"})).await;

    let synced = wait_synced_false(&r, "AuthorizationError").await;
    let token_file = format!("{IRSA_TOKEN_DIR}/token");
    eprintln!("untrusted role: {}", synced.message);
    for part in [
        format!("could not assume role {ROLE} with the web identity token in {token_file}"),
        "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity".to_owned(),
    ] {
        assert!(synced.message.contains(&part), "{:?} lacks {part:?}", synced.message);
    }
    // The emulator verified the projected token (issuer, keys, audience): the refusal is
    // the trust policy's, not the token's.
    let attempts = || sts.emulator.counters().get("AssumeRoleWithWebIdentity", "AccessDenied");
    assert!(attempts() >= 1, "{:?}", sts.emulator.counters());

    // Backoff (chart values: 500 ms doubling to 5 s): each attempt is one STS call.
    let before = sts.emulator.counters().total("AssumeRoleWithWebIdentity");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await; // the measured window, not a wait for an outcome
    let window = started.elapsed();
    let calls = sts.emulator.counters().total("AssumeRoleWithWebIdentity") - before;
    let bound = support::max_calls(Duration::from_millis(500), Duration::from_secs(5), window);
    eprintln!("untrusted role: {calls} AssumeRoleWithWebIdentity calls in {window:?} (backoff allows at most {bound})");
    assert!((2..=bound).contains(&calls), "{calls} STS calls in {window:?}; the backoff allows 2..={bound}");
    let counters = r.emu.emulator.counters();
    assert!(
        Operation::ALL.iter().all(|op| counters.total(op.name()) == 0),
        "ADS calls without credentials: {counters:?}"
    );
    let events = kubectl(&["get", "events", "-n", &ns, "--field-selector", "involvedObject.name=inv", "-o", "json"]);
    assert!(events.contains("AuthorizationError"), "no AuthorizationError event: {events}");

    // The fix, as an admin makes it: the trust policy names the release's ServiceAccount.
    let resp = reqwest::Client::new()
        .post(format!("{}/_emulator/roles", sts.endpoint_url()))
        .json(&json!({"roleArn": ROLE, "serviceAccounts": [subject(&r)]}))
        .send()
        .await
        .expect("emulator admin call");
    assert_eq!(resp.status(), 200);
    let fixed = Instant::now();
    let id = r.wait_export_ready(&ns, "inv").await;
    eprintln!("untrusted role: Ready {:.1}s after the trust policy was fixed", fixed.elapsed().as_secs_f64());
    assert_eq!(r.emulator_status(&id), "ACTIVE");
    stop(&r, &id).await;

    let ads_calls = assert_all_ads_calls_used_issued_credentials(&r, &sts);
    assert_issued_to_the_release(&r, CredentialSource::AssumeRoleWithWebIdentity);
    assert_eq!(r.emu.emulator.calls(Operation::Start.name()), 1);
    assert_eq!(r.emu.emulator.calls(Operation::Stop.name()), 1);
    // One credential set after the fix, cached in memory for every call (read-only root).
    assert_eq!(sts.emulator.counters().get("AssumeRoleWithWebIdentity", "ok"), 1, "{:?}", sts.emulator.counters());
    assert_eq!(r.emu.emulator.counters().total("AssumeRoleWithWebIdentity"), 0, "STS calls on the ADS port");
    eprintln!("irsa: {ads_calls} ADS calls, all signed with issued credentials");

    // The operator's cleanup runs on the same credentials, while both emulator ports
    // still answer.
    r.delete_exports().await;
    let pods = pod_names(&r).await;
    let tokens = pod_tokens(&pods, &token_file);
    assert_no_secrets_leaked(&r, &pods, &tokens);
    r.finish().await;
}

#[tokio::test]
async fn irsa_in_cluster_refreshes_60s_credentials_before_they_expire_for_5_minutes() {
    // 60 s credentials and a call every 11 s (resyncPeriod): the SDK's identity cache
    // loads new credentials when a call finds the cached ones within its buffer (10 s
    // minus up to 50 % jitter: 5 to 10 s before expiry). The fifth call after a load
    // finds under 5 s left whatever the jitter, so each set is replaced by a call
    // before it expires.
    let lifetime = Duration::from_secs(60);
    let window = Duration::from_secs(300);
    let emus = StrictEmulators::start(lifetime).await;
    let mut setup = irsa_setup(&emus.sts);
    setup.sets.push("resyncPeriod=11s".into());
    let client = support::testbed().client().await;
    let exports = support::namespace(&client, "refresh-cex").await;
    let r = Release::install_with("refresh", crate::base_tag(), 18092, &exports, emus.ads, setup).await;
    let sts = emus.sts;
    trust_release(&r);
    let ns = r.exports.clone();
    let id = r.active_export(&ns, "inv", json!({"deletionPolicy": "Delete"})).await;

    // The read-only root the chart gives the container.
    let leader = r.leader().await;
    let options = ContainerProcess::of_pod(&leader).await.root_mount_options();
    assert!(options.iter().any(|o| o == "ro"), "{leader}: root mounted {options:?}");

    let started = Instant::now();
    let identity = r.emu.emulator.identity();
    support::wait_for_ok("5 minutes of ADS calls, none failed", window + Duration::from_secs(60), || async {
        let counters = r.emu.emulator.counters();
        let failed: Vec<_> = Operation::ALL
            .iter()
            .map(|op| (op.name(), counters.total(op.name()) - counters.get(op.name(), "ok")))
            .filter(|(_, n)| *n > 0)
            .collect();
        assert!(failed.is_empty(), "failed ADS calls {failed:?}: {counters:?}");
        let classes = identity.call_classes();
        assert_eq!(classes.keys().collect::<Vec<_>>(), ["temporary"], "call classes {classes:?}");
        if started.elapsed() >= window { Ok(()) } else { Err(format!("{:?} of {window:?}", started.elapsed())) }
    })
    .await;

    let ads_calls = assert_all_ads_calls_used_issued_credentials(&r, &sts);
    assert_issued_to_the_release(&r, CredentialSource::AssumeRoleWithWebIdentity);
    let issued: Vec<IssuedView> = identity.issued();
    let used = issued.iter().filter(|i| i.calls > 0).count();
    eprintln!("refresh: {ads_calls} ADS calls in {:?} over {used} credential sets", started.elapsed());
    assert!(used >= 5, "{used} credential sets used in 5 minutes of 60 s credentials: {issued:#?}");
    support::assert_refreshed_before_expiry(&issued);
    let st = r.exports_api().get("inv").await.unwrap().status.unwrap();
    assert!(st.is_true(CONDITION_READY) && st.is_true(CONDITION_SYNCED), "{st:?}");
    assert_eq!(r.emulator_status(&id), "ACTIVE");
    // The operator's cleanup runs on the same credentials, while both emulator ports
    // still answer.
    r.delete_exports().await;
    r.wait_emulator_status(&id, "INACTIVE").await; // deletionPolicy Delete stops the export
    let pods = pod_names(&r).await;
    let tokens = pod_tokens(&pods, &format!("{IRSA_TOKEN_DIR}/token"));
    assert_no_secrets_leaked(&r, &pods, &tokens);
    r.finish().await;
}

fn trust_release(r: &Release) {
    let role = Role { role_arn: ROLE.into(), service_accounts: vec![subject(r)], ..Role::default() };
    r.emu.emulator.identity().set_role(role);
}

#[tokio::test]
async fn pod_identity_in_cluster_starts_and_stops_an_export() {
    let emus = StrictEmulators::start(Duration::from_secs(3600)).await;
    let setup = pod_identity_setup(&emus.sts);
    let client = support::testbed().client().await;
    let exports = support::namespace(&client, "podid-cex").await;
    let r = Release::install_with("podid", crate::base_tag(), 18093, &exports, emus.ads, setup).await;
    let sts = emus.sts;
    // The association EKS holds (namespace + ServiceAccount -> role); no ADS call
    // happens before the first export.
    r.emu.emulator.identity().set_association(PodIdentityAssociation {
        namespace: r.ns.clone(),
        service_account: format!("{}-ads-export-operator", r.name),
        role_arn: ROLE.into(),
    });
    let ns = r.exports.clone();
    let id = r.active_export(&ns, "inv", json!({"deletionPolicy": "Delete"})).await;
    stop(&r, &id).await;

    let ads_calls = assert_all_ads_calls_used_issued_credentials(&r, &sts);
    assert_issued_to_the_release(&r, CredentialSource::PodIdentity);
    assert_eq!(sts.emulator.counters().get("PodIdentityCredentials", "ok"), 1, "cached in memory");
    assert_eq!(sts.emulator.counters().total("AssumeRoleWithWebIdentity"), 0);
    assert_eq!(r.emu.emulator.calls(Operation::Start.name()), 1);
    assert_eq!(r.emu.emulator.calls(Operation::Stop.name()), 1);
    eprintln!("pod identity: {ads_calls} ADS calls, all signed with issued credentials");

    // The operator's cleanup runs on the same credentials, while both emulator ports
    // still answer.
    r.delete_exports().await;
    let pods = pod_names(&r).await;
    let tokens = pod_tokens(&pods, &format!("{POD_IDENTITY_TOKEN_DIR}/{POD_IDENTITY_TOKEN}"));
    assert_no_secrets_leaked(&r, &pods, &tokens);
    r.finish().await;
}
