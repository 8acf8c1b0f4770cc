//! AWS credentials as EKS delivers them, on the apiserver-only bed: the operator binary
//! gets nothing but the variables EKS injects (IRSA: `AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE`; Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI` +
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) and endpoint overrides. The token is a real
//! service-account token from the bed's kube-apiserver (TokenRequest via `kubectl create
//! token`), verified by the emulator against the apiserver's `/openid/v1/jwks`.
//!
//! STS and the Pod Identity endpoint are served on their own port (`AWS_ENDPOINT_URL_STS`),
//! ADS on another (`--aws-endpoint-url`), sharing the emulator's IAM side in strict
//! credentials mode: the counters of each port show which calls reached it, and the
//! emulator's call classes show every ADS call was signed with issued credentials.

use std::time::Duration;

use ads_export_operator::api::{CONDITION_READY, CONDITION_SYNCED};
use ads_export_operator::emulator::RunningEmulator;
use ads_export_operator::emulator::identity::{CredentialSource, PodIdentityAssociation, Role};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

use super::harness::*;
use super::support;

const ROLE: &str = "arn:aws:iam::123456789012:role/ads-export-operator";
const SA: &str = "ads-export-operator";

/// ADS operations as the emulator counts them.
const ADS_OPERATIONS: [&str; 3] = ["StartContinuousExport", "DescribeContinuousExports", "StopContinuousExport"];

/// One test's world: the namespace and ADS emulator of [`Test`], a second port for STS and
/// Pod Identity sharing its IAM side, a ServiceAccount and its token in a file.
struct Eks {
    t: Test,
    sts: RunningEmulator,
    token: String,
    token_file: tempfile::NamedTempFile,
}

impl Eks {
    /// Strict mode on, credentials living `lifetime`, the bed's issuer registered, a
    /// ServiceAccount `SA` with a token for `audience`.
    async fn new(prefix: &str, lifetime: Duration, audience: &str) -> Eks {
        let t = Test::new(prefix, cfg()).await;
        let sts = t.emu.emulator.sharing_identity(cfg()).spawn("127.0.0.1:0").await.expect("start the STS port");
        let id = t.emu.emulator.identity();
        let discovery: Value =
            serde_json::from_str(&kubectl(&["get", "--raw", "/.well-known/openid-configuration"])).unwrap();
        let jwks = serde_json::from_str(&kubectl(&["get", "--raw", "/openid/v1/jwks"])).expect("apiserver JWKS");
        id.set_oidc_provider(discovery["issuer"].as_str().expect("issuer").to_owned(), jwks);
        id.set_strict(true);
        id.set_lifetime(lifetime);
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta { name: Some(SA.into()), ..Default::default() },
            ..Default::default()
        };
        Api::<ServiceAccount>::namespaced(t.client.clone(), &t.ns)
            .create(&PostParams::default(), &sa)
            .await
            .expect("create SA");
        let token = kubectl(&["create", "token", SA, "-n", &t.ns, "--audience", audience, "--duration", "1h"])
            .trim()
            .to_owned();
        let token_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(token_file.path(), &token).unwrap();
        Eks { t, sts, token, token_file }
    }

    fn subject(&self) -> String {
        format!("system:serviceaccount:{}:{SA}", self.t.ns)
    }

    fn trust(&self, subject: &str) {
        let role = Role { role_arn: ROLE.into(), service_accounts: vec![subject.to_owned()], ..Role::default() };
        self.t.emu.emulator.identity().set_role(role);
    }

    /// The operator binary with IRSA's variables and `extra_args`.
    async fn irsa_operator(&self, extra_args: &[&str]) -> Process {
        let sts_url = self.sts.endpoint_url();
        let token_file = self.token_file.path().to_str().unwrap();
        let env = [
            ("AWS_ROLE_ARN", ROLE),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file),
            ("AWS_REGION", super::REGION),
            ("AWS_ENDPOINT_URL_STS", sts_url.as_str()),
        ];
        self.operator(&env, extra_args).await
    }

    /// The operator binary with Pod Identity's variables.
    async fn pod_identity_operator(&self) -> Process {
        let uri = format!("{}/v1/credentials", self.sts.endpoint_url());
        let token_file = self.token_file.path().to_str().unwrap();
        let env = [
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file),
            ("AWS_REGION", super::REGION),
        ];
        self.operator(&env, &[]).await
    }

    async fn operator(&self, env: &[(&str, &str)], extra_args: &[&str]) -> Process {
        let mut args = self.t.operator_args();
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        self.t.spawn_operator_with_env("operator", &args, env, support::testbed().kubeconfig_path()).await
    }

    /// Creates `inv`, waits for it to run, stops it, waits for INACTIVE.
    async fn start_and_stop(&self) {
        self.t.create("inv", json!({})).await;
        let obj = self.t.wait_ready("inv").await;
        assert_eq!(obj.status.unwrap().export_status.as_deref(), Some("ACTIVE"));
        self.t.patch_spec("inv", json!({"stopped": true})).await;
        self.t
            .wait_status("inv", "INACTIVE and Ready", |s| {
                s.export_status.as_deref() == Some("INACTIVE") && s.is_true(CONDITION_READY)
            })
            .await;
        assert_eq!(self.t.emu.emulator.exports().len(), 1);
    }

    /// Every ADS call reached the ADS port, succeeded and was signed with issued
    /// credentials; none reached the STS port.
    fn assert_all_ads_calls_used_issued_credentials(&self) {
        let classes = self.t.emu.emulator.identity().call_classes();
        let temporary = classes.get("temporary").copied().unwrap_or(0);
        assert!(temporary > 0 && classes.len() == 1, "call classes {classes:?}");
        let counters = self.t.emu.emulator.counters();
        let ads_calls: u64 = ADS_OPERATIONS.iter().map(|op| counters.get(op, "ok")).sum();
        let all_calls: u64 = ADS_OPERATIONS.iter().map(|op| counters.total(op)).sum();
        assert_eq!((ads_calls, all_calls), (temporary, temporary), "ADS counters {counters:?}");
        let sts_side = self.sts.emulator.counters();
        assert!(ADS_OPERATIONS.iter().all(|op| sts_side.total(op) == 0), "ADS calls on the STS port: {sts_side:?}");
        let used: u64 = self.t.emu.emulator.identity().issued().iter().map(|i| i.calls).sum();
        assert_eq!(used, temporary);
    }

    /// Neither the token nor any issued secret or session token is in the operator's log
    /// or in the namespace's events.
    async fn assert_no_secrets_leaked(&self, op: &Process) {
        let events: Api<Event> = Api::namespaced(self.t.client.clone(), &self.t.ns);
        let events = serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap();
        let log = op.log_text();
        assert!(!log.is_empty());
        let mut secrets = self.t.emu.emulator.identity().issued_secrets();
        secrets.push(self.token.clone());
        // The token's signature part alone must not show up either.
        secrets.push(self.token.rsplit('.').next().unwrap().to_owned());
        for secret in &secrets {
            assert!(!log.contains(secret.as_str()), "a secret is in the operator log {}", op.log.display());
            assert!(!events.contains(secret.as_str()), "a secret is in an event");
        }
    }
}

/// `http://127.0.0.1:<port>` of a port that was free a moment ago (bound, then released).
fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

fn kubectl(args: &[&str]) -> String {
    let bed = support::testbed();
    let out = bed.command(bed.kubectl()).args(args).output().expect("run kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn irsa_credentials_start_and_stop_an_export() {
    let eks = Eks::new("irsa", Duration::from_secs(3600), "sts.amazonaws.com").await;
    eks.trust(&eks.subject());
    let op = eks.irsa_operator(&[]).await;
    eks.start_and_stop().await;

    eks.assert_all_ads_calls_used_issued_credentials();
    // One set of credentials, cached in memory for all calls.
    let sts = eks.sts.emulator.counters();
    assert_eq!(sts.total("AssumeRoleWithWebIdentity"), 1, "{sts:?}");
    assert_eq!(
        eks.t.emu.emulator.counters().total("AssumeRoleWithWebIdentity"),
        0,
        "STS hijacked by --aws-endpoint-url"
    );
    for i in eks.t.emu.emulator.identity().issued() {
        assert_eq!(
            (i.source, i.role_arn.as_str(), i.subject.clone()),
            (CredentialSource::AssumeRoleWithWebIdentity, ROLE, eks.subject())
        );
    }
    eks.assert_no_secrets_leaked(&op).await;
}

#[tokio::test]
async fn irsa_credentials_are_refreshed_before_they_expire() {
    // 15 s credentials, a call every 10 s (the shortest resync). The SDK's identity cache
    // is lazy: a call that finds the cached credentials within its buffer of their expiry
    // (10 s minus up to 50 % jitter: 5 to 10 s) loads new ones first. Each resync call
    // finds under 5 s left (expiry is whole seconds), so each set must be replaced by
    // that call, before it expires, with no ADS call failing.
    let lifetime = Duration::from_secs(15);
    let eks = Eks::new("refresh", lifetime, "sts.amazonaws.com").await;
    eks.trust(&eks.subject());
    let op = eks.irsa_operator(&["--resync-period", "10s"]).await;
    eks.t.create("inv", json!({})).await;
    eks.t.wait_ready("inv").await;
    let id = eks.t.emu.emulator.identity();
    support::wait_for("4 issued credentials used for ADS calls", Duration::from_secs(120), || async {
        (id.issued().iter().filter(|i| i.calls > 0).count() >= 4).then_some(())
    })
    .await;

    eks.assert_all_ads_calls_used_issued_credentials();
    let issued = id.issued();
    support::assert_refreshed_before_expiry(&issued);
    let st = eks.t.get("inv").await.status.unwrap();
    assert!(st.is_true(CONDITION_READY) && st.is_true(CONDITION_SYNCED), "{st:?}");
    eks.assert_no_secrets_leaked(&op).await;
}

#[tokio::test]
async fn irsa_role_trusting_another_service_account_is_an_authorization_error_until_fixed() {
    let eks = Eks::new("trust", Duration::from_secs(3600), "sts.amazonaws.com").await;
    let other = format!("system:serviceaccount:{}:someone-else", eks.t.ns);
    eks.trust(&other);
    let op = eks.irsa_operator(&[]).await;
    eks.t.create("inv", json!({})).await;
    let obj = eks
        .t
        .wait_status("inv", "Synced=False AuthorizationError", |s| {
            s.condition(CONDITION_SYNCED).is_some_and(|c| c.status == "False" && c.reason == "AuthorizationError")
        })
        .await;
    let synced = obj.status.unwrap().condition(CONDITION_SYNCED).cloned().unwrap();
    assert!(synced.message.contains(&format!("could not assume role {ROLE}")), "{}", synced.message);
    assert!(
        synced.message.contains("AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"),
        "{}",
        synced.message
    );

    // Backoff (500 ms doubling to 5 s): each attempt makes one AssumeRoleWithWebIdentity
    // call, and no ADS call leaves the operator unsigned.
    let attempts = || eks.sts.emulator.counters().total("AssumeRoleWithWebIdentity");
    let window = Duration::from_secs(20);
    let before = attempts();
    let started = std::time::Instant::now();
    tokio::time::sleep(window).await; // the measured window, not a wait for an outcome
    let calls = attempts() - before;
    let bound = support::max_calls(Duration::from_millis(500), Duration::from_secs(5), started.elapsed());
    eprintln!("AccessDenied: {calls} STS calls in {:?}; the backoff allows at most {bound}", started.elapsed());
    assert!((2..=bound).contains(&calls), "{calls} STS calls in {window:?}, backoff allows 2..={bound}");
    let counters = eks.t.emu.emulator.counters();
    assert!(ADS_OPERATIONS.iter().all(|op| counters.total(op) == 0), "{counters:?}");
    assert!(eks.t.emu.emulator.exports().is_empty());
    eks.t.expect_event("inv", "AuthorizationError").await;

    // The fix, as an admin would make it: the trust policy names the operator's ServiceAccount.
    let resp = reqwest::Client::new()
        .post(format!("{}/_emulator/roles", eks.sts.endpoint_url()))
        .json(&json!({"roleArn": ROLE, "serviceAccounts": [eks.subject()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    eks.t.wait_ready("inv").await;
    assert_eq!(eks.t.emu.emulator.exports().len(), 1);
    eks.assert_all_ads_calls_used_issued_credentials();
    eks.assert_no_secrets_leaked(&op).await;
}

#[tokio::test]
async fn pod_identity_credentials_start_and_stop_an_export() {
    let eks = Eks::new("podid", Duration::from_secs(3600), "pods.eks.amazonaws.com").await;
    eks.t.emu.emulator.identity().set_association(PodIdentityAssociation {
        namespace: eks.t.ns.clone(),
        service_account: SA.into(),
        role_arn: ROLE.into(),
    });
    let op = eks.pod_identity_operator().await;
    eks.start_and_stop().await;

    eks.assert_all_ads_calls_used_issued_credentials();
    assert_eq!(eks.sts.emulator.counters().total("PodIdentityCredentials"), 1, "cached in memory");
    for i in eks.t.emu.emulator.identity().issued() {
        assert_eq!(
            (i.source, i.role_arn.as_str(), i.subject.clone()),
            (CredentialSource::PodIdentity, ROLE, eks.subject())
        );
    }
    eks.assert_no_secrets_leaked(&op).await;
}

#[tokio::test]
async fn aws_endpoint_url_env_is_global_and_takes_sts_along() {
    // The flag `--aws-endpoint-url` moves ADS calls only (the other tests: STS stays on
    // AWS_ENDPOINT_URL_STS). The SDK's own AWS_ENDPOINT_URL variable, which the flag also
    // reads, is global: without AWS_ENDPOINT_URL_STS it sends STS there too.
    let eks = Eks::new("globalurl", Duration::from_secs(3600), "sts.amazonaws.com").await;
    eks.trust(&eks.subject());
    let ads_url = eks.t.emu.endpoint_url();
    let mut args = eks.t.operator_args();
    let at = args.iter().position(|a| a == "--aws-endpoint-url").unwrap();
    args.drain(at..at + 2);
    let token_file = eks.token_file.path().to_str().unwrap();
    let env = [
        ("AWS_ROLE_ARN", ROLE),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file),
        ("AWS_REGION", super::REGION),
        ("AWS_ENDPOINT_URL", ads_url.as_str()),
    ];
    let op = eks.t.spawn_operator_with_env("operator", &args, &env, support::testbed().kubeconfig_path()).await;
    eks.t.create("inv", json!({})).await;
    eks.t.wait_ready("inv").await;
    assert_eq!(eks.t.emu.emulator.counters().get("AssumeRoleWithWebIdentity", "ok"), 1);
    assert_eq!(eks.sts.emulator.counters().total("AssumeRoleWithWebIdentity"), 0);
    assert!(eks.t.emu.emulator.identity().call_classes().get("temporary").is_some_and(|n| *n > 0));
    eks.assert_no_secrets_leaked(&op).await;
}

#[tokio::test]
async fn typical_setup_mistakes_are_named_in_the_synced_condition() {
    let eks = Eks::new("mistakes", Duration::from_secs(3600), "sts.amazonaws.com").await;
    eks.trust(&eks.subject());
    let dir = tempfile::tempdir().unwrap();
    let wrong_audience = dir.path().join("wrong-audience");
    let token = kubectl(&[
        "create",
        "token",
        SA,
        "-n",
        &eks.t.ns,
        "--audience",
        "https://kubernetes.default.svc",
        "--duration",
        "1h",
    ]);
    std::fs::write(&wrong_audience, token.trim()).unwrap();
    let pod_token = dir.path().join("pod-identity");
    let token =
        kubectl(&["create", "token", SA, "-n", &eks.t.ns, "--audience", "pods.eks.amazonaws.com", "--duration", "1h"]);
    std::fs::write(&pod_token, token.trim()).unwrap();
    let missing = dir.path().join("missing");
    let (wrong_audience, pod_token, missing) =
        (wrong_audience.to_str().unwrap(), pod_token.to_str().unwrap(), missing.to_str().unwrap());
    let sts_url = eks.sts.endpoint_url();
    let pod_uri = format!("{sts_url}/v1/credentials");
    let irsa = |token_file: &str| -> Env {
        vec![
            ("AWS_ROLE_ARN", ROLE.to_owned()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_owned()),
            ("AWS_ENDPOINT_URL_STS", sts_url.clone()),
        ]
    };
    type Env = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Env, Vec<String>)> = vec![
        (
            "token without the sts.amazonaws.com audience",
            irsa(wrong_audience),
            vec![
                format!("could not assume role {ROLE}"),
                "InvalidIdentityTokenException: Incorrect token audience".into(),
            ],
        ),
        (
            "token file not mounted",
            irsa(missing),
            vec![
                format!("could not assume role {ROLE} with the web identity token in {missing}"),
                "No such file".into(),
            ],
        ),
        (
            "AWS_ENDPOINT_URL_STS naming a port nothing listens on",
            vec![
                ("AWS_ROLE_ARN", ROLE.to_owned()),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", eks.token_file.path().to_str().unwrap().to_owned()),
                ("AWS_ENDPOINT_URL_STS", closed_port_url()),
            ],
            vec![format!("could not assume role {ROLE}"), "dispatch failure".into(), "Connection refused".into()],
        ),
        (
            "no Pod Identity association",
            vec![
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", pod_uri.clone()),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", pod_token.to_owned()),
            ],
            vec![format!("could not get credentials from the EKS Pod Identity Agent at {pod_uri}"), "403".into()],
        ),
    ];
    for (i, (what, env, expected)) in cases.into_iter().enumerate() {
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("AWS_REGION", super::REGION));
        let mut op = eks.operator(&env, &[]).await;
        let name = format!("inv-{i}");
        eks.t.create(&name, json!({})).await;
        let obj = eks
            .t
            .wait_status(&name, what, |s| {
                s.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == "AuthorizationError")
            })
            .await;
        let message = obj.status.unwrap().condition(CONDITION_SYNCED).unwrap().message.clone();
        eprintln!("{what}: {message}");
        for part in expected {
            assert!(message.contains(&part), "{what}: {message:?} lacks {part:?}");
        }
        eks.assert_no_secrets_leaked(&op).await;
        op.kill().await;
        eks.t.api.delete(&name, &Default::default()).await.unwrap();
        // No export was started, so the finalizer has nothing to stop; it stays until an
        // operator runs, which the next case's does.
    }
    assert!(eks.t.emu.emulator.exports().is_empty());
    let counters = eks.t.emu.emulator.counters();
    assert!(ADS_OPERATIONS.iter().all(|op| counters.total(op) == 0), "{counters:?}");
}
