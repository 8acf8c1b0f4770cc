//! The emulator's accounts, through the real SDK clients (`aws-sdk-applicationdiscovery`,
//! `aws-sdk-migrationhubconfig`, `aws-sdk-sts`, `aws-config`'s `AssumeRoleProvider`):
//! each call is in the account of its credentials (a static key's `accountId`, an
//! assumed role's account), and exports, home regions, faults, rate limits and counters
//! are kept per account; STS `AssumeRole` checks trust by caller ARN, by account root
//! and by external ID.

use ads_export_operator::emulator::identity::{IdentityConfig, Role, StaticKey};
use ads_export_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_applicationdiscovery as ads;
use aws_sdk_migrationhubconfig as mhc;
use aws_sdk_sts as sts;
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{Value, json};

const REGION: &str = "us-west-2";
const DEFAULT: &str = "123456789012";
const A: &str = "111111111111";
const B: &str = "222222222222";
const C: &str = "333333333333";
const KEY_A: &str = "AKIDACCOUNTA";
const KEY_B: &str = "AKIDACCOUNTB";
const KEY_C: &str = "AKIDACCOUNTC";

/// An emulator (default account's home region us-west-2) with one static key in each of
/// accounts A, B and C; A and B registered with home region us-west-2, C without one.
struct Bed {
    running: RunningEmulator,
}

impl Bed {
    async fn new() -> Self {
        let cfg = EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() };
        let running = Emulator::new(cfg).spawn("127.0.0.1:0").await.expect("spawn emulator");
        let bed = Bed { running };
        for (key, account) in [(KEY_A, A), (KEY_B, B), (KEY_C, C)] {
            let body = json!({"accessKeyId": key, "secretAccessKey": secret(key), "accountId": account});
            assert_eq!(bed.post("static-keys", body).await, (200, json!({"ok": true})));
        }
        for account in [A, B] {
            assert_eq!(bed.post("accounts", json!({"accountId": account, "homeRegion": REGION})).await.0, 200);
        }
        bed
    }

    fn emu(&self) -> &Emulator {
        &self.running.emulator
    }

    fn url(&self) -> String {
        self.running.endpoint_url()
    }

    /// SDK configuration at the emulator signing with static key `key`, no retries.
    fn sdk(&self, key: &str) -> SdkConfig {
        self.sdk_with(SharedCredentialsProvider::new(Credentials::new(key, secret(key), None, None, "test")))
    }

    /// SDK configuration at the emulator with `credentials`, no retries; time source and
    /// sleep as `aws_config::load_defaults` would set them.
    fn sdk_with(&self, credentials: SharedCredentialsProvider) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .time_source(SharedTimeSource::default())
            .sleep_impl(default_async_sleep().expect("tokio sleep"))
            .region(aws_config::Region::new(REGION))
            .endpoint_url(self.url())
            .credentials_provider(credentials)
            .retry_config(RetryConfig::disabled())
            .build()
    }

    fn ads(&self, key: &str) -> ads::Client {
        ads::Client::new(&self.sdk(key))
    }

    fn sts(&self, key: &str) -> sts::Client {
        sts::Client::new(&self.sdk(key))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp =
            reqwest::Client::new().post(format!("{}/_emulator/{path}", self.url())).json(&body).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.expect("admin JSON"))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = reqwest::get(format!("{}/_emulator/{path}", self.url())).await.unwrap();
        (resp.status().as_u16(), resp.json().await.expect("admin JSON"))
    }
}

fn secret(key: &str) -> String {
    format!("secret-of-{key}")
}

/// The error code of an SDK error, with the whole error in the panic message otherwise.
fn code<E: ProvideErrorMetadata>(err: &E) -> String {
    err.code().unwrap_or("<no code>").to_owned()
}

async fn start(client: &ads::Client) -> String {
    let out = client.start_continuous_export().send().await.expect("StartContinuousExport");
    out.export_id().expect("export ID").to_owned()
}

#[tokio::test]
async fn two_accounts_each_hold_an_active_export_in_the_same_region() {
    let bed = Bed::new().await;
    let (a, b) = (bed.ads(KEY_A), bed.ads(KEY_B));
    let in_a = start(&a).await;
    let in_b = start(&b).await;
    let err = a.start_continuous_export().send().await.unwrap_err();
    assert_eq!(code(&err), "ConflictErrorException", "one running export per account and region");

    let described = a.describe_continuous_exports().send().await.expect("Describe in A");
    let ids: Vec<&str> = described.descriptions().iter().filter_map(|d| d.export_id()).collect();
    assert_eq!(ids, [in_a.as_str()], "A sees only its own export");
    assert_eq!(described.descriptions()[0].status().map(|s| s.as_str()), Some("ACTIVE"));
    let foreign = b.describe_continuous_exports().export_ids(&in_a).send().await.unwrap_err();
    assert_eq!(code(&foreign), "ResourceNotFoundException", "A's export ID in B");
    let stop = b.stop_continuous_export().export_id(&in_a).send().await.unwrap_err();
    assert_eq!(code(&stop), "ResourceNotFoundException");
    let default = bed.ads("AKIDUNKNOWN").describe_continuous_exports().send().await.expect("default account");
    assert!(default.descriptions().is_empty(), "an unknown key (non-strict) is the default account");

    let (status, all) = bed.get("exports").await;
    assert_eq!(status, 200);
    let accounts: Vec<(&str, &str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["accountId"].as_str().unwrap(), e["exportId"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(accounts, [(A, in_a.as_str(), "ACTIVE"), (B, in_b.as_str(), "ACTIVE")]);
    let (_, only_b) = bed.get(&format!("exports?accountId={B}")).await;
    assert_eq!(only_b.as_array().unwrap().len(), 1);
    assert_eq!(only_b[0]["exportId"], in_b.as_str());
    let (status, bad) = bed.get("exports?accountId=12").await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("`accountId`"), "{bad}");
    // The admin control API finds an export by its ID, whatever its account.
    assert_eq!(bed.post(&format!("exports/{in_b}/stop"), json!({})).await.0, 200);
    assert_eq!(bed.emu().exports().iter().find(|e| e.export_id == in_b).unwrap().account_id, B);
}

#[tokio::test]
async fn home_regions_are_per_account() {
    let bed = Bed::new().await;
    let get = |key: &str| {
        let client = mhc::Client::new(&bed.sdk(key));
        async move { client.get_home_region().send().await.expect("GetHomeRegion").home_region().map(str::to_owned) }
    };
    assert_eq!(get(KEY_A).await.as_deref(), Some(REGION));
    assert_eq!(get(KEY_C).await, None, "C has no home region");
    let err = bed.ads(KEY_C).describe_continuous_exports().send().await.unwrap_err();
    assert_eq!(code(&err), "HomeRegionNotSetException");
    bed.ads(KEY_A).describe_continuous_exports().send().await.expect("A has its home region");

    // C sets its own home region; the target must be C itself.
    let c = mhc::Client::new(&bed.sdk(KEY_C));
    let target = |id: &str| mhc::types::Target::builder().r#type(mhc::types::TargetType::Account).id(id).build();
    let other = c.create_home_region_control().home_region("eu-west-1").target(target(A).unwrap()).send().await;
    assert_eq!(code(&other.unwrap_err()), "InvalidInputException", "another account's target");
    let created = c.create_home_region_control().home_region("eu-west-1").target(target(C).unwrap()).send().await;
    let control = created.expect("CreateHomeRegionControl in C").home_region_control.expect("control");
    assert_eq!(control.target().and_then(|t| t.id()), Some(C));
    assert_eq!(get(KEY_C).await.as_deref(), Some("eu-west-1"));
    assert_eq!(get(KEY_A).await.as_deref(), Some(REGION), "A keeps its own");
    let described = c.describe_home_region_controls().send().await.expect("Describe in C");
    assert_eq!(described.home_region_controls().len(), 1);
    assert_eq!(described.home_region_controls()[0].home_region(), Some("eu-west-1"));

    // The admin call moves one account's home region only.
    assert_eq!(bed.post("home-region", json!({"region": null, "accountId": A})).await.0, 200);
    assert_eq!(get(KEY_A).await, None);
    assert_eq!(get(KEY_B).await.as_deref(), Some(REGION));
    assert_eq!(bed.emu().home_region().as_deref(), Some(REGION), "the default account is untouched");
    let (status, listed) = bed.get("accounts").await;
    assert_eq!(status, 200);
    let regions: Vec<(&str, Option<&str>)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["accountId"].as_str().unwrap(), a["homeRegion"].as_str()))
        .collect();
    assert_eq!(regions, [(A, None), (DEFAULT, Some(REGION)), (B, Some(REGION)), (C, Some("eu-west-1"))]);

    for (body, field) in [
        (json!({"accountId": "1111"}), "`accountId`"),
        (json!({"accountId": A, "homeRegion": 5}), "`homeRegion`"),
        (json!({"homeRegion": REGION}), "accountId"),
        (json!({"accountId": A, "region": REGION}), "region"),
    ] {
        let (status, err) = bed.post("accounts", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(err["error"].as_str().unwrap().contains(field), "{body}: {err}");
    }
    let (status, err) = bed.post("home-region", json!({"region": REGION, "accountId": "x"})).await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("`accountId`"), "{err}");
}

#[tokio::test]
async fn get_caller_identity_answers_the_callers_account() {
    let bed = Bed::new().await;
    let who = |key: &str| {
        let client = bed.sts(key);
        async move {
            let out = client.get_caller_identity().send().await.expect("GetCallerIdentity");
            (out.account().unwrap().to_owned(), out.arn().unwrap().to_owned())
        }
    };
    assert_eq!(who(KEY_A).await, (A.to_owned(), format!("arn:aws:iam::{A}:user/{KEY_A}")));
    assert_eq!(who("AKIDUNKNOWN").await.0, DEFAULT, "an unknown key (non-strict) is the default account");

    let role = format!("arn:aws:iam::{B}:role/reader");
    bed.emu().identity().set_role(Role {
        role_arn: role.clone(),
        principals: vec![format!("arn:aws:iam::{A}:root")],
        ..Role::default()
    });
    let provider = AssumeRoleProvider::builder(&role).session_name("whoami").configure(&bed.sdk(KEY_A)).build().await;
    let assumed = sts::Client::new(&bed.sdk_with(SharedCredentialsProvider::new(provider)));
    let out = assumed.get_caller_identity().send().await.expect("GetCallerIdentity as the role");
    assert_eq!(out.account(), Some(B), "assumed-role credentials are in the role's account");
}

#[tokio::test]
async fn assume_role_trusts_listed_principals_account_roots_and_external_ids() {
    let bed = Bed::new().await;
    let id = bed.emu().identity();
    let role = |name: &str, principals: Vec<String>, external_id: Option<&str>| {
        let arn = format!("arn:aws:iam::{B}:role/{name}");
        id.set_role(Role {
            role_arn: arn.clone(),
            principals,
            external_id: external_id.map(str::to_owned),
            ..Role::default()
        });
        arn
    };
    let user_a = format!("arn:aws:iam::{A}:user/{KEY_A}");
    let user_c = format!("arn:aws:iam::{C}:user/{KEY_C}");
    let listed = role("listed", vec![user_a.clone()], None);
    let by_root = role("by-root", vec![format!("arn:aws:iam::{A}:root")], None);
    let tenant = role("tenant", vec![format!("arn:aws:iam::{A}:root")], Some("tenant-42"));

    let assume = |key: &str, arn: &str, external_id: Option<&str>| {
        let call = bed
            .sts(key)
            .assume_role()
            .role_arn(arn)
            .role_session_name("sess-1")
            .set_external_id(external_id.map(str::to_owned));
        async move { call.send().await }
    };
    let denied = |caller: &str, arn: &str| {
        format!("User: {caller} is not authorized to perform: sts:AssumeRole on resource: {arn}")
    };
    let refusal = |result: Result<_, sts::error::SdkError<_>>| {
        let err = result.expect_err("refused");
        let status = err.raw_response().map(|r| r.status().as_u16());
        let meta = ProvideErrorMetadata::meta(&err).clone();
        (meta.code().unwrap_or_default().to_owned(), meta.message().unwrap_or_default().to_owned(), status)
    };

    let out = assume(KEY_A, &listed, None).await.expect("a listed principal");
    assert_eq!(out.assumed_role_user().unwrap().arn(), format!("arn:aws:sts::{B}:assumed-role/listed/sess-1"));
    assert_eq!(
        refusal(assume(KEY_C, &listed, None).await),
        ("AccessDenied".into(), denied(&user_c, &listed), Some(403))
    );
    assume(KEY_A, &by_root, None).await.expect("any principal of the trusted account");
    assume(KEY_A, &by_root, Some("unneeded-id")).await.expect("an external ID the role does not need is ignored");
    assert_eq!(refusal(assume(KEY_C, &by_root, None).await).0, "AccessDenied", "another account's root");

    for sent in [None, Some("tenant-43")] {
        let (code, message, status) = refusal(assume(KEY_A, &tenant, sent).await);
        assert_eq!((code.as_str(), status), ("AccessDenied", Some(403)), "external ID {sent:?}");
        assert_eq!(message, denied(&user_a, &tenant));
    }
    let out = assume(KEY_A, &tenant, Some("tenant-42")).await.expect("the right external ID");
    assert_eq!(out.assumed_role_user().unwrap().arn(), format!("arn:aws:sts::{B}:assumed-role/tenant/sess-1"));

    // Parameters are validated as STS does, before any trust decision.
    let bad_session = bed.sts(KEY_A).assume_role().role_arn(&tenant).role_session_name("a b").send().await;
    let (code, message, _) = refusal(bad_session);
    assert_eq!(code, "ValidationError");
    assert!(message.contains("at 'roleSessionName' failed to satisfy constraint"), "{message}");
    let (code, message, _) = refusal(assume(KEY_A, &tenant, Some("x")).await);
    assert_eq!(code, "ValidationError");
    assert!(message.contains("at 'externalId'") && message.contains("greater than or equal to 2"), "{message}");
    // Refused calls issued nothing: 4 successes above.
    assert_eq!(bed.emu().identity().issued().len(), 4);
    assert_eq!(bed.emu().account_counters(A).get("AssumeRole", "ok"), 4);
    assert_eq!(bed.emu().account_counters(C).get("AssumeRole", "AccessDenied"), 2);
}

#[tokio::test]
async fn assume_role_provider_with_external_id_lands_in_the_roles_account() {
    let bed = Bed::new().await;
    // Strict mode: every signature, the provider's STS call's and the ADS calls', is checked.
    bed.emu().identity().set_strict(true);
    let role = format!("arn:aws:iam::{B}:role/ads-export-operator");
    bed.emu().identity().set_role(Role {
        role_arn: role.clone(),
        principals: vec![format!("arn:aws:iam::{A}:root")],
        external_id: Some("cluster-1".into()),
        ..Role::default()
    });
    let provider = AssumeRoleProvider::builder(&role)
        .session_name("ads-export-operator")
        .external_id("cluster-1")
        .configure(&bed.sdk(KEY_A))
        .build()
        .await;
    let creds = provider.provide_credentials().await.expect("AssumeRole through the provider");
    assert!(creds.access_key_id().starts_with("ASIA") && creds.session_token().is_some());
    assert_eq!(creds.account_id().map(|a| a.as_str()), Some(B), "aws-config reads the account from the ARN");

    let ads = ads::Client::new(&bed.sdk_with(SharedCredentialsProvider::new(provider)));
    let export = start(&ads).await;
    let view = bed.emu().exports().into_iter().find(|e| e.export_id == export).expect("export listed");
    assert_eq!(view.account_id, B, "the export is in the role's account");
    assert_eq!(bed.emu().identity().call_classes().get("temporary"), Some(&1));
    let err = bed.ads(KEY_B).describe_continuous_exports().export_ids(&export).send().await;
    assert!(err.is_ok(), "B's own static key sees it: {err:?}");
    let err = bed.ads(KEY_A).describe_continuous_exports().export_ids(&export).send().await.unwrap_err();
    assert_eq!(code(&err), "ResourceNotFoundException", "not in the caller's account A");

    // A wrong external ID fails the provider as STS's AccessDenied.
    let wrong = AssumeRoleProvider::builder(&role).external_id("cluster-2").configure(&bed.sdk(KEY_A)).build().await;
    let err = wrong.provide_credentials().await.expect_err("wrong external ID");
    assert!(format!("{:?}", err).contains("AccessDenied"), "{err:?}");
}

#[tokio::test]
async fn faults_rate_limits_and_counters_are_per_account() {
    let bed = Bed::new().await;
    let (a, b) = (bed.ads(KEY_A), bed.ads(KEY_B));
    let fault = json!({"operation": "DescribeContinuousExports", "http": 503, "accountId": A});
    let (status, active) = bed.post("faults", fault).await;
    assert_eq!(status, 201);
    assert_eq!(active[0]["accountId"], A);
    let err = a.describe_continuous_exports().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503), "A's fault");
    b.describe_continuous_exports().send().await.expect("B is spared");
    assert_eq!(bed.emu().faults().len(), 1, "unused by B's call, still active");
    let (status, bad) = bed.post("faults", json!({"http": 503, "accountId": "nope"})).await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("`accountId`"), "{bad}");
    assert_eq!(
        reqwest::Client::new().delete(format!("{}/_emulator/faults", bed.url())).send().await.unwrap().status(),
        200
    );

    // One call per thousand seconds (a burst of one) for A; B unlimited.
    assert_eq!(bed.post("rate-limit", json!({"perSecond": 0.001, "accountId": A})).await.0, 200);
    a.describe_continuous_exports().send().await.expect("A's one token");
    let err = a.describe_continuous_exports().send().await.unwrap_err();
    assert_eq!(code(&err), "ThrottlingException");
    for _ in 0..5 {
        b.describe_continuous_exports().send().await.expect("B is not throttled");
    }
    assert_eq!(bed.post("rate-limit", json!({"perSecond": null, "accountId": A})).await.0, 200);
    a.describe_continuous_exports().send().await.expect("A's limit is off");
    for (body, field) in [
        (json!({"perSecond": -1}), "`perSecond`"),
        (json!({"perSecond": 1, "accountId": "1"}), "`accountId`"),
        (json!({"perSecond": "fast"}), "`perSecond`"),
    ] {
        let (status, err) = bed.post("rate-limit", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(err["error"].as_str().unwrap().contains(field), "{body}: {err}");
    }

    let (_, counters) = bed.get("counters").await;
    let describe = "DescribeContinuousExports";
    assert_eq!(counters["byAccount"][A][describe], json!({"http503": 1, "ok": 2, "ThrottlingException": 1}));
    assert_eq!(counters["byAccount"][B][describe], json!({"ok": 6}));
    assert_eq!(counters[describe], json!({"http503": 1, "ok": 8, "ThrottlingException": 1}), "totals keep their shape");
    assert_eq!(bed.emu().account_counters(B).total(describe), 6);
}

#[test]
fn the_identity_config_file_takes_accounts_and_external_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let good = json!({
        "staticKeys": [{"accessKeyId": KEY_A, "secretAccessKey": "s", "accountId": A}],
        "roles": [{"roleArn": format!("arn:aws:iam::{B}:role/r"), "principals": [format!("arn:aws:iam::{A}:root")], "externalId": "tenant-42"}],
    });
    std::fs::write(&path, good.to_string()).unwrap();
    let cfg = IdentityConfig::load(&path).expect("valid config");
    assert_eq!(cfg.static_keys[0].account(), A);
    assert_eq!(cfg.roles[0].external_id.as_deref(), Some("tenant-42"));
    assert_eq!(cfg.roles[0].account(), B);
    let key = StaticKey { access_key_id: KEY_A.into(), account_id: Some(A.into()), ..StaticKey::default() };
    assert_eq!(key.caller_arn(), format!("arn:aws:iam::{A}:user/{KEY_A}"));

    for (bad, field) in [
        (
            json!({"staticKeys": [{"accessKeyId": "K", "secretAccessKey": "s", "accountId": "1"}]}),
            "staticKeys[0]: field `accountId`",
        ),
        (json!({"roles": [{"roleArn": format!("arn:aws:iam::{B}:role/r"), "externalId": "x"}]}), "field `externalId`"),
    ] {
        std::fs::write(&path, bad.to_string()).unwrap();
        let err = IdentityConfig::load(&path).unwrap_err();
        assert!(err.contains(field), "{err}");
    }
}
