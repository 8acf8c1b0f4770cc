//! The emulator's Migration Hub Config API (the home region), driven through the real
//! `aws-sdk-migrationhubconfig` client, plus STS `GetCallerIdentity` through `aws-sdk-sts`:
//! the same home region answers Migration Hub Config and ADS, and faults reach it.

use aws_sdk_applicationdiscovery as ads;
use aws_sdk_migrationhubconfig as mhc;
use mhc::config::retry::RetryConfig;
use mhc::config::{BehaviorVersion, Credentials, Region};
use mhc::error::{ProvideErrorMetadata, SdkError};
use mhc::operation::create_home_region_control::CreateHomeRegionControlError;
use mhc::operation::get_home_region::GetHomeRegionError;
use mhc::types::{Target, TargetType};

use ads_export_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";

fn credentials() -> Credentials {
    Credentials::new("AKIDTEST", "secret", None, None, "test")
}

/// An SDK client for Migration Hub Config at `url`, signing for `region`, no retries.
fn config_client(url: &str, region: &str) -> mhc::Client {
    let config = mhc::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(url)
        .credentials_provider(credentials())
        .retry_config(RetryConfig::disabled())
        .build();
    mhc::Client::from_conf(config)
}

fn ads_client(url: &str, region: &str) -> ads::Client {
    let config = ads::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(ads::config::Region::new(region.to_owned()))
        .endpoint_url(url)
        .credentials_provider(credentials())
        .retry_config(RetryConfig::disabled())
        .build();
    ads::Client::from_conf(config)
}

async fn emulator(home_region: Option<&str>) -> RunningEmulator {
    let cfg = EmulatorConfig { home_region: home_region.map(str::to_owned), ..EmulatorConfig::default() };
    Emulator::new(cfg).spawn("127.0.0.1:0").await.expect("spawn emulator")
}

async fn admin(url: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new().post(format!("{url}/_emulator/{path}")).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.expect("admin JSON"))
}

async fn home_region(client: &mhc::Client) -> Option<String> {
    client.get_home_region().send().await.expect("GetHomeRegion").home_region().map(str::to_owned)
}

/// Whether ADS accepts a call signed for `region` (else it answers HomeRegionNotSetException).
async fn ads_accepts(url: &str, region: &str) -> bool {
    match ads_client(url, region).describe_continuous_exports().send().await {
        Ok(_) => true,
        Err(e) if e.code() == Some("HomeRegionNotSetException") => false,
        Err(e) => panic!("unexpected ADS answer: {}", mhc::error::DisplayErrorContext(&e)),
    }
}

fn account_target() -> Target {
    Target::builder().r#type(TargetType::Account).id(ACCOUNT).build().unwrap()
}

#[tokio::test]
async fn the_home_region_answers_both_apis_and_the_admin_call_moves_both() {
    let emu = emulator(Some("us-west-2")).await;
    let url = emu.endpoint_url();
    // Migration Hub Config answers in any region, with the one home region
    for signing in ["us-west-2", "eu-central-1"] {
        assert_eq!(home_region(&config_client(&url, signing)).await.as_deref(), Some("us-west-2"), "{signing}");
    }
    let client = config_client(&url, "us-west-2");
    assert!(ads_accepts(&url, "us-west-2").await);
    assert!(!ads_accepts(&url, "eu-central-1").await);

    assert_eq!(admin(&url, "home-region", json!({"region": "eu-central-1"})).await.0, 200);
    assert_eq!(home_region(&client).await.as_deref(), Some("eu-central-1"));
    assert!(ads_accepts(&url, "eu-central-1").await);
    assert!(!ads_accepts(&url, "us-west-2").await);
    let controls = client.describe_home_region_controls().send().await.unwrap();
    let [control] = controls.home_region_controls() else { panic!("one control: {controls:?}") };
    assert_eq!(control.home_region(), Some("eu-central-1"));
    assert_eq!(control.target().map(|t| (t.r#type().clone(), t.id())), Some((TargetType::Account, Some(ACCOUNT))));

    // cleared: GetHomeRegion answers without HomeRegion, no control, ADS refuses everywhere
    assert_eq!(admin(&url, "home-region", json!({"region": null})).await.0, 200);
    assert_eq!(home_region(&client).await, None);
    assert!(client.describe_home_region_controls().send().await.unwrap().home_region_controls().is_empty());
    assert!(!ads_accepts(&url, "eu-central-1").await);
    let counters = emu.emulator.counters();
    assert_eq!(counters.get("GetHomeRegion", "ok"), 4);
    assert_eq!(counters.get("DescribeHomeRegionControls", "ok"), 2);
}

#[tokio::test]
async fn create_home_region_control_sets_the_home_region_once() {
    let emu = emulator(None).await;
    let url = emu.endpoint_url();
    let client = config_client(&url, "us-west-2");
    assert_eq!(home_region(&client).await, None);

    // DryRun: authorized, no effect
    let err = client
        .create_home_region_control()
        .home_region("eu-central-1")
        .target(account_target())
        .dry_run(true)
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().expect("a modelled error");
    assert!(matches!(service, CreateHomeRegionControlError::DryRunOperation(_)), "{service:?}");
    assert_eq!(home_region(&client).await, None);

    let out = client
        .create_home_region_control()
        .home_region("eu-central-1")
        .target(account_target())
        .send()
        .await
        .expect("CreateHomeRegionControl");
    let control = out.home_region_control().expect("HomeRegionControl");
    let id = control.control_id().expect("ControlId");
    let suffix = id.strip_prefix("hrc-").expect("hrc- prefix");
    assert!(suffix.len() == 12 && suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{id}");
    assert_eq!(control.home_region(), Some("eu-central-1"));
    assert_eq!(control.target().and_then(|t| t.id()), Some(ACCOUNT));
    let requested = control.requested_time().expect("RequestedTime").secs();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - requested).abs() < 60, "RequestedTime {requested} vs now {now}");

    // ADS now answers there; the emulator's own view agrees
    assert_eq!(emu.emulator.home_region().as_deref(), Some("eu-central-1"));
    assert!(ads_accepts(&url, "eu-central-1").await);
    assert_eq!(home_region(&client).await.as_deref(), Some("eu-central-1"));

    // Describe with filters
    let by_id = client.describe_home_region_controls().control_id(id).send().await.unwrap();
    assert_eq!(by_id.home_region_controls().len(), 1);
    let other = client.describe_home_region_controls().home_region("us-east-1").send().await.unwrap();
    assert!(other.home_region_controls().is_empty());

    // a second control, bad input: InvalidInputException naming the problem
    let again = client.create_home_region_control().home_region("us-west-2").target(account_target()).send().await;
    let err = again.unwrap_err();
    assert!(matches!(err.as_service_error(), Some(CreateHomeRegionControlError::InvalidInputException(_))));
    assert!(err.message().unwrap_or_default().contains("already set"), "{:?}", err.message());
    let foreign = Target::builder().r#type(TargetType::Account).id("999999999999").build().unwrap();
    let err = client.describe_home_region_controls().target(foreign).send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidInputException"));
    assert!(err.message().unwrap_or_default().contains("999999999999"), "{:?}", err.message());
    let err = client.describe_home_region_controls().max_results(0).send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidInputException"));
    assert!(err.message().unwrap_or_default().contains("MaxResults"), "{:?}", err.message());
}

#[tokio::test]
async fn faults_reach_migration_hub_config_with_its_documented_errors() {
    let emu = emulator(Some("us-west-2")).await;
    let url = emu.endpoint_url();
    let client = config_client(&url, "us-west-2");
    let faults = json!([
        {"operation": "GetHomeRegion", "error": "AccessDeniedException", "message": "no mgh:GetHomeRegion", "count": 1},
        {"operation": "GetHomeRegion", "error": "ThrottlingException", "count": 1},
        {"operation": "GetHomeRegion", "error": "InternalServerError", "count": 1},
        {"operation": "GetHomeRegion", "error": "ServiceUnavailableException", "count": 1},
        {"operation": "GetHomeRegion", "error": "InvalidInputException", "count": 1},
    ]);
    assert_eq!(admin(&url, "faults", faults).await.0, 201);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let err = client.get_home_region().send().await.unwrap_err();
        let status = match &err {
            SdkError::ServiceError(s) => s.raw().status().as_u16(),
            other => panic!("not a service error: {other:?}"),
        };
        let service = err.into_service_error();
        let variant = match &service {
            GetHomeRegionError::AccessDeniedException(_) => "AccessDeniedException",
            GetHomeRegionError::ThrottlingException(_) => "ThrottlingException",
            GetHomeRegionError::InternalServerError(_) => "InternalServerError",
            GetHomeRegionError::ServiceUnavailableException(_) => "ServiceUnavailableException",
            GetHomeRegionError::InvalidInputException(_) => "InvalidInputException",
            other => panic!("unmodelled: {other:?}"),
        };
        seen.push((variant, status, service.message().map(str::to_owned)));
    }
    assert_eq!(
        seen.iter().map(|(v, s, _)| (*v, *s)).collect::<Vec<_>>(),
        [
            ("AccessDeniedException", 400),
            ("ThrottlingException", 400),
            ("InternalServerError", 500),
            ("ServiceUnavailableException", 503),
            ("InvalidInputException", 400),
        ]
    );
    // the modelled `Message` member reaches the SDK's typed error
    assert_eq!(seen[0].2.as_deref(), Some("no mgh:GetHomeRegion"));
    assert_eq!(home_region(&client).await.as_deref(), Some("us-west-2"), "the faults are used up");
    let counters = emu.emulator.counters();
    assert_eq!(counters.get("GetHomeRegion", "AccessDeniedException"), 1);
    assert_eq!(counters.get("GetHomeRegion", "ok"), 1);

    // an error ADS documents but Migration Hub Config does not is refused, naming the field
    let (status, body) =
        admin(&url, "faults", json!({"operation": "GetHomeRegion", "error": "ConflictErrorException"})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("field `error`"), "{body}");
    // a fault without operation reaches both APIs
    assert_eq!(admin(&url, "faults", json!({"http": 503, "count": 2})).await.0, 201);
    let err = client.get_home_region().send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert!(ads_client(&url, "us-west-2").describe_continuous_exports().send().await.is_err());
    assert!(ads_accepts(&url, "us-west-2").await);
}

#[tokio::test]
async fn get_caller_identity_names_the_emulated_account() {
    let emu = emulator(Some("us-west-2")).await;
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-west-2"))
        .endpoint_url(emu.endpoint_url())
        .credentials_provider(credentials())
        .build();
    let out = aws_sdk_sts::Client::from_conf(config).get_caller_identity().send().await.expect("GetCallerIdentity");
    assert_eq!(out.account(), Some(ACCOUNT));
    assert_eq!(out.arn(), Some("arn:aws:iam::123456789012:user/AKIDTEST"));
    assert_eq!(out.user_id(), Some("AKIDTEST"));
}
