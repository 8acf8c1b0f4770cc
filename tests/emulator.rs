//! The ADS emulator, driven through the real `aws-sdk-applicationdiscovery` client, raw HTTP
//! and its binary.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ads::config::retry::RetryConfig;
use ads::config::{BehaviorVersion, Credentials, Region};
use ads::error::{ProvideErrorMetadata, SdkError};
use ads::operation::describe_continuous_exports::DescribeContinuousExportsError;
use ads::operation::start_continuous_export::StartContinuousExportError;
use ads::operation::stop_continuous_export::StopContinuousExportError;
use ads::primitives::DateTime;
use ads::types::{ContinuousExportDescription, ContinuousExportStatus, DataSource};
use ads_export_operator::emulator::{Emulator, EmulatorConfig, ExportStatus, Fault, FaultKind, RunningEmulator};
use aws_sdk_applicationdiscovery as ads;
use serde_json::{Value, json};

const REGION: &str = "us-west-2";
const DEADLINE: Duration = Duration::from_secs(10);
const FAKE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20240101/us-west-2/discovery/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000";

// ---------------------------------------------------------------- helpers

fn client_with(url: &str, region: &str, retry: RetryConfig) -> ads::Client {
    let config = ads::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(retry)
        .build();
    ads::Client::from_conf(config)
}

/// An emulator served on a free port plus an SDK client (home region, no retries).
struct Bed {
    running: RunningEmulator,
    client: ads::Client,
}

impl Bed {
    async fn new(cfg: EmulatorConfig) -> Self {
        let running = Emulator::new(cfg).spawn("127.0.0.1:0").await.expect("spawn emulator");
        let client = client_with(&running.endpoint_url(), REGION, RetryConfig::disabled());
        Bed { running, client }
    }

    /// Home region set, no delays.
    async fn home() -> Self {
        Self::new(EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() }).await
    }

    fn emu(&self) -> &Emulator {
        &self.running.emulator
    }

    fn url(&self) -> String {
        self.running.endpoint_url()
    }

    async fn start(&self) -> String {
        let out = self.client.start_continuous_export().send().await.expect("StartContinuousExport");
        out.export_id().expect("exportId").to_owned()
    }

    async fn describe(&self, id: &str) -> ContinuousExportDescription {
        let out =
            self.client.describe_continuous_exports().export_ids(id).send().await.expect("DescribeContinuousExports");
        match out.descriptions() {
            [d] => d.clone(),
            other => panic!("expected one description, got {other:?}"),
        }
    }

    async fn status(&self, id: &str) -> ContinuousExportStatus {
        self.describe(id).await.status().cloned().expect("status")
    }

    async fn stop(&self, id: &str) -> ads::operation::stop_continuous_export::StopContinuousExportOutput {
        self.client.stop_continuous_export().export_id(id).send().await.expect("StopContinuousExport")
    }

    /// Polls Describe until the export has `status`, failing after [`DEADLINE`].
    async fn wait_for(&self, id: &str, status: ContinuousExportStatus) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let now = self.status(id).await;
            if now == status {
                return;
            }
            assert!(Instant::now() < deadline, "{id} still {now:?}, wanted {status:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts and stops `n` exports; returns their IDs, oldest first.
    async fn start_stop_cycles(&self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = self.start().await;
            self.stop(&id).await;
            ids.push(id);
        }
        ids
    }
}

fn error_fault(operation: &str, name: &str) -> Fault {
    Fault::new(Some(operation), FaultKind::Error { name: name.into(), message: Some(format!("injected {name}")) })
}

/// Milliseconds since the epoch, rounded to the nearest millisecond (the SDK parses the
/// epoch-seconds double, so `1493405005.639` may become `...638.99999` ns).
fn millis(t: &DateTime) -> i128 {
    (t.as_nanos() + 500_000).div_euclid(1_000_000)
}

/// A raw awsJson1.1 call; `auth` adds an (unverified) SigV4-shaped Authorization header.
async fn raw_call(url: &str, target: Option<&str>, auth: bool, body: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(body.to_owned());
    if let Some(t) = target {
        req = req.header("x-amz-target", format!("AWSPoseidonService_V2015_11_01.{t}"));
    }
    if auth {
        req = req.header("authorization", FAKE_AUTH);
    }
    let resp = req.send().await.expect("raw request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.expect("JSON response body");
    (status, headers, body)
}

async fn admin(method: reqwest::Method, url: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{url}/_emulator/{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("admin JSON"))
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn start_describe_stop_happy_path() {
    let bed = Bed::home().await;
    let started = bed.client.start_continuous_export().send().await.expect("start");
    let id = started.export_id().expect("exportId");
    assert!(id.starts_with("export-") && !id.contains(char::is_whitespace), "{id}");
    let bucket = started.s3_bucket().expect("s3Bucket");
    assert!(bucket.starts_with("aws-application-discovery-service-"), "{bucket}");
    assert_eq!(started.data_source(), Some(&DataSource::Agent));
    assert_eq!(
        started.schema_storage_config().and_then(|c| c.get("databaseName")).map(String::as_str),
        Some("application_discovery_service_database")
    );

    let d = bed.describe(id).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::Active));
    assert_eq!(d.status_detail(), Some("Export is running"));
    assert_eq!(d.s3_bucket(), Some(bucket));
    assert_eq!(d.start_time(), started.start_time());
    assert_eq!(d.stop_time(), None);

    let stopped = bed.stop(id).await;
    assert_eq!(stopped.start_time(), started.start_time());
    let stop_time = stopped.stop_time().expect("stopTime");
    assert!(millis(stop_time) >= millis(started.start_time().expect("startTime")));

    let d = bed.describe(id).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::Inactive));
    assert_eq!(d.status_detail(), Some("Export was stopped by the user"));
    assert_eq!(d.stop_time(), Some(stop_time));

    // A stopped export frees the region for the next one, in the same bucket.
    let next = bed.start().await;
    assert_ne!(next, id);
    assert_eq!(bed.describe(&next).await.s3_bucket(), Some(bucket));
}

#[tokio::test]
async fn timestamps_round_trip_with_millisecond_precision() {
    let bed = Bed::home().await;
    let id = bed.start().await;
    let view = bed.emu().exports().pop().expect("one export");
    assert_eq!(view.export_id, id);
    let sdk_start = bed.describe(&id).await.start_time().copied().expect("startTime");
    assert_eq!(millis(&sdk_start), i128::from(view.start_time_ms));

    // On the wire: epoch seconds as a JSON number with the millisecond fraction.
    let body = format!(r#"{{"exportIds":["{id}"]}}"#);
    let (_, _, raw) = raw_call(&bed.url(), Some("DescribeContinuousExports"), true, &body).await;
    let wire = &raw["descriptions"][0]["startTime"];
    assert!(wire.is_f64(), "{wire}");
    let secs = wire.as_f64().expect("number");
    assert_eq!((secs * 1000.0).round() as u64, view.start_time_ms);
}

#[tokio::test]
async fn second_start_conflicts() {
    let bed = Bed::home().await;
    let first = bed.start().await;
    let err = bed.client.start_continuous_export().send().await.expect_err("second start").into_service_error();
    assert!(matches!(err, StartContinuousExportError::ConflictErrorException(_)), "{err:?}");
    let message = err.message().expect("message");
    assert!(message.contains("already active"), "{message}");
    assert!(!message.contains(&first), "real ADS does not name the export: {message}");
}

// ---------------------------------------------------------------- Describe

#[tokio::test]
async fn pagination_walks_every_export_once() {
    let bed = Bed::home().await;
    let mut ids = bed.start_stop_cycles(5).await;
    ids.reverse(); // newest first

    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = bed
            .client
            .describe_continuous_exports()
            .max_results(1)
            .set_next_token(token)
            .send()
            .await
            .expect("describe page");
        assert!(page.descriptions().len() <= 1);
        seen.extend(page.descriptions().iter().filter_map(|d| d.export_id().map(str::to_owned)));
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
        assert!(seen.len() <= ids.len(), "pagination does not end");
    }
    assert_eq!(seen, ids);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), ids.len());

    // The SDK's own paginator agrees, whatever the page size.
    let items: Vec<_> = bed
        .client
        .describe_continuous_exports()
        .into_paginator()
        .page_size(2)
        .items()
        .send()
        .try_collect()
        .await
        .expect("paginate");
    let paginated: Vec<_> = items.iter().filter_map(|d| d.export_id().map(str::to_owned)).collect();
    assert_eq!(paginated, ids);
}

#[tokio::test]
async fn describe_filters_by_export_ids() {
    let bed = Bed::home().await;
    let ids = bed.start_stop_cycles(3).await;
    let out = bed
        .client
        .describe_continuous_exports()
        .export_ids(&ids[0])
        .export_ids(&ids[2])
        .send()
        .await
        .expect("describe");
    let got: Vec<_> = out.descriptions().iter().filter_map(|d| d.export_id()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[0].as_str()]);
    assert_eq!(out.next_token(), None);

    let err = bed
        .client
        .describe_continuous_exports()
        .export_ids(&ids[0])
        .export_ids("export-unknown")
        .send()
        .await
        .expect_err("unknown id")
        .into_service_error();
    assert!(matches!(err, DescribeContinuousExportsError::ResourceNotFoundException(_)), "{err:?}");
}

#[tokio::test]
async fn describe_rejects_invalid_parameters() {
    let bed = Bed::home().await;
    let too_long = "x".repeat(201);
    for (max_results, token, id) in [
        (Some(0), None, None),
        (Some(101), None, None),
        (Some(-1), None, None),
        (None, Some("not-a-token"), None),
        (None, None, Some("has space")),
        (None, None, Some(too_long.as_str())),
    ] {
        let err = bed
            .client
            .describe_continuous_exports()
            .set_max_results(max_results)
            .set_next_token(token.map(str::to_owned))
            .set_export_ids(id.map(|i| vec![i.to_owned()]))
            .send()
            .await
            .expect_err("invalid describe")
            .into_service_error();
        assert!(
            matches!(err, DescribeContinuousExportsError::InvalidParameterValueException(_)),
            "{max_results:?} {token:?} {id:?}: {err:?}"
        );
    }
    // The limits themselves are fine.
    for n in [1, 100] {
        bed.client.describe_continuous_exports().max_results(n).send().await.expect("in range");
    }
}

// ---------------------------------------------------------------- Stop

#[tokio::test]
async fn stop_rejects_unknown_and_invalid_ids() {
    let bed = Bed::home().await;
    let stop_err = |id: String| {
        let client = bed.client.clone();
        async move {
            client
                .stop_continuous_export()
                .export_id(id)
                .send()
                .await
                .expect_err("stop should fail")
                .into_service_error()
        }
    };
    let err = stop_err("export-unknown".into()).await;
    assert!(matches!(err, StopContinuousExportError::ResourceNotFoundException(_)), "{err:?}");
    for bad in ["x".repeat(201), "export with space".into(), "tab\there".into()] {
        let err = stop_err(bad).await;
        assert!(matches!(err, StopContinuousExportError::InvalidParameterValueException(_)), "{err:?}");
    }
}

#[tokio::test]
async fn delays_hold_exports_in_progress() {
    let hour = Duration::from_secs(3600);
    let bed = Bed::new(EmulatorConfig { home_region: Some(REGION.into()), start_delay: hour, stop_delay: hour }).await;
    let id = bed.start().await;
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::StartInProgress);

    let err = bed.client.stop_continuous_export().export_id(&id).send().await;
    let err = err.expect_err("stop while starting").into_service_error();
    assert!(matches!(err, StopContinuousExportError::ResourceInUseException(_)), "{err:?}");
    let err = bed.client.start_continuous_export().send().await;
    let err = err.expect_err("start while starting").into_service_error();
    assert!(matches!(err, StartContinuousExportError::ConflictErrorException(_)), "{err:?}");

    bed.emu().set_delays(Duration::ZERO, hour);
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::Active);

    let stopped = bed.stop(&id).await;
    assert!(stopped.stop_time().is_some());
    let d = bed.describe(&id).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::StopInProgress));
    assert_eq!(d.stop_time(), stopped.stop_time());

    let err = bed.client.stop_continuous_export().export_id(&id).send().await;
    let err = err.expect_err("second stop").into_service_error();
    assert!(matches!(err, StopContinuousExportError::OperationNotPermittedException(_)), "{err:?}");
    assert!(err.message().is_some_and(|m| m.contains("STOP_IN_PROGRESS")), "{err:?}");

    bed.emu().set_delays(Duration::ZERO, Duration::ZERO);
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::Inactive);
}

#[tokio::test]
async fn delays_elapse_in_real_time() {
    let delay = Duration::from_millis(300);
    let bed =
        Bed::new(EmulatorConfig { home_region: Some(REGION.into()), start_delay: delay, stop_delay: delay }).await;
    let started = Instant::now();
    let id = bed.start().await;
    bed.wait_for(&id, ContinuousExportStatus::Active).await;
    assert!(started.elapsed() >= delay);

    let stopping = Instant::now();
    bed.stop(&id).await;
    bed.wait_for(&id, ContinuousExportStatus::Inactive).await;
    assert!(stopping.elapsed() >= delay);
}

#[tokio::test]
async fn stop_sample_response_omits_times_but_still_stops() {
    let bed = Bed::home().await;
    bed.emu().set_stop_sample_response(true);
    let id = bed.start().await;
    let out = bed.stop(&id).await;
    assert_eq!((out.start_time(), out.stop_time()), (None, None));
    let d = bed.describe(&id).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::Inactive));
    assert!(d.stop_time().is_some(), "Describe still reports the stop time");
}

#[tokio::test]
async fn out_of_band_stop_error_and_failed_states() {
    let bed = Bed::home().await;
    let id = bed.start().await;
    bed.emu().stop_out_of_band(&id).expect("console stop");
    let d = bed.describe(&id).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::Inactive));
    assert!(d.stop_time().is_some());
    assert!(bed.emu().stop_out_of_band(&id).is_err(), "already stopped");
    assert!(bed.emu().stop_out_of_band("export-unknown").is_err());

    // ERROR exports report their detail and may still be stopped.
    let id = bed.start().await;
    bed.emu().set_error(&id, "S3 bucket is not accessible").expect("set error");
    let d = bed.describe(&id).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::Error));
    assert_eq!(d.status_detail(), Some("S3 bucket is not accessible"));
    bed.stop(&id).await;
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::Inactive);
    assert!(bed.emu().set_error("export-unknown", "x").is_err());

    // States with nothing to stop refuse Stop, naming the status (STOP_FAILED may be
    // stopped again: see stop_failed_export_is_stopped_again).
    for status in [ExportStatus::StartFailed, ExportStatus::Inactive] {
        bed.emu().set_status(&id, status, None).expect("set status");
        let err = bed.client.stop_continuous_export().export_id(&id).send().await;
        let err = err.expect_err("stop terminal export").into_service_error();
        assert!(matches!(err, StopContinuousExportError::OperationNotPermittedException(_)), "{err:?}");
        assert!(err.message().is_some_and(|m| m.contains(status.as_str())), "{err:?}");
    }
}

/// AWS, ContinuousExportDescription.status: "STOP_FAILED - an error occurred stopping
/// the export. To recover, call stop-continuous-export again."
#[tokio::test]
async fn stop_failed_export_is_stopped_again() {
    let hour = Duration::from_secs(3600);
    let bed =
        Bed::new(EmulatorConfig { home_region: Some(REGION.into()), start_delay: Duration::ZERO, stop_delay: hour })
            .await;
    let started = bed.client.start_continuous_export().send().await.expect("start");
    let id = started.export_id().expect("exportId").to_owned();
    bed.stop(&id).await;
    bed.emu().set_status(&id, ExportStatus::StopFailed, Some("FIREHOSE_ROLE_MISSING")).expect("set status");
    let failed = bed.describe(&id).await;
    assert_eq!(failed.status(), Some(&ContinuousExportStatus::StopFailed));
    assert_eq!(failed.status_detail(), Some("FIREHOSE_ROLE_MISSING"));

    // Stop again: answered like any Stop, and the export is stopping again.
    let again = bed.stop(&id).await;
    assert_eq!(again.start_time(), started.start_time());
    let stop_time = again.stop_time().expect("stopTime");
    assert!(millis(stop_time) >= millis(failed.stop_time().expect("stopTime of the failed stop")));
    let d = bed.describe(&id).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::StopInProgress));
    assert_eq!(d.status_detail(), Some("Export is stopping"));
    assert_eq!(d.stop_time(), Some(stop_time));
    assert_eq!(bed.emu().counters().get("StopContinuousExport", "ok"), 2);

    // While it is stopping, a third Stop is still refused; the stop delay then ends it.
    let err = bed.client.stop_continuous_export().export_id(&id).send().await;
    let err = err.expect_err("stop while stopping").into_service_error();
    assert!(matches!(err, StopContinuousExportError::OperationNotPermittedException(_)), "{err:?}");
    assert!(err.message().is_some_and(|m| m.contains("STOP_IN_PROGRESS")), "{err:?}");
    bed.emu().set_delays(Duration::ZERO, Duration::ZERO);
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::Inactive);

    // The same with the stop delay elapsing in real time, and through the console.
    bed.emu().set_delays(Duration::ZERO, Duration::from_millis(300));
    bed.emu().set_status(&id, ExportStatus::StopFailed, None).expect("set status");
    bed.stop(&id).await;
    bed.wait_for(&id, ContinuousExportStatus::Inactive).await;
    bed.emu().set_status(&id, ExportStatus::StopFailed, None).expect("set status");
    bed.emu().stop_out_of_band(&id).expect("console stop of a STOP_FAILED export");
    bed.wait_for(&id, ContinuousExportStatus::Inactive).await;
}

/// AWS, ContinuousExportDescription.status: "START_FAILED - an error occurred setting
/// up continuous export. To recover, call start-continuous-export again." A
/// START_FAILED export runs nothing, so it does not make Start conflict.
#[tokio::test]
async fn start_after_start_failed_is_allowed() {
    let bed = Bed::home().await;
    let failed = bed.start().await;
    bed.emu().set_status(&failed, ExportStatus::StartFailed, Some("S3_BUCKET_LIMIT_FAILURE")).expect("set status");
    let next = bed.start().await;
    assert_ne!(next, failed);
    assert_eq!(bed.status(&next).await, ContinuousExportStatus::Active);
    let d = bed.describe(&failed).await;
    assert_eq!(d.status(), Some(&ContinuousExportStatus::StartFailed));
    assert_eq!(d.status_detail(), Some("S3_BUCKET_LIMIT_FAILURE"));
    // ... while the new, running one does.
    let err = bed.client.start_continuous_export().send().await.expect_err("third start").into_service_error();
    assert!(matches!(err, StartContinuousExportError::ConflictErrorException(_)), "{err:?}");
    assert_eq!(bed.emu().counters().get("StartContinuousExport", "ok"), 2);
}

// ---------------------------------------------------------------- home region

#[tokio::test]
async fn without_home_region_every_call_fails() {
    let bed = Bed::new(EmulatorConfig::default()).await;
    let err = bed.client.start_continuous_export().send().await.expect_err("start").into_service_error();
    assert!(matches!(err, StartContinuousExportError::HomeRegionNotSetException(_)), "{err:?}");
    let err = bed.client.describe_continuous_exports().send().await.expect_err("describe").into_service_error();
    assert!(matches!(err, DescribeContinuousExportsError::HomeRegionNotSetException(_)), "{err:?}");
    let err = bed.client.stop_continuous_export().export_id("export-x").send().await;
    let err = err.expect_err("stop").into_service_error();
    assert!(matches!(err, StopContinuousExportError::HomeRegionNotSetException(_)), "{err:?}");

    bed.emu().set_home_region(Some(REGION.into()));
    bed.start().await;
}

#[tokio::test]
async fn calls_to_another_region_fail() {
    let bed = Bed::home().await;
    let other = client_with(&bed.url(), "eu-west-1", RetryConfig::disabled());
    let err = other.start_continuous_export().send().await.expect_err("wrong region").into_service_error();
    assert!(matches!(err, StartContinuousExportError::HomeRegionNotSetException(_)), "{err:?}");
    let message = err.message().expect("message");
    assert!(message.contains("eu-west-1") && message.contains(REGION), "{message}");
    assert!(bed.emu().exports().is_empty());
}

// ---------------------------------------------------------------- faults

/// Injects each named error once for `$op` and asserts `$call` fails with the SDK's typed
/// variant `$enum::<name>` carrying the injected message.
macro_rules! assert_injected_errors {
    ($bed:expr, $op:literal, $call:expr, $enum:ident, [$($variant:ident),+ $(,)?]) => {$(
        $bed.emu().inject_fault(error_fault($op, stringify!($variant)).times(1));
        let err = $call.await.expect_err(concat!($op, " / ", stringify!($variant))).into_service_error();
        assert!(matches!(err, $enum::$variant(_)), "{} / {}: got {err:?}", $op, stringify!($variant));
        assert_eq!(err.message(), Some(concat!("injected ", stringify!($variant))));
    )+};
}

#[tokio::test]
async fn injected_errors_surface_as_typed_sdk_errors() {
    let bed = Bed::home().await;
    let c = &bed.client;
    assert_injected_errors!(
        bed,
        "StartContinuousExport",
        c.start_continuous_export().send(),
        StartContinuousExportError,
        [
            AuthorizationErrorException,
            ConflictErrorException,
            HomeRegionNotSetException,
            InvalidParameterException,
            InvalidParameterValueException,
            OperationNotPermittedException,
            ResourceInUseException,
            ServerInternalErrorException,
        ]
    );
    assert_injected_errors!(
        bed,
        "DescribeContinuousExports",
        c.describe_continuous_exports().send(),
        DescribeContinuousExportsError,
        [
            AuthorizationErrorException,
            HomeRegionNotSetException,
            InvalidParameterException,
            InvalidParameterValueException,
            OperationNotPermittedException,
            ResourceNotFoundException,
            ServerInternalErrorException,
        ]
    );
    assert_injected_errors!(
        bed,
        "StopContinuousExport",
        c.stop_continuous_export().export_id("export-x").send(),
        StopContinuousExportError,
        [
            AuthorizationErrorException,
            HomeRegionNotSetException,
            InvalidParameterException,
            InvalidParameterValueException,
            OperationNotPermittedException,
            ResourceInUseException,
            ResourceNotFoundException,
            ServerInternalErrorException,
        ]
    );

    // An error the SDK does not model for the operation still arrives, with its code.
    bed.emu().inject_fault(error_fault("DescribeContinuousExports", "ConflictErrorException").times(1));
    let err = c.describe_continuous_exports().send().await.expect_err("unmodelled");
    assert_eq!(err.code(), Some("ConflictErrorException"));

    assert!(bed.emu().faults().is_empty(), "every fault was used up");
    assert_eq!(bed.emu().counters().get("StartContinuousExport", "ServerInternalErrorException"), 1);
    assert_eq!(bed.emu().calls("StopContinuousExport"), 8);
}

#[tokio::test]
async fn http_and_throttling_faults_surface_as_retryable_service_errors() {
    let bed = Bed::home().await;
    let status_and_code = |err: &SdkError<DescribeContinuousExportsError>| {
        let status = err.raw_response().map(|r| r.status().as_u16());
        (status, err.code().map(str::to_owned))
    };

    bed.emu().inject_fault(Fault::new(None, FaultKind::Http { status: 503 }).times(1));
    let err = bed.client.describe_continuous_exports().send().await.expect_err("503");
    assert!(matches!(err, SdkError::ServiceError(_)), "{err:?}");
    assert_eq!(status_and_code(&err), (Some(503), Some("ServiceUnavailable".into())));

    bed.emu().inject_fault(Fault::new(None, FaultKind::Throttling).times(1));
    let err = bed.client.describe_continuous_exports().send().await.expect_err("throttled");
    assert!(matches!(err, SdkError::ServiceError(_)), "{err:?}");
    assert_eq!(status_and_code(&err), (Some(400), Some("ThrottlingException".into())));

    // The SDK's standard retry strategy classifies both as retryable.
    let retrying = client_with(
        &bed.url(),
        REGION,
        RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1)),
    );
    for kind in [FaultKind::Http { status: 503 }, FaultKind::Throttling] {
        bed.emu().inject_fault(Fault::new(Some("DescribeContinuousExports"), kind).times(1));
        retrying.describe_continuous_exports().send().await.expect("retried to success");
    }
    let counters = bed.emu().counters();
    assert_eq!(counters.get("DescribeContinuousExports", "http503"), 2);
    assert_eq!(counters.get("DescribeContinuousExports", "ThrottlingException"), 2);
    assert_eq!(counters.get("DescribeContinuousExports", "ok"), 2);
}

#[tokio::test]
async fn latency_fault_delays_then_proceeds() {
    let bed = Bed::home().await;
    let latency = Duration::from_millis(300);
    bed.emu().inject_fault(Fault::new(Some("StartContinuousExport"), FaultKind::Latency { ms: 300 }).times(1));
    // Latency combines with another fault: delayed, then answered by the error.
    bed.emu().inject_fault(error_fault("StartContinuousExport", "AuthorizationErrorException").times(1));
    let t = Instant::now();
    let err = bed.client.start_continuous_export().send().await.expect_err("error after delay");
    assert!(t.elapsed() >= latency, "{:?}", t.elapsed());
    assert!(matches!(err.into_service_error(), StartContinuousExportError::AuthorizationErrorException(_)));

    bed.emu().inject_fault(Fault::new(None, FaultKind::Latency { ms: 300 }).times(1));
    let t = Instant::now();
    bed.start().await;
    assert!(t.elapsed() >= latency, "{:?}", t.elapsed());
    assert!(bed.emu().faults().is_empty());
}

#[tokio::test]
async fn after_effect_fault_answers_an_error_for_a_call_that_took_effect() {
    let bed = Bed::home().await;
    // Injected as JSON, as the admin API and the faults file take it.
    let fault: Fault =
        serde_json::from_value(json!({"operation":"StartContinuousExport","http":500,"afterEffect":true,"count":1}))
            .expect("afterEffect fault");
    bed.emu().inject_fault(fault);
    let err = bed.client.start_continuous_export().send().await.expect_err("HTTP 500 after the effect");
    assert!(matches!(err, SdkError::ServiceError(_)), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert_eq!(err.code(), Some("InternalFailure"));

    // ... yet the export was created, and is listed.
    let out = bed.client.describe_continuous_exports().send().await.expect("DescribeContinuousExports");
    let [d] = out.descriptions() else { panic!("expected one export, got {:?}", out.descriptions()) };
    assert_eq!(d.status(), Some(&ContinuousExportStatus::Active));
    let id = d.export_id().expect("exportId").to_owned();
    assert_eq!(bed.emu().exports().len(), 1);
    // It is really active: a second Start conflicts with it.
    let err = bed.client.start_continuous_export().send().await.expect_err("conflict").into_service_error();
    assert!(matches!(err, StartContinuousExportError::ConflictErrorException(_)), "{err:?}");
    // The counters record what the client was answered.
    let counters = bed.emu().counters();
    assert_eq!(counters.get("StartContinuousExport", "http500"), 1);
    assert_eq!(counters.get("StartContinuousExport", "ok"), 0);
    assert!(bed.emu().faults().is_empty(), "count 1 used up");

    // An error fault with afterEffect on Stop: the export stops all the same.
    bed.emu().inject_fault(error_fault("StopContinuousExport", "ServerInternalErrorException").times(1).after_effect());
    let err = bed.client.stop_continuous_export().export_id(&id).send().await.expect_err("error after the effect");
    assert!(matches!(err.into_service_error(), StopContinuousExportError::ServerInternalErrorException(_)));
    bed.wait_for(&id, ContinuousExportStatus::Inactive).await;

    // A call that fails by itself changes nothing; the fault still answers it.
    let active = bed.start().await;
    bed.emu().inject_fault(Fault::new(Some("StartContinuousExport"), FaultKind::Throttling).times(1).after_effect());
    let err = bed.client.start_continuous_export().send().await.expect_err("throttled");
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_eq!(bed.emu().counters().get("StartContinuousExport", "ConflictErrorException"), 1, "no new conflict");
    let ids: Vec<_> = bed.emu().exports().into_iter().map(|e| e.export_id).collect();
    assert_eq!(ids, [id, active], "no export was added");
}

#[tokio::test]
async fn fault_without_after_effect_answers_instead_of_the_call() {
    let bed = Bed::home().await;
    bed.emu().inject_fault(Fault::new(Some("StartContinuousExport"), FaultKind::Http { status: 500 }).times(1));
    let err = bed.client.start_continuous_export().send().await.expect_err("HTTP 500");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert!(bed.emu().exports().is_empty(), "the call had no effect: {:?}", bed.emu().exports());
    let out = bed.client.describe_continuous_exports().send().await.expect("DescribeContinuousExports");
    assert!(out.descriptions().is_empty(), "{:?}", out.descriptions());
}

#[tokio::test]
async fn fault_count_and_operation_scope() {
    let bed = Bed::home().await;
    bed.emu().inject_fault(error_fault("StartContinuousExport", "AuthorizationErrorException").times(2));
    bed.emu().inject_fault(error_fault("StopContinuousExport", "ServerInternalErrorException"));

    for _ in 0..2 {
        bed.client.start_continuous_export().send().await.expect_err("injected");
    }
    let id = bed.start().await; // count used up
    bed.describe(&id).await; // other operations are untouched

    for _ in 0..3 {
        bed.client.stop_continuous_export().export_id(&id).send().await.expect_err("until cleared");
    }
    bed.emu().clear_faults();
    bed.stop(&id).await;
}

#[tokio::test]
async fn counters_track_operations_and_outcomes() {
    let bed = Bed::home().await;
    let id = bed.start().await;
    bed.client.start_continuous_export().send().await.expect_err("conflict");
    bed.describe(&id).await;
    bed.stop(&id).await;
    bed.client.stop_continuous_export().export_id("export-nope").send().await.expect_err("not found");

    let counters = bed.emu().counters();
    assert_eq!(counters.get("StartContinuousExport", "ok"), 1);
    assert_eq!(counters.get("StartContinuousExport", "ConflictErrorException"), 1);
    assert_eq!(counters.get("DescribeContinuousExports", "ok"), 1);
    assert_eq!(counters.get("StopContinuousExport", "ResourceNotFoundException"), 1);
    assert_eq!(bed.emu().calls("StartContinuousExport"), 2);
    assert_eq!(bed.emu().calls("StopContinuousExport"), 2);

    bed.emu().reset();
    assert_eq!(bed.emu().calls("StartContinuousExport"), 0);
    assert!(bed.emu().exports().is_empty());
}

// ---------------------------------------------------------------- raw HTTP

#[tokio::test]
async fn raw_protocol_errors_are_aws_shaped() {
    let bed = Bed::home().await;
    let url = bed.url();
    let cases = [
        (
            Some("StartContinuousExport"),
            false,
            "{}",
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ),
        (Some("DescribeContinuousExports"), true, "{not json", "SerializationException", ""),
        (Some("DescribeContinuousExports"), true, "[1]", "SerializationException", ""),
        (Some("DescribeContinuousExports"), true, r#"{"maxResults":"ten"}"#, "SerializationException", "maxResults"),
        (Some("DeleteEverything"), true, "{}", "UnknownOperationException", "DeleteEverything"),
        (None, true, "{}", "UnknownOperationException", ""),
        (Some("StopContinuousExport"), true, "{}", "InvalidParameterException", "exportId"),
    ];
    for (target, auth, body, type_name, mentions) in cases {
        let (status, headers, json) = raw_call(&url, target, auth, body).await;
        assert_eq!(status, 400, "{target:?} {body}: {json}");
        assert_eq!(json["__type"], type_name, "{target:?} {body}: {json}");
        let message = json["message"].as_str().expect("message");
        assert!(message.contains(mentions), "{message}");
        assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
        assert!(headers.contains_key("x-amzn-requestid"));
    }
    // Still serving, and the successful raw call has the documented shape.
    let (status, headers, json) = raw_call(&url, Some("StartContinuousExport"), true, "").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["dataSource"], "AGENT");
    assert!(json["startTime"].is_f64(), "{json}");
    assert!(headers.contains_key("x-amzn-requestid"));
    assert_eq!(bed.emu().counters().get("StartContinuousExport", "MissingAuthenticationTokenException"), 1);
}

// ---------------------------------------------------------------- admin API

#[tokio::test]
async fn admin_api_over_http() {
    use reqwest::Method;
    let bed = Bed::new(EmulatorConfig::default()).await;
    let url = bed.url();

    // Home region, then an export to play with.
    let (status, _) = admin(Method::POST, &url, "home-region", Some(json!({ "region": REGION }))).await;
    assert_eq!(status, 200);
    let id = bed.start().await;

    let (status, exports) = admin(Method::GET, &url, "exports", None).await;
    assert_eq!(status, 200);
    assert_eq!(exports[0]["exportId"], id.as_str());
    assert_eq!(exports[0]["status"], "ACTIVE");
    assert_eq!(exports[0]["region"], REGION);
    assert!(exports[0]["startTimeMs"].is_u64());

    // Faults: one, or several at once; listed with their remaining count.
    let fault = json!({"operation": "DescribeContinuousExports", "error": "AuthorizationErrorException", "count": 1});
    let (status, active) = admin(Method::POST, &url, "faults", Some(fault.clone())).await;
    assert_eq!((status, active), (201, json!([fault])));
    let err = bed.client.describe_continuous_exports().send().await.expect_err("injected").into_service_error();
    assert!(matches!(err, DescribeContinuousExportsError::AuthorizationErrorException(_)));
    let (status, active) = admin(Method::POST, &url, "faults", Some(json!([{"http": 503}, {"latencyMs": 1}]))).await;
    assert_eq!((status, active.as_array().map(Vec::len)), (201, Some(2)));
    let fault = json!({"operation": "StopContinuousExport", "http": 502, "afterEffect": true, "count": 2});
    let (status, active) = admin(Method::POST, &url, "faults", Some(fault.clone())).await;
    assert_eq!((status, active[2].clone()), (201, fault), "afterEffect is listed back");
    let (status, _) = admin(Method::DELETE, &url, "faults", None).await;
    assert_eq!(status, 200);
    assert!(bed.emu().faults().is_empty());

    let (_, counters) = admin(Method::GET, &url, "counters", None).await;
    assert_eq!(counters["DescribeContinuousExports"]["AuthorizationErrorException"], 1);
    assert_eq!(counters["StartContinuousExport"]["ok"], 1);

    // Delays and the sample Stop response.
    let (status, _) =
        admin(Method::POST, &url, "delays", Some(json!({"startDelayMs": 0, "stopDelayMs": 3_600_000}))).await;
    assert_eq!(status, 200);
    let (status, _) = admin(Method::POST, &url, "stop-sample-response", Some(json!({"enabled": true}))).await;
    assert_eq!(status, 200);
    let out = bed.stop(&id).await;
    assert_eq!(out.stop_time(), None);
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::StopInProgress);
    bed.emu().set_delays(Duration::ZERO, Duration::ZERO);

    // Out-of-band changes.
    let id = bed.start().await;
    let (status, _) =
        admin(Method::POST, &url, &format!("exports/{id}/error"), Some(json!({"statusDetail": "broken"}))).await;
    assert_eq!(status, 200);
    assert_eq!(bed.describe(&id).await.status_detail(), Some("broken"));
    let (status, _) = admin(Method::POST, &url, &format!("exports/{id}/stop"), None).await;
    assert_eq!(status, 200);
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::Inactive);
    let (status, _) = admin(Method::POST, &url, &format!("exports/{id}/stop"), None).await;
    assert_eq!(status, 409);
    let (status, _) =
        admin(Method::POST, &url, &format!("exports/{id}/status"), Some(json!({"status": "STOP_FAILED"}))).await;
    assert_eq!(status, 200);
    assert_eq!(bed.status(&id).await, ContinuousExportStatus::StopFailed);
    let (status, _) = admin(Method::POST, &url, "exports/export-nope/stop", None).await;
    assert_eq!(status, 404);

    // Bad input: 400 naming the field.
    let (error_path, status_path) = (format!("exports/{id}/error"), format!("exports/{id}/status"));
    let bad = [
        ("faults", json!({"operation": "Nope", "http": 503}), "operation"),
        ("faults", json!({"error": "NopeException"}), "error"),
        ("faults", json!({"http": 503, "count": 0}), "count"),
        ("faults", json!({"latency": 5}), "latency"),
        ("faults", json!({"latencyMs": 5, "afterEffect": true}), "afterEffect"),
        ("home-region", json!({}), "region"),
        ("home-region", json!({"region": 5}), "region"),
        ("delays", json!({"startDelayMs": 5}), "stopDelayMs"),
        ("delays", json!({"startDelayMs": -1, "stopDelayMs": 0}), "-1"),
        ("stop-sample-response", json!({"enabled": "yes"}), "yes"),
        (error_path.as_str(), json!({}), "statusDetail"),
        (status_path.as_str(), json!({"status": "DONE"}), "DONE"),
    ];
    for (path, body, field) in bad {
        let (status, err) = admin(Method::POST, &url, path, Some(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {err}");
        let message = err["error"].as_str().expect("error message");
        assert!(message.contains(field), "{path} {body}: {message}");
    }

    // Reset clears exports, faults and counters; clearing the home region breaks calls.
    let (status, _) = admin(Method::POST, &url, "reset", None).await;
    assert_eq!(status, 200);
    assert!(bed.emu().exports().is_empty());
    assert_eq!(bed.emu().counters().0.len(), 0);
    let (status, _) = admin(Method::POST, &url, "home-region", Some(json!({ "region": null }))).await;
    assert_eq!(status, 200);
    let err = bed.client.start_continuous_export().send().await.expect_err("no home").into_service_error();
    assert!(matches!(err, StartContinuousExportError::HomeRegionNotSetException(_)));
}

// ---------------------------------------------------------------- the binary

/// The `ads-emulator` binary, killed when dropped.
struct Binary(Child);

impl Binary {
    /// Starts the binary on a free port and returns it with the URL it printed.
    fn spawn(args: &[&str]) -> (Self, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ads-emulator"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ads-emulator");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let binary = Binary(child);
        let line = rx.recv_timeout(DEADLINE).expect("ads-emulator printed its address");
        let url = line
            .trim()
            .strip_prefix("ads-emulator listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        (binary, url)
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(exit) = self.0.try_wait().expect("wait") {
                assert!(exit.success(), "{exit:?}");
                return;
            }
            assert!(Instant::now() < deadline, "ads-emulator ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_the_sdk_and_stops_on_sigterm() {
    let (binary, url) = Binary::spawn(&["--home-region", REGION, "--start-delay", "1h"]);
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"), "{url}");
    let client = client_with(&url, REGION, RetryConfig::disabled());
    let id =
        client.start_continuous_export().send().await.expect("start").export_id().map(str::to_owned).expect("exportId");
    let out = client.describe_continuous_exports().export_ids(&id).send().await.expect("describe");
    assert_eq!(out.descriptions()[0].status(), Some(&ContinuousExportStatus::StartInProgress));
    binary.terminate();
}

#[tokio::test]
async fn binary_loads_faults_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("faults.json");
    std::fs::write(&path, r#"[{"operation":"StartContinuousExport","error":"AuthorizationErrorException","count":1}]"#)
        .expect("write faults");
    let path = path.to_str().expect("utf-8 path");
    let (_binary, url) = Binary::spawn(&["--home-region", REGION, "--faults", path]);
    let client = client_with(&url, REGION, RetryConfig::disabled());
    let err = client.start_continuous_export().send().await.expect_err("fault").into_service_error();
    assert!(matches!(err, StartContinuousExportError::AuthorizationErrorException(_)), "{err:?}");
    client.start_continuous_export().send().await.expect("fault used up");
}

#[test]
fn binary_rejects_invalid_faults_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("faults.json");
    std::fs::write(&path, r#"[{"http":503,"throttling":true}]"#).expect("write faults");
    let out = Command::new(env!("CARGO_BIN_EXE_ads-emulator"))
        .args(["--listen", "127.0.0.1:0", "--faults"])
        .arg(&path)
        .output()
        .expect("run ads-emulator");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("faults.json") && stderr.contains("exactly one"), "{stderr}");
}

#[tokio::test]
async fn the_operator_names_itself_to_ads() {
    use ads_export_operator::ads::{ExportService, aws::AwsExportService};
    use ads_export_operator::identity::AWS_APP_NAME;
    let bed = Bed::home().await;
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(bed.url())
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;
    let service = AwsExportService::from_sdk_config(sdk);
    let id = service.start(REGION).await.expect("start").export_id;
    service.describe(REGION, &id).await.expect("describe");
    let agents = bed.emu().user_agents();
    let wanted = format!("app/{AWS_APP_NAME}");
    assert!(!agents.is_empty(), "the emulator saw no client identity");
    assert!(agents.iter().all(|a| a.split(' ').any(|part| part == wanted)), "{wanted} missing from {agents:?}");
}

/// Counts the operator's rate-limit waits.
#[derive(Default)]
struct Waits(std::sync::atomic::AtomicU64);

impl ads_export_operator::ads::aws::CallObserver for Waits {
    fn observe(&self, _: ads_export_operator::ads::Operation, _: &str, _: Duration) {}
    fn rate_limited(&self, _: &str, _: Duration) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn the_client_rate_limit_keeps_below_the_emulators() {
    use ads_export_operator::ads::limit::RateLimits;
    use ads_export_operator::ads::{ExportService, aws::AwsExportService};
    use std::sync::Arc;
    let bed = Bed::home().await;
    let id = bed.start().await;
    let service = || async {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(bed.url())
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        AwsExportService::from_sdk_config(sdk)
    };
    let throttled = || bed.emu().counters().0.values().flat_map(|o| o.get("ThrottlingException")).sum::<u64>();
    bed.emu().set_rate_limit(Some(10.0));

    // Without a client-side limit, 40 calls at once exceed 10 per second.
    let plain = service().await;
    let answers = futures::future::join_all((0..40).map(|_| plain.describe(REGION, &id))).await;
    assert!(answers.iter().any(|a| a.as_ref().is_err_and(|e| e.reason == ads_export_operator::ads::Reason::Throttled)));
    assert!(throttled() > 0, "the emulator's rate-limit mode answers ThrottlingException");

    // With 5 per second on the client, the same 40 calls wait instead and all succeed.
    bed.emu().set_rate_limit(Some(10.0)); // a full bucket again
    let before = throttled();
    let waits = Arc::new(Waits::default());
    let limited = service().await.with_observer(waits.clone()).with_rate_limits(Arc::new(RateLimits::new(5.0)));
    let answers = futures::future::join_all((0..40).map(|_| limited.describe(REGION, &id))).await;
    assert!(answers.iter().all(Result::is_ok), "{:?}", answers.iter().find(|a| a.is_err()));
    assert_eq!(throttled(), before, "no call was throttled");
    // All but the burst of 10 wait (fewer if the machine stalled long enough to refill).
    let waited = waits.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=30).contains(&waited), "{waited} calls waited for the rate limit");
    bed.emu().set_rate_limit(None);
}
