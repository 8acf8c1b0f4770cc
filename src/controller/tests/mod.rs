//! [`reconcile`] against a mocked apiserver (`tower-test`) and a scripted fake
//! [`ExportService`]: the I/O order and the error paths, fast, no test bed. The rules
//! themselves are table-tested on [`super::decide`] (`decide_table.rs`).
//!
//! Each test scripts the Kubernetes requests it expects, in order, with their answers
//! ([`Expect`]); events (`events.k8s.io/v1`) are answered automatically and recorded
//! apart, so tests assert their reasons without fixing their place in the sequence.
//! The fake ADS answers from per-operation queues and records every call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::backoff::POLL_MIN;
use super::{Context, Error, Settings, StartGate, error_policy, reconcile};
use crate::ads::{
    AdsError, ExportDescription, ExportService, ExportStatus, Operation, Reason, ReportedStatus, StartedExport,
    StopTimes, format_time,
};
use crate::api::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CONDITION_SYNCED, ContinuousExport,
    ContinuousExportSpec, ContinuousExportStatus, DeletionPolicy, FIELD_MANAGER, FINALIZER, START_PENDING_ANNOTATION,
};

const NS: &str = "team-a";
const NAME: &str = "export";
const REGION: &str = "us-west-2";
const OBJ_PATH: &str = "/apis/adsexport.io/v1alpha1/namespaces/team-a/continuousexports/export";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const APPLY: &str = "application/apply-patch+yaml";
const RESYNC: Duration = Duration::from_secs(600);
/// `1493405005.639` as ADS sends it (the documented sample start time).
const SAMPLE_START: &str = "2017-04-28T18:43:25.639Z";

mod accounts;
mod apiserver;
mod apply;
mod deletion;
mod fake_ads;
mod shutdown;
mod starts;

use apiserver::*;
use fake_ads::*;

/// The wire names of the export statuses, short for the scripts below.
mod ads {
    use super::ExportStatus;
    pub const START_IN_PROGRESS: &str = ExportStatus::StartInProgress.as_str();
    pub const START_FAILED: &str = ExportStatus::StartFailed.as_str();
    pub const ACTIVE: &str = ExportStatus::Active.as_str();
    pub const ERROR: &str = ExportStatus::Error.as_str();
    pub const STOP_IN_PROGRESS: &str = ExportStatus::StopInProgress.as_str();
    pub const STOP_FAILED: &str = ExportStatus::StopFailed.as_str();
    pub const INACTIVE: &str = ExportStatus::Inactive.as_str();
}

// ---------------------------------------------------------------------------
// Objects and running reconcile
// ---------------------------------------------------------------------------

/// A `ContinuousExport` as read from the apiserver: generation 1, our finalizer, no status.
fn object() -> ContinuousExport {
    let mut o = ContinuousExport::new(NAME, ContinuousExportSpec::default());
    o.metadata.namespace = Some(NS.into());
    o.metadata.uid = Some("0b5f5d3c-uid".into());
    o.metadata.generation = Some(1);
    o.metadata.resource_version = Some("100".into());
    o.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
    o.metadata.finalizers = Some(vec![FINALIZER.into()]);
    o
}

fn with_status(mut o: ContinuousExport, status: ContinuousExportStatus) -> ContinuousExport {
    o.status = Some(status);
    o
}

/// Status of an object that manages export `id` in ADS state `state` (no conditions).
fn managed(id: &str, state: &str) -> ContinuousExportStatus {
    ContinuousExportStatus {
        export_id: Some(id.into()),
        export_status: Some(state.into()),
        s3_bucket: Some("aws-application-discovery-service-abc".into()),
        data_source: Some("AGENT".into()),
        database_name: Some("application_discovery_service_database".into()),
        start_time: Some(SAMPLE_START.into()),
        observed_generation: Some(1),
        ..ContinuousExportStatus::default()
    }
}

fn deleting(mut o: ContinuousExport, policy: DeletionPolicy) -> ContinuousExport {
    o.spec.deletion_policy = policy;
    o.metadata.deletion_timestamp = Some(Time(ts("2026-01-02T00:00:00Z")));
    o
}

/// The requests of a pass that starts an export: the fresh read, the `start-pending`
/// annotation, the status with the export's ID, the annotation's removal.
fn starting(obj: &ContinuousExport) -> Vec<Expect> {
    vec![Expect::get(obj), Expect::merge_patch(obj), Expect::apply_status(obj), Expect::merge_patch(obj)]
}

fn settings() -> Settings {
    Settings { default_region: Some(REGION.into()), ..Settings::default() }
}

fn context(client: Client, ads: &FakeAds) -> Arc<Context<FakeAds>> {
    Arc::new(Context::new(client, ads.clone(), settings()))
}

/// A context on a new apiserver that keeps `ctx`'s per-object backoff state (as the
/// controller's one context does across reconciles).
fn reuse(ctx: Arc<Context<FakeAds>>, client: Client) -> Arc<Context<FakeAds>> {
    let ctx = Arc::into_inner(ctx).expect("no reconcile holds the context");
    Arc::new(Context { backoff: ctx.backoff, ..Context::new(client, ctx.ads, ctx.settings) })
}

/// One reconcile, then its events published (they are queued beside the pass).
async fn run(obj: &ContinuousExport, ctx: &Arc<Context<FakeAds>>) -> Result<Action, Error> {
    let result = reconcile(Arc::new(obj.clone()), ctx.clone()).await;
    ctx.events.flush().await;
    result
}

fn cond<'a>(s: &'a ContinuousExportStatus, type_: &str) -> &'a Condition {
    s.condition(type_).unwrap_or_else(|| panic!("no {type_} condition in {s:?}"))
}

fn assert_cond(s: &ContinuousExportStatus, type_: &str, status: &str, reason: &str) {
    let c = cond(s, type_);
    assert_eq!((c.status.as_str(), c.reason.as_str()), (status, reason), "{type_}: {c:?}");
}

/// The `(at …)` time stated in a retry message.
fn retry_at(message: &str) -> Timestamp {
    let at = message.rsplit_once("(at ").and_then(|(_, r)| r.strip_suffix(')')).expect("retry message states a time");
    assert_eq!(format_time(ts(at)), at, "retry time is RFC 3339 with ms");
    ts(at)
}

/// Whether `s` is RFC 3339 UTC with exactly millisecond precision.
fn is_ms_rfc3339(s: &str) -> bool {
    s.parse::<Timestamp>().is_ok_and(|t| format_time(t) == s)
}

// ---------------------------------------------------------------------------
// Helpers shared by the test modules
// ---------------------------------------------------------------------------

/// The status a reconcile writes for an object that manages the ACTIVE export `id`
/// (round-tripped through JSON, as the apiserver stores it).
async fn settled_status(id: &str) -> ContinuousExportStatus {
    let obj = with_status(object(), ContinuousExportStatus { export_id: Some(id.into()), ..Default::default() });
    let ads = FakeAds::new();
    ads.on_describe(Ok(export(id, ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let result = run(&obj, &context(client, &ads)).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe(id)]);
    serde_json::from_value(seen.requests[0].body["status"].clone()).expect("status")
}

/// Parses the `Duration` in `Action`'s Debug form (`Some(4.123456789s)`), exactly.
fn parse_debug_duration(dbg: &str) -> Option<Duration> {
    let inner = dbg.split_once("Some(")?.1.split_once(')')?.0;
    let (num, unit) = inner.split_at(inner.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let scale: u128 = match unit {
        "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "µs" => 1_000,
        "ns" => 1,
        _ => return None,
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let mut nanos = int.parse::<u128>().ok()? * scale;
    if !frac.is_empty() {
        nanos += frac.parse::<u128>().ok()? * scale / 10u128.pow(u32::try_from(frac.len()).ok()?);
    }
    Some(Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// The requeue delay of `action`, which must lie in `lo..=hi` (jittered backoff).
fn requeue_delay_between(action: &Action, lo: Duration, hi: Duration) -> Duration {
    // `Action` keeps its delay private: read it from the Debug form, then check equality.
    let dbg = format!("{action:?}");
    let delay = parse_debug_duration(&dbg).unwrap_or_else(|| panic!("not a requeue: {dbg}"));
    assert!(delay >= lo && delay <= hi, "requeue after {delay:?}, wanted {lo:?}..={hi:?}");
    assert_eq!(*action, Action::requeue(delay));
    delay
}

fn stopping_object() -> ContinuousExport {
    let mut obj = with_status(object(), managed("e-1", ads::ACTIVE));
    obj.spec.stopped = true;
    obj.metadata.generation = Some(2);
    obj
}

/// Another object, `name`, created before [`object`], managing export `id`.
fn other_object(name: &str, id: &str) -> ContinuousExport {
    let mut o = with_status(object(), managed(id, ads::ACTIVE));
    o.metadata.name = Some(name.into());
    o.metadata.uid = Some(format!("{name}-uid"));
    o.metadata.creation_timestamp = Some(Time(ts("2025-12-01T00:00:00Z")));
    o
}

/// A context whose controller cache holds `others` (for claims of other objects).
fn context_with_cache(client: Client, ads: &FakeAds, others: Vec<ContinuousExport>) -> Arc<Context<FakeAds>> {
    let ctx = Context::new(client, ads.clone(), settings());
    for o in others {
        ctx.claims.apply(&kube::runtime::watcher::Event::Apply(o));
    }
    Arc::new(ctx)
}

fn cleanup_error(result: Result<Action, Error>) -> Error {
    match result.expect_err("cleanup must fail so the finalizer stays") {
        Error::Finalizer(e) => match *e {
            kube::runtime::finalizer::Error::CleanupFailed(inner) => inner,
            other => panic!("unexpected finalizer error {other:?}"),
        },
        other => panic!("unexpected error {other:?}"),
    }
}
