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

mod apply;
mod deletion;
mod starts;

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
// Fake ADS
// ---------------------------------------------------------------------------

/// One call the controller made to ADS (the region is checked on the way in).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Start,
    Describe(String),
    List,
    Stop(String),
}

fn describe(id: &str) -> Call {
    Call::Describe(id.into())
}

fn stop(id: &str) -> Call {
    Call::Stop(id.into())
}

#[derive(Default)]
struct Script {
    region: String,
    start: VecDeque<Result<StartedExport, AdsError>>,
    describe: VecDeque<Result<ExportDescription, AdsError>>,
    list: VecDeque<Result<Vec<ExportDescription>, AdsError>>,
    stop: VecDeque<Result<StopTimes, AdsError>>,
    calls: Vec<Call>,
}

/// A scripted [`ExportService`]: each operation answers from its own queue, in order;
/// a call with nothing queued fails the test.
#[derive(Clone)]
struct FakeAds(Arc<Mutex<Script>>);

impl FakeAds {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Script { region: REGION.into(), ..Script::default() })))
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_start(&self, r: Result<StartedExport, AdsError>) -> &Self {
        self.script().start.push_back(r);
        self
    }

    fn on_describe(&self, r: Result<ExportDescription, AdsError>) -> &Self {
        self.script().describe.push_back(r);
        self
    }

    fn on_list(&self, r: Result<Vec<ExportDescription>, AdsError>) -> &Self {
        self.script().list.push_back(r);
        self
    }

    fn on_stop(&self, r: Result<StopTimes, AdsError>) -> &Self {
        self.script().stop.push_back(r);
        self
    }

    /// The calls made so far, and forgets them.
    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.script().calls)
    }

    /// Every scripted answer was used.
    fn assert_drained(&self) {
        let s = self.script();
        let left = (s.start.len(), s.describe.len(), s.list.len(), s.stop.len());
        assert_eq!(left, (0, 0, 0, 0), "scripted ADS answers left unused (start, describe, list, stop)");
    }

    fn answer<T>(
        &self,
        region: &str,
        call: Call,
        queue: impl FnOnce(&mut Script) -> &mut VecDeque<Result<T, AdsError>>,
    ) -> Result<T, AdsError> {
        let mut s = self.script();
        assert_eq!(region, s.region, "{call:?} went to the wrong region");
        s.calls.push(call.clone());
        let answer = queue(&mut s).pop_front();
        let calls = s.calls.clone();
        drop(s);
        answer.unwrap_or_else(|| panic!("unexpected ADS call {call:?} (nothing scripted); calls so far: {calls:?}"))
    }
}

impl ExportService for FakeAds {
    async fn start(&self, region: &str) -> Result<StartedExport, AdsError> {
        self.answer(region, Call::Start, |s| &mut s.start)
    }

    async fn describe(&self, region: &str, export_id: &str) -> Result<ExportDescription, AdsError> {
        self.answer(region, describe(export_id), |s| &mut s.describe)
    }

    async fn list(&self, region: &str) -> Result<Vec<ExportDescription>, AdsError> {
        self.answer(region, Call::List, |s| &mut s.list)
    }

    async fn stop(&self, region: &str, export_id: &str) -> Result<StopTimes, AdsError> {
        self.answer(region, stop(export_id), |s| &mut s.stop)
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
}

fn export(id: &str, status: &str) -> ExportDescription {
    ExportDescription {
        export_id: id.into(),
        status: ReportedStatus::from_wire(status),
        status_detail: Some(format!("{status} detail")),
        s3_bucket: Some("aws-application-discovery-service-abc".into()),
        data_source: Some("AGENT".into()),
        database_name: Some("application_discovery_service_database".into()),
        start_time: Some(ts(SAMPLE_START)),
        stop_time: None,
    }
}

fn started(id: &str) -> StartedExport {
    StartedExport {
        export_id: id.into(),
        s3_bucket: Some("aws-application-discovery-service-abc".into()),
        data_source: Some("AGENT".into()),
        database_name: Some("application_discovery_service_database".into()),
        start_time: Some(ts(SAMPLE_START)),
    }
}

fn ads_error(operation: Operation, reason: Reason, message: &str) -> AdsError {
    AdsError::new(operation, reason, message)
}

// ---------------------------------------------------------------------------
// Mocked apiserver
// ---------------------------------------------------------------------------

/// One request the apiserver received.
#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    content_type: Option<String>,
    body: Value,
}

impl Recorded {
    fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        let q: Vec<_> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} {}?{} ({})", self.method, self.path, q.join("&"), self.content_type.as_deref().unwrap_or("-"))
    }

    /// The value a merge patch gives the `start-pending` annotation.
    fn pending_value(&self) -> &Value {
        &self.body["metadata"]["annotations"][START_PENDING_ANNOTATION]
    }

    /// The status a server-side apply of `/status` sets.
    fn applied_status(&self) -> ContinuousExportStatus {
        assert_eq!(self.body["apiVersion"], "adsexport.io/v1alpha1");
        assert_eq!(self.body["kind"], "ContinuousExport");
        serde_json::from_value(self.body["status"].clone()).expect("status body")
    }

    /// Event `type` and `reason`.
    fn event(&self) -> (String, String) {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (s(&self.body["type"]), s(&self.body["reason"]))
    }
}

/// One expected request and its answer.
struct Expect {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    query: Vec<(&'static str, &'static str)>,
    status: StatusCode,
    reply: Value,
}

impl Expect {
    fn new(method: Method, path: &str, content_type: Option<&'static str>, reply: &ContinuousExport) -> Self {
        Self {
            method,
            path: path.into(),
            content_type,
            query: Vec::new(),
            status: StatusCode::OK,
            reply: serde_json::to_value(reply).expect("object JSON"),
        }
    }

    /// `GET` of the object.
    fn get(reply: &ContinuousExport) -> Self {
        Self::new(Method::GET, OBJ_PATH, None, reply)
    }

    /// A merge patch of the object (the `start-pending` annotation).
    fn merge_patch(reply: &ContinuousExport) -> Self {
        Self::new(Method::PATCH, OBJ_PATH, Some(MERGE), reply)
    }

    /// A JSON patch of the object (the finalizer helper).
    fn json_patch(reply: &ContinuousExport) -> Self {
        Self::new(Method::PATCH, OBJ_PATH, Some(JSON_PATCH), reply)
    }

    /// A forced server-side apply of `/status` by the operator's field manager.
    fn apply_status(reply: &ContinuousExport) -> Self {
        let mut e = Self::new(Method::PATCH, &format!("{OBJ_PATH}/status"), Some(APPLY), reply);
        e.query = vec![("fieldManager", FIELD_MANAGER), ("force", "true")];
        e
    }

    /// Answers with a `Status` failure instead.
    fn fails(mut self, code: u16, reason: &str) -> Self {
        self.status = StatusCode::from_u16(code).expect("status code");
        self.reply = json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "reason": reason, "message": format!("mock: {reason}"), "code": code,
        });
        self
    }

    fn mismatch(&self, got: &Recorded) -> Option<String> {
        let ct = got.content_type.as_deref();
        let query_ok = self.query.iter().all(|(k, v)| got.query(k) == Some(*v));
        if got.method == self.method && got.path == self.path && ct == self.content_type && query_ok {
            return None;
        }
        let q: Vec<_> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(format!(
            "expected {} {}?{} ({}), got {}",
            self.method,
            self.path,
            q.join("&"),
            self.content_type.unwrap_or("-"),
            got.describe()
        ))
    }
}

#[derive(Default)]
struct ServerState {
    script: VecDeque<Expect>,
    requests: Vec<Recorded>,
    events: Vec<Recorded>,
    failures: Vec<String>,
}

/// The scripted apiserver behind a [`Client`].
struct ApiServer {
    state: Arc<Mutex<ServerState>>,
    task: JoinHandle<()>,
}

/// What the apiserver saw: object requests (in order) and events.
struct Seen {
    requests: Vec<Recorded>,
    events: Vec<Recorded>,
}

impl Seen {
    fn event_reasons(&self) -> Vec<(String, String)> {
        self.events.iter().map(Recorded::event).collect()
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("reply JSON")))
        .expect("response")
}

/// A client whose requests are answered by `script`, in order.
fn apiserver(script: Vec<Expect>) -> (Client, ApiServer) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(ServerState { script: script.into(), ..ServerState::default() }));
    let shared = state.clone();
    let task = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            };
            let query = parts
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            let got = Recorded {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query,
                content_type: parts.headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned),
                body,
            };
            let mut st = shared.lock().unwrap_or_else(|p| p.into_inner());
            if got.path.starts_with(EVENTS_PATH) {
                // Recorder: POST a new event, or merge-patch a repeated one. Echo it back.
                let code = if got.method == Method::POST { StatusCode::CREATED } else { StatusCode::OK };
                send.send_response(reply(code, &got.body));
                st.events.push(got);
                continue;
            }
            let n = st.requests.len();
            let answer = match st.script.pop_front() {
                None => {
                    st.failures.push(format!("request #{n}: unexpected {}", got.describe()));
                    None
                }
                Some(exp) => match exp.mismatch(&got) {
                    Some(why) => {
                        st.failures.push(format!("request #{n}: {why}"));
                        None
                    }
                    None => Some((exp.status, exp.reply)),
                },
            };
            let (code, body) = answer.unwrap_or_else(|| {
                let e = Expect::get(&object()).fails(500, "UnexpectedRequest");
                (e.status, e.reply)
            });
            send.send_response(reply(code, &body));
            st.requests.push(got);
        }
    });
    (Client::new(svc, "default"), ApiServer { state, task })
}

impl ApiServer {
    /// Stops the server and fails the test on an unexpected request or an unused
    /// expectation; returns what it saw. Call it before asserting on reconcile's result,
    /// so a script mismatch is reported as such.
    async fn finish(self) -> Seen {
        self.task.abort();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut failures = std::mem::take(&mut st.failures);
        failures.extend(st.script.iter().map(|e| format!("expected request never came: {} {}", e.method, e.path)));
        let seen: Vec<_> = st.requests.iter().map(Recorded::describe).collect();
        assert!(
            failures.is_empty(),
            "apiserver script failed:\n  {}\nrequests seen:\n  {}",
            failures.join("\n  "),
            seen.join("\n  ")
        );
        Seen { requests: std::mem::take(&mut st.requests), events: std::mem::take(&mut st.events) }
    }
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

async fn run(obj: &ContinuousExport, ctx: &Arc<Context<FakeAds>>) -> Result<Action, Error> {
    reconcile(Arc::new(obj.clone()), ctx.clone()).await
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
    let (reader, mut writer) = kube::runtime::reflector::store::<ContinuousExport>();
    for o in others {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
    }
    Arc::new(Context { store: Some(reader), ..Context::new(client, ads.clone(), settings()) })
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
