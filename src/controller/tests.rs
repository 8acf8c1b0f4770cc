//! [`reconcile`] against a mocked apiserver (`tower-test`) and a scripted fake
//! [`ExportService`] (DESIGN.md section 6): fast, no test bed.
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

use super::{Context, Error, Settings, reconcile};
use crate::ads::{
    AdsError, ExportDescription, ExportService, Reason, StartedExport, StopTimes, format_time, status as ads,
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
        status: status.into(),
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

fn ads_error(operation: &'static str, reason: Reason, message: &str) -> AdsError {
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
// Apply: starting
// ---------------------------------------------------------------------------

#[tokio::test]
async fn new_object_starts_once_and_records_status_before_clearing_pending() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);

    let before = Timestamp::now();
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    let action = result.expect("reconcile");

    assert_eq!(action, Action::requeue(RESYNC), "steady: resync period");
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-1")]);
    ads.assert_drained();

    let r = &seen.requests;
    // 1: the pending annotation, an RFC 3339 time, written before Start
    let pending = r[1].pending_value().as_str().expect("start-pending is a time");
    let pending = ts(pending);
    assert!(pending >= Timestamp::from_second(before.as_second()).unwrap() && pending <= Timestamp::now());
    assert!(r[1].query.iter().all(|(k, _)| k != "fieldManager"), "plain merge patch: {}", r[1].describe());
    // 2: the status, with the export's ID before the annotation goes
    let status = r[2].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"));
    assert_eq!(status.export_status.as_deref(), Some(ads::ACTIVE));
    assert_eq!(status.start_time.as_deref(), Some(SAMPLE_START));
    assert!(is_ms_rfc3339(status.start_time.as_deref().unwrap()));
    assert_eq!(status.s3_bucket.as_deref(), Some("aws-application-discovery-service-abc"));
    assert_eq!(status.database_name.as_deref(), Some("application_discovery_service_database"));
    assert_eq!(status.data_source.as_deref(), Some("AGENT"));
    assert_eq!(status.status_detail.as_deref(), Some("ACTIVE detail"));
    assert_eq!(status.observed_generation, Some(1));
    assert_cond(&status, CONDITION_READY, "True", "Active");
    assert_cond(&status, CONDITION_SYNCED, "True", "Synced");
    assert_cond(&status, CONDITION_RECONCILING, "False", "Settled");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [CONDITION_READY, CONDITION_SYNCED, CONDITION_RECONCILING, CONDITION_STALLED]);
    assert!(status.conditions.iter().all(|c| c.observed_generation == Some(1)));
    // 3: the annotation removed (merge patch null)
    assert_eq!(r[3].body, json!({"metadata": {"annotations": {START_PENDING_ANNOTATION: null}}}));

    assert_eq!(seen.event_reasons(), [("Normal".into(), "Started".into())]);
}

#[tokio::test]
async fn start_in_progress_polls_with_short_backoff() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Ok(export("e-1", ads::START_IN_PROGRESS)));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(1)), "first poll after 1 s");

    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::START_IN_PROGRESS));
    assert_cond(&status, CONDITION_READY, "False", "StartInProgress");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Transitioning");
    assert_eq!(cond(&status, CONDITION_RECONCILING).message, "export is START_IN_PROGRESS; polling until it is ACTIVE");

    // The next poll: ACTIVE now; the poll schedule is reset, steady resync.
    let obj = with_status(object(), status);
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client2, server2) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx2 = reuse(ctx, client2);
    let result = run(&obj, &ctx2).await;
    let seen = server2.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-1"), describe("e-1")]);
    assert_cond(&seen.requests[0].applied_status(), CONDITION_READY, "True", "Active");
}

#[tokio::test]
async fn start_with_home_region_not_set_clears_pending_and_backs_off() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Err(ads_error(
        "StartContinuousExport",
        Reason::HomeRegionNotSet,
        "home region not set",
    )));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = context(client, &ads);

    let before = Timestamp::now();
    let result = run(&obj, &ctx).await;
    let after = Timestamp::now();
    let seen = server.finish().await;
    let action = result.expect("AWS errors become conditions, not reconcile errors");

    assert_eq!(ads.take_calls(), [Call::List, Call::Start]);
    let r = &seen.requests;
    assert!(r[1].pending_value().is_string(), "annotation added before Start");
    assert_eq!(r[2].pending_value(), &Value::Null, "definite failure: annotation removed");

    // First retry: base 5 s less up to 20 % jitter.
    let delay = requeue_delay_between(&action, Duration::from_secs(4), Duration::from_secs(5));
    let status = r[3].applied_status();
    assert_eq!(status.export_id, None);
    assert_cond(&status, CONDITION_SYNCED, "False", "HomeRegionNotSet");
    assert_eq!(cond(&status, CONDITION_SYNCED).message, "StartContinuousExport: home region not set");
    assert_cond(&status, CONDITION_RECONCILING, "True", "HomeRegionNotSet");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_READY, "False", "Pending");
    let msg = &cond(&status, CONDITION_RECONCILING).message;
    assert!(msg.contains("retry 1 in"), "{msg}");
    let at = retry_at(msg);
    let lo = before.checked_add(delay).unwrap().checked_sub(Duration::from_millis(1)).unwrap();
    let hi = after.checked_add(delay).unwrap();
    assert!(at >= lo && at <= hi, "retry time {at} should be now + {delay:?}");

    assert_eq!(seen.event_reasons(), [("Warning".into(), "HomeRegionNotSet".into())]);

    // The retry fails the same way: the delay doubles, the status (message) is
    // rewritten, but no second Warning event.
    let obj = with_status(object(), status);
    ads.on_list(Ok(vec![])).on_start(Err(ads_error(
        "StartContinuousExport",
        Reason::HomeRegionNotSet,
        "home region not set",
    )));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = reuse(ctx, client);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(8), Duration::from_secs(10));
    let status = seen.requests[3].applied_status();
    assert!(cond(&status, CONDITION_RECONCILING).message.contains("retry 2 in"));
    assert!(seen.events.is_empty(), "same reason: no new event: {:?}", seen.event_reasons());
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

#[tokio::test]
async fn ambiguous_start_keeps_pending_and_next_reconcile_adopts_without_starting() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Err(AdsError {
        ambiguous: true,
        ..ads_error("StartContinuousExport", Reason::Unreachable, "operation timed out")
    }));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start]);
    let pending = seen.requests[1].pending_value().as_str().expect("pending time").to_owned();
    let status = seen.requests[2].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "Unreachable");
    assert_eq!(status.export_id, None);
    assert_eq!(seen.event_reasons(), [("Warning".into(), "Unreachable".into())]);

    // What the apiserver now stores: the annotation (never removed) and that status.
    let mut stored = with_status(object(), status);
    stored.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), pending.clone())].into());

    // The start did reach AWS: an export started just now is ACTIVE; an older stopped one is ignored.
    let mut created = export("e-new", ads::ACTIVE);
    created.start_time = Some(ts(&pending));
    let mut old = export("e-old", ads::INACTIVE);
    old.start_time = Some(ts("2020-01-01T00:00:00.000Z"));
    ads.on_list(Ok(vec![old, created]));
    let (client, server) =
        apiserver(vec![Expect::get(&stored), Expect::apply_status(&stored), Expect::merge_patch(&stored)]);
    let ctx = reuse(ctx, client);
    let result = run(&stored, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [Call::List], "no second Start, no Describe needed");
    ads.assert_drained();
    let status = seen.requests[1].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-new"));
    assert_cond(&status, CONDITION_READY, "True", "Active");
    assert_cond(&status, CONDITION_SYNCED, "True", "Synced");
    assert_eq!(seen.requests[2].pending_value(), &Value::Null, "pending resolved: annotation removed");
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Recovered".into())]);
}

#[tokio::test]
async fn pending_start_ignores_exports_started_before_the_annotation() {
    // The annotation says a start began at 12:00; the only running export started at
    // 10:00 (more than the 5 min skew earlier), so it is someone else's, and it made
    // that start fail: no Start now either (it would conflict), annotation removed.
    let mut obj = object();
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    let mut foreign = export("e-foreign", ads::ACTIVE);
    foreign.start_time = Some(ts("2026-03-01T10:00:00.000Z"));
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![foreign]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    result.expect("reconcile");
    assert_eq!(ads.take_calls(), [Call::List]);
    assert_eq!(seen.requests[1].pending_value(), &Value::Null);
    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_id, None, "the foreign export is not adopted");
    assert_cond(&status, CONDITION_SYNCED, "False", "Conflict");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("e-foreign"));
}

#[tokio::test]
async fn conflict_on_start_names_the_active_export() {
    // Nothing running at the first look; another export started just before Start.
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![]))
        .on_start(Err(ads_error("StartContinuousExport", Reason::Conflict, "Conflict with an active export")))
        .on_list(Ok(vec![export("e-old", ads::INACTIVE), export("e-active", ads::ACTIVE)]));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, Call::List]);
    assert_eq!(seen.requests[2].pending_value(), &Value::Null, "nothing started: annotation removed");
    let status = seen.requests[3].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "Conflict");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Conflict");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("export e-active is already ACTIVE in us-west-2"), "{msg}");
    assert!(msg.contains("spec.exportId: e-active"), "{msg}");
    assert!(!msg.contains("e-old"), "{msg}");
    assert_eq!(seen.event_reasons(), [("Warning".into(), "Conflict".into())]);
}

#[tokio::test]
async fn running_export_found_before_start_is_a_conflict_without_start() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![export("e-old", ads::INACTIVE), export("e-active", ads::ACTIVE)]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List], "no Start, no annotation");
    let status = seen.requests[1].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "Conflict");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("export e-active is already ACTIVE in us-west-2"), "{msg}");
    assert!(msg.contains("spec.exportId: e-active") && msg.contains("not sent"), "{msg}");
    assert_eq!(seen.event_reasons(), [("Warning".into(), "Conflict".into())]);
}

#[tokio::test]
async fn start_then_describe_failure_still_records_the_export_id() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Err(ads_error(
        "DescribeContinuousExports",
        Reason::Throttled,
        "Rate exceeded",
    )));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-1")]);
    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"));
    assert_eq!(status.export_status.as_deref(), Some(ads::START_IN_PROGRESS));
    assert_eq!(status.start_time.as_deref(), Some(SAMPLE_START));
    assert_cond(&status, CONDITION_SYNCED, "False", "Throttled");
    assert_eq!(seen.requests[3].pending_value(), &Value::Null, "exportId stored: annotation removed");
    let reasons = seen.event_reasons();
    assert_eq!(reasons, [("Normal".into(), "Started".into()), ("Warning".into(), "Throttled".into())]);
}

#[tokio::test]
async fn fresh_read_with_an_export_id_prevents_a_second_start() {
    // The watch cache lags: our object has no status, the apiserver's copy does.
    let cached = object();
    let fresh = with_status(object(), managed("e-1", ads::ACTIVE));
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::get(&fresh), Expect::apply_status(&fresh)]);
    let ctx = context(client, &ads);
    let result = run(&cached, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Start");
    assert_eq!(seen.requests[1].applied_status().export_id.as_deref(), Some("e-1"));
}

#[tokio::test]
async fn stopped_new_object_starts_nothing() {
    let mut obj = object();
    obj.spec.stopped = true;
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), []);
    let status = seen.requests[1].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "NotStarted");
    assert_eq!(status.export_id, None);
}

#[tokio::test]
async fn adopts_spec_export_id_without_a_fresh_read_or_start() {
    let mut obj = object();
    obj.spec.export_id = Some("e-adopt".into());
    obj.spec.region = Some("eu-west-1".into());
    let ads = FakeAds::new();
    ads.script().region = "eu-west-1".into(); // spec.region wins over --aws-region
    ads.on_describe(Ok(export("e-adopt", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    // an adoption is checked again shortly for a second adopter
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(2)));
    assert_eq!(ads.take_calls(), [describe("e-adopt")]);
    assert_eq!(seen.requests[0].applied_status().export_id.as_deref(), Some("e-adopt"));
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Adopted".into())]);
}

// ---------------------------------------------------------------------------
// Apply: stalled and steady
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stalled_on_current_generation_makes_no_calls() {
    // First pass: a terminal error (Stalled, reason InvalidParameter).
    let mut obj = object();
    obj.spec.export_id = Some("e-missing".into());
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error("DescribeContinuousExports", Reason::InvalidParameter, "bad export ID")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "True", "InvalidParameter");
    assert_cond(&status, CONDITION_RECONCILING, "False", "InvalidParameter");
    assert!(cond(&status, CONDITION_STALLED).message.contains("no retries until the spec changes"));
    assert_eq!(ads.take_calls(), [describe("e-missing")]);
    assert_eq!(seen.event_reasons(), [("Warning".into(), "InvalidParameter".into())]);

    // Second pass on the same generation: nothing at all.
    obj.status = Some(status.clone());
    let (client, server) = apiserver(vec![]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [], "no AWS call while stalled");
    assert!(seen.requests.is_empty() && seen.events.is_empty());

    // A spec change (new generation) reconciles at once.
    obj.metadata.generation = Some(2);
    ads.on_describe(Ok(export("e-missing", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(2)), "adoption recheck");
    assert_eq!(ads.take_calls(), [describe("e-missing")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_eq!(status.observed_generation, Some(2));
}

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

#[tokio::test]
async fn steady_state_describes_once_and_writes_nothing() {
    // What a first pass writes is what the apiserver stores ...
    let stored = settled_status("e-1").await;
    assert_cond(&stored, CONDITION_READY, "True", "Active");

    // ... and the next pass, with ADS unchanged, writes nothing.
    let obj = with_status(object(), stored);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe("e-1")], "exactly one Describe");
    assert!(seen.requests.is_empty(), "no status write: {:?}", seen.requests);
    assert!(seen.events.is_empty());
}

#[tokio::test]
async fn no_region_retries_without_aws_calls() {
    // Recoverable: spec.region cannot be added later, but restarting the operator
    // with --aws-region fixes it, so the object must not be Stalled.
    let obj = object();
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = Arc::new(Context::new(client, ads.clone(), Settings { default_region: None, ..settings() }));
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    let action = result.expect("reconcile");
    assert_ne!(action, Action::await_change(), "retried with backoff");
    assert_eq!(ads.take_calls(), []);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_RECONCILING, "True", "UnknownError");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("--aws-region"));
}

#[tokio::test]
async fn out_of_band_change_is_written() {
    let mut status = managed("e-1", ads::ACTIVE);
    status.status_detail = Some("ACTIVE detail".into());
    let obj = with_status(object(), status);
    let ads = FakeAds::new();
    let mut d = export("e-1", ads::INACTIVE);
    d.stop_time = Some(ts("2026-02-01T08:00:00.123Z"));
    ads.on_describe(Ok(d));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    // Stalled (needs a human), but still described every resync: ADS may move on.
    assert_eq!(result.expect("reconcile"), Action::requeue(ctx.settings.resync_period));
    let status = seen.requests[0].applied_status();
    assert_eq!(status.stop_time.as_deref(), Some("2026-02-01T08:00:00.123Z"));
    assert_cond(&status, CONDITION_STALLED, "True", "StoppedOutsideKubernetes");
    assert_cond(&status, CONDITION_READY, "False", "Inactive");
}

// ---------------------------------------------------------------------------
// Apply: stopping
// ---------------------------------------------------------------------------

fn stopping_object() -> ContinuousExport {
    let mut obj = with_status(object(), managed("e-1", ads::ACTIVE));
    obj.spec.stopped = true;
    obj.metadata.generation = Some(2);
    obj
}

#[tokio::test]
async fn stop_without_times_in_the_answer_takes_them_from_describe() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    let mut after = export("e-1", ads::STOP_IN_PROGRESS);
    after.stop_time = Some(ts("2026-02-01T08:00:00.5Z"));
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(StopTimes::default())).on_describe(Ok(after));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(1)), "poll the stop");
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1"), describe("e-1")]);
    ads.assert_drained();
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_eq!(status.stop_time.as_deref(), Some("2026-02-01T08:00:00.500Z"));
    assert_eq!(status.start_time.as_deref(), Some(SAMPLE_START));
    assert_eq!(status.observed_generation, Some(2));
    assert_cond(&status, CONDITION_READY, "False", "StopInProgress");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Transitioning");
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Stopped".into())]);

    // Next poll: INACTIVE, Ready; no second Stop.
    let obj = with_status(stopping_object(), status);
    let mut done = export("e-1", ads::INACTIVE);
    done.stop_time = Some(ts("2026-02-01T08:00:00.5Z"));
    ads.on_describe(Ok(done));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "Stopped");
    assert_cond(&status, CONDITION_RECONCILING, "False", "Settled");
}

#[tokio::test]
async fn stop_with_times_in_the_answer_needs_no_second_describe() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    let times =
        StopTimes { start_time: Some(ts("2017-04-28T18:43:25.640Z")), stop_time: Some(ts("2026-02-01T08:00:01.001Z")) };
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(times));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(1)));
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_eq!(status.start_time.as_deref(), Some("2017-04-28T18:43:25.640Z"), "from the Stop answer");
    assert_eq!(status.stop_time.as_deref(), Some("2026-02-01T08:00:01.001Z"));
}

#[tokio::test]
async fn stop_waits_for_a_starting_export() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(1)));
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Stop before ACTIVE");
}

// ---------------------------------------------------------------------------
// Finalizer and deletion
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_finalizer_is_added_first() {
    let mut obj = object();
    obj.metadata.finalizers = None;
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), []);
    assert_eq!(
        seen.requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
}

#[tokio::test]
async fn deleting_without_our_finalizer_does_nothing() {
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    obj.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert!(seen.requests.is_empty(), "never re-add a finalizer to an object being deleted");
    assert_eq!(ads.take_calls(), []);
}

#[tokio::test]
async fn delete_with_retain_leaves_the_export_and_releases_the_finalizer() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Retain);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [], "Retain: no AWS call");
    assert_eq!(
        seen.requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Retained".into())]);
}

#[tokio::test]
async fn delete_stops_an_active_export_then_releases_the_finalizer() {
    let mut obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    obj.metadata.finalizers = Some(vec!["example.com/other".into(), FINALIZER.into()]);
    let ads = FakeAds::new();
    let times = StopTimes { start_time: Some(ts(SAMPLE_START)), stop_time: Some(ts("2026-02-01T08:00:00.000Z")) };
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(times));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    ads.assert_drained();
    assert_eq!(
        seen.requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/1"},
        ]),
        "only our finalizer, at its index"
    );
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Stopped".into())]);
}

#[tokio::test]
async fn delete_of_a_vanished_export_releases_the_finalizer() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    // Not listed (maybe just too soon after Start): a Stop settles it.
    ads.on_describe(Err(ads_error("DescribeContinuousExports", Reason::NotFound, "no such export")))
        .on_stop(Err(ads_error("StopContinuousExport", Reason::NotFound, "no such export")));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    assert_eq!(seen.requests.len(), 1);
}

#[tokio::test]
async fn delete_of_a_starting_export_keeps_the_finalizer() {
    let obj = deleting(with_status(object(), managed("e-1", ads::START_IN_PROGRESS)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    let err = result.expect_err("cleanup must fail so the finalizer stays");
    match err {
        Error::Finalizer(e) => match *e {
            kube::runtime::finalizer::Error::CleanupFailed(Error::Waiting(msg)) => {
                assert!(msg.contains("still starting"), "{msg}");
            }
            other => panic!("unexpected finalizer error {other:?}"),
        },
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Stop while starting");
    // a normal wait: Reconciling says so, Synced is not a failure, no Warning event
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_RECONCILING, "True", "Deleting");
    assert!(cond(&status, CONDITION_RECONCILING).message.starts_with("deleting: "));
    assert!(status.condition(CONDITION_SYNCED).is_none(), "no Synced failure written");
    assert!(seen.event_reasons().is_empty(), "{:?}", seen.event_reasons());
}

#[tokio::test]
async fn delete_with_a_pending_start_stops_the_export_it_created() {
    // Crashed between Start and the status write, then deleted.
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    let since = "2026-03-01T12:00:00.000Z";
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), since.into())].into());
    let mut created = export("e-orphan", ads::ACTIVE);
    created.start_time = Some(ts("2026-03-01T12:00:00.300Z"));
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![created.clone()])).on_describe(Ok(created)).on_stop(Ok(StopTimes::default()));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    // no Describe for the times after the Stop: the object is going away
    assert_eq!(ads.take_calls(), [Call::List, describe("e-orphan"), stop("e-orphan")]);
}

// ---------------------------------------------------------------------------
// Kubernetes failures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn failed_pending_patch_aborts_before_start() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj).fails(409, "Conflict")]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    let err = result.expect_err("a failed annotation write is a reconcile error");
    assert!(
        matches!(&err, Error::Finalizer(e) if matches!(**e, kube::runtime::finalizer::Error::ApplyFailed(Error::Kube(_)))),
        "{err:?}"
    );
    assert_eq!(ads.take_calls(), [Call::List], "never Start without the pending annotation");
}

#[tokio::test]
async fn status_write_of_a_deleted_object_is_not_an_error() {
    let obj = with_status(object(), ContinuousExportStatus { export_id: Some("e-1".into()), ..Default::default() });
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj).fails(404, "NotFound")]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    assert_eq!(result.expect("404 on the status write is ignored"), Action::requeue(RESYNC));
}

// ---------------------------------------------------------------------------
// Regressions: bugs these tests found, now fixed.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn fresh_read_keeps_the_stored_conditions() {
    // The apiserver stores a settled status whose conditions date from T0; the cached
    // copy handed to reconcile has no status yet.
    let mut stored = settled_status("e-1").await;
    for c in &mut stored.conditions {
        c.last_transition_time = Time(ts("2026-01-01T00:00:00Z"));
    }
    let fresh = with_status(object(), stored);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    // ADS still reports what is stored: nothing to write (DESIGN section 2 step 6).
    let (client, server) = apiserver(vec![Expect::get(&fresh)]);
    let result = run(&object(), &context(client, &ads)).await;
    let seen = server.finish().await; // today: an unexpected PATCH .../status with lastTransitionTime = now
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(seen.requests.len(), 1);
}

#[tokio::test]
async fn delete_after_a_successful_stop_does_not_depend_on_the_times_describe() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(StopTimes::default())).on_describe(Err(ads_error(
        "DescribeContinuousExports",
        Reason::Throttled,
        "Rate exceeded",
    )));
    // The export is stopping: the finalizer should go.
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let result = run(&obj, &context(client, &ads)).await;
    server.finish().await; // today: PATCH .../status (Synced=False Throttled) instead of the finalizer patch
    assert_eq!(result.expect("cleanup succeeded"), Action::await_change());
}

#[test]
fn debug_duration_parser() {
    assert_eq!(parse_debug_duration("Action { requeue_after: Some(4.5s) }"), Some(Duration::from_millis(4500)));
    assert_eq!(parse_debug_duration("Action { requeue_after: Some(750ms) }"), Some(Duration::from_millis(750)));
    assert_eq!(parse_debug_duration("Action { requeue_after: None }"), None);
    assert_eq!(parse_debug_duration("Action { requeue_after: Some(4.000000001s) }"), Some(Duration::new(4, 1)));
}

// ---------------------------------------------------------------------------
// A managed export that vanished from ADS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn vanished_export_is_stalled_and_not_ready() {
    let obj = with_status(object(), managed("e-1", ads::ACTIVE));
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error("DescribeContinuousExports", Reason::NotFound, "no such export")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC), "looked at again: it may show up");
    let status = seen.requests[0].applied_status();
    // the last known ACTIVE must not read as Ready next to Stalled
    assert_cond(&status, CONDITION_READY, "False", "NotFound");
    assert_cond(&status, CONDITION_STALLED, "True", "NotFound");
    assert!(cond(&status, CONDITION_STALLED).message.contains("delete this ContinuousExport"));
    assert_eq!(seen.event_reasons(), [("Warning".into(), "NotFound".into())]);
}

#[tokio::test]
async fn vanished_export_counts_as_stopped_when_stopped_is_asked() {
    let mut obj = with_status(object(), managed("e-1", ads::ACTIVE));
    obj.spec.stopped = true;
    let ads = FakeAds::new();
    // Not listed may be not listed yet: a Stop settles it, and its NotFound means gone.
    ads.on_describe(Err(ads_error("DescribeContinuousExports", Reason::NotFound, "no such export")))
        .on_stop(Err(ads_error("StopContinuousExport", Reason::NotFound, "no such export")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "ExportGone");
    assert_eq!(status.export_status, None, "no stale ACTIVE");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_SYNCED, "True", "Synced");
}

// ---------------------------------------------------------------------------
// Paths found by review: deletion without a region, Stop/Describe NotFound,
// STOP_FAILED, retry times while deleting, export-state stalls, deleting claimants
// ---------------------------------------------------------------------------

fn cleanup_error(result: Result<Action, Error>) -> Error {
    match result.expect_err("cleanup must fail so the finalizer stays") {
        Error::Finalizer(e) => match *e {
            kube::runtime::finalizer::Error::CleanupFailed(inner) => inner,
            other => panic!("unexpected finalizer error {other:?}"),
        },
        other => panic!("unexpected error {other:?}"),
    }
}

/// A context whose controller cache holds `others` (for claims of other objects).
fn context_with_cache(client: Client, ads: &FakeAds, others: Vec<ContinuousExport>) -> Arc<Context<FakeAds>> {
    let (reader, mut writer) = kube::runtime::reflector::store::<ContinuousExport>();
    for o in others {
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
    }
    Arc::new(Context { store: Some(reader), ..Context::new(client, ads.clone(), settings()) })
}

/// Another object, `name`, created before [`object`], managing export `id`.
fn other_object(name: &str, id: &str) -> ContinuousExport {
    let mut o = with_status(object(), managed(id, ads::ACTIVE));
    o.metadata.name = Some(name.into());
    o.metadata.uid = Some(format!("{name}-uid"));
    o.metadata.creation_timestamp = Some(Time(ts("2025-12-01T00:00:00Z")));
    o
}

#[tokio::test]
async fn delete_without_a_region_keeps_the_finalizer_of_a_managed_export() {
    let mut obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    obj.metadata.generation = Some(2); // deletion bumped it
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = Arc::new(Context::new(client, ads.clone(), Settings { default_region: None, ..settings() }));
    let err = cleanup_error(run(&obj, &ctx).await);
    let seen = server.finish().await;
    assert!(matches!(err, Error::Retry { .. }), "{err:?}");
    assert_eq!(ads.take_calls(), [], "no region: no call, and no finalizer removal either");
    let status = seen.requests[0].applied_status();
    assert_eq!(status.observed_generation, Some(2));
    assert_cond(&status, CONDITION_SYNCED, "False", "UnknownError");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("--aws-region") && msg.contains("retry 1 in "), "{msg}");
}

#[tokio::test]
async fn delete_without_a_region_or_an_export_releases_the_finalizer() {
    let obj = deleting(object(), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = Arc::new(Context::new(client, ads.clone(), Settings { default_region: None, ..settings() }));
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), []);
}

#[tokio::test]
async fn delete_failure_states_the_retry_time_and_warns_once_per_reason() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error("DescribeContinuousExports", Reason::ServerError, "try later")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let before = Timestamp::now();
    let err = cleanup_error(run(&obj, &ctx).await);
    let seen = server.finish().await;
    let Error::Retry { retry_in, .. } = &err else { panic!("{err:?}") };
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "ServerError");
    let at = retry_at(&cond(&status, CONDITION_SYNCED).message);
    let at_ms = at.duration_since(before).as_millis();
    assert!((3_900..=5_100).contains(&at_ms), "retry time {at_ms} ms ahead, delay {retry_in:?}");
    assert_eq!(seen.event_reasons(), [("Warning".into(), "ServerError".into())]);

    // The error policy requeues after exactly the stated delay.
    let ctx = reuse(ctx, apiserver(vec![]).0);
    let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(err)));
    let Error::Finalizer(inner) = &wrapped else { unreachable!() };
    let kube::runtime::finalizer::Error::CleanupFailed(Error::Retry { retry_in, .. }) = &**inner else {
        unreachable!()
    };
    assert_eq!(super::error_policy(Arc::new(obj.clone()), &wrapped, ctx.clone()), Action::requeue(*retry_in));

    // The same failure again: a new retry time is written, but no second Warning.
    let obj = with_status(obj, status);
    ads.on_describe(Err(ads_error("DescribeContinuousExports", Reason::ServerError, "try later")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    cleanup_error(run(&obj, &ctx).await);
    let seen = server.finish().await;
    assert!(cond(&seen.requests[0].applied_status(), CONDITION_SYNCED).message.contains("retry 2 in"));
    assert!(seen.event_reasons().is_empty(), "{:?}", seen.event_reasons());
}

#[tokio::test]
async fn delete_stops_a_stop_failed_export() {
    let obj = deleting(with_status(object(), managed("e-1", ads::STOP_FAILED)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::STOP_FAILED))).on_stop(Ok(StopTimes::default()));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
}

#[tokio::test]
async fn stop_answering_not_found_counts_as_stopped() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Err(ads_error(
        "StopContinuousExport",
        Reason::NotFound,
        "no such export",
    )));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "ExportGone");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_eq!(status.export_status, None);
}

#[tokio::test]
async fn describe_not_found_right_after_start_is_a_transition() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Err(ads_error(
        "DescribeContinuousExports",
        Reason::NotFound,
        "not listed yet",
    )));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(Duration::from_secs(1)));
    let seen = server.finish().await;
    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"));
    assert_eq!(status.export_status.as_deref(), Some(ads::START_IN_PROGRESS));
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Transitioning");
}

#[tokio::test]
async fn stop_failed_export_is_stopped_again_on_a_doubling_schedule() {
    let key = "0b5f5d3c-uid";
    let mut obj = stopping_object();
    obj.status = Some(managed("e-1", ads::STOP_FAILED));
    let ads = FakeAds::new();
    let times = StopTimes { start_time: Some(ts(SAMPLE_START)), stop_time: Some(ts("2026-02-01T08:00:00.000Z")) };
    ads.on_describe(Ok(export("e-1", ads::STOP_FAILED))).on_stop(Ok(times.clone()));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let first = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    requeue_delay_between(&first, Duration::from_secs(4), Duration::from_secs(5));
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_cond(&status, CONDITION_SYNCED, "False", "StopFailed");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("STOP_FAILED detail"));
    assert_cond(&status, CONDITION_RECONCILING, "True", "StopFailed");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");

    // Stopping again: a successful poll does not reset the failure count ...
    let obj = with_status(obj, status);
    ads.on_describe(Ok(export("e-1", ads::STOP_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(ctx.backoff.failures(key), 1);

    // ... so a second STOP_FAILED waits twice as long before the next look.
    let obj = with_status(obj, seen.requests[0].applied_status());
    ads.on_describe(Ok(export("e-1", ads::STOP_FAILED))).on_stop(Ok(times));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    let third = run(&obj, &ctx).await.expect("reconcile");
    server.finish().await;
    requeue_delay_between(&third, Duration::from_secs(8), Duration::from_secs(10));
    assert_eq!(ads.take_calls(), [describe("e-1"), describe("e-1"), stop("e-1")]);
}

#[tokio::test]
async fn stall_on_the_export_state_is_described_again_at_resync() {
    let obj = with_status(object(), managed("e-1", ads::ACTIVE));
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ERROR)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "True", "ExportError");

    // Same generation, still stalled: ADS is asked again, and a recovery shows.
    let obj = with_status(obj, status);
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), describe("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "Active");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
}

#[tokio::test]
async fn adopting_an_export_whose_manager_is_being_deleted_waits() {
    let mut obj = object();
    obj.spec.export_id = Some("e-1".into());
    let leaving = deleting(other_object("old", "e-1"), DeletionPolicy::Retain);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![leaving]);
    let action = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_ne!(action, Action::await_change(), "retried, not stalled");
    assert_eq!(ads.take_calls(), []);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "ResourceInUse");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("team-a/old, which is being deleted"));
}

#[tokio::test]
async fn pending_start_never_takes_the_export_of_an_object_being_deleted() {
    // Crashed before Start, then deleted; meanwhile another object, itself being
    // deleted with Retain, manages the only running export.
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    let mut theirs = export("e-theirs", ads::ACTIVE);
    theirs.start_time = Some(ts("2026-03-01T12:00:00.300Z"));
    let leaving = deleting(other_object("old", "e-theirs"), DeletionPolicy::Retain);
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![theirs]));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![leaving]);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), [Call::List], "no Stop of another object's export");
}

// ---------------------------------------------------------------------------
// One start in flight per region
// ---------------------------------------------------------------------------

/// Another object, older than [`object`], whose start is pending (annotation, no status).
fn pending_object(name: &str) -> ContinuousExport {
    let mut o = other_object(name, "unused");
    o.status = None;
    o.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    o
}

#[test]
fn start_gate_holds_a_region_for_one_object() {
    let gate = super::StartGate::default();
    let a = gate.enter("us-west-2", "ns/a").expect("free");
    assert_eq!(gate.enter("us-west-2", "ns/b").err().as_deref(), Some("ns/a"), "held by a");
    assert!(gate.enter("eu-west-1", "ns/b").is_ok(), "another region");
    drop(a);
    assert!(gate.enter("us-west-2", "ns/b").is_ok(), "free again");
}

#[tokio::test]
async fn a_start_waits_while_another_object_has_a_pending_start_in_the_region() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![pending_object("old")]);
    let action = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(action, Action::requeue(Duration::from_secs(1)), "a wait is polled, not backed off as a failure");
    assert_eq!(ads.take_calls(), [Call::List], "no Start, no annotation");
    let status = seen.requests[1].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "ResourceInUse");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("pending start of ContinuousExport team-a/old"));
    let msg = &cond(&status, CONDITION_RECONCILING).message;
    assert!(msg.contains("looking again in 1s (at "), "{msg}");
}

#[tokio::test]
async fn a_pending_start_does_not_take_an_export_while_an_older_one_is_pending() {
    // Both objects' starts went unanswered; the export that showed up may be either's:
    // the older object resolves first, this one waits (and, being deleted, stops nothing).
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    let since = "2026-03-01T12:00:00.000Z";
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), since.into())].into());
    let mut created = export("e-x", ads::ACTIVE);
    created.start_time = Some(ts("2026-03-01T12:00:01.000Z"));
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![created]));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![pending_object("old")]);
    let err = cleanup_error(run(&obj, &ctx).await);
    server.finish().await;
    assert!(matches!(err, Error::Waiting(ref m) if m.contains("team-a/old")), "{err:?}");
    assert_eq!(ads.take_calls(), [Call::List], "no Stop");
}

// ---------------------------------------------------------------------------
// START_FAILED: start anew, with backoff
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_start_failed_export_is_let_go_and_a_new_one_started_with_backoff() {
    let obj = with_status(object(), managed("e-1", ads::START_IN_PROGRESS));
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_FAILED)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let first = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    requeue_delay_between(&first, Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Start in the same pass");
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_id, None, "the failed export is let go");
    assert_eq!(status.status_detail.as_deref(), Some("START_FAILED detail"));
    assert_cond(&status, CONDITION_SYNCED, "False", "StartFailed");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("export e-1 is START_FAILED"));
    assert_eq!(seen.event_reasons(), [("Warning".into(), "StartFailed".into())]);

    // The retry starts a new export; it fails to start too: the delay doubles.
    let obj = with_status(object(), status);
    ads.on_list(Ok(vec![export("e-1", ads::START_FAILED)]))
        .on_start(Ok(started("e-2")))
        .on_describe(Ok(export("e-2", ads::START_FAILED)));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = reuse(ctx, client);
    let second = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    requeue_delay_between(&second, Duration::from_secs(8), Duration::from_secs(10));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-2")]);
    assert_eq!(seen.requests[2].pending_value(), &Value::Null, "that start settled: annotation removed");
    assert_eq!(seen.requests[3].applied_status().export_id, None);
}

#[tokio::test]
async fn an_adopted_start_failed_export_stalls() {
    let mut obj = with_status(object(), managed("e-1", ads::START_IN_PROGRESS));
    obj.spec.export_id = Some("e-1".into());
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_FAILED)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"), "spec.exportId names it: kept");
    assert_cond(&status, CONDITION_STALLED, "True", "StartFailed");
}

#[tokio::test]
async fn stopping_an_export_not_listed_yet_still_stops_it() {
    let mut obj = with_status(object(), managed("e-1", ads::ACTIVE));
    obj.spec.stopped = true;
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error("DescribeContinuousExports", Reason::NotFound, "not listed")))
        .on_stop(Ok(StopTimes::default()));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(Duration::from_secs(1)), "polls");
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_cond(&status, CONDITION_READY, "False", "StopInProgress");
}

#[tokio::test]
async fn a_start_pending_value_from_before_the_object_existed_is_dropped() {
    // Copied with a manifest; a retained export is running and unclaimed.
    let mut obj = object(); // created 2026-01-01
    obj.spec.stopped = true;
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2025-06-01T00:00:00.000Z".into())].into());
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [], "nothing recovered, nothing stopped");
    assert_eq!(seen.requests[1].pending_value(), &Value::Null, "dropped");
    assert_cond(&seen.requests[2].applied_status(), CONDITION_READY, "True", "NotStarted");
}

#[tokio::test]
async fn an_adopting_object_never_has_a_pending_start() {
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    obj.spec.export_id = Some("export-typo".into());
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), [], "no List, no Stop of an unrelated export");
}

#[tokio::test]
async fn a_future_start_pending_time_still_recovers_the_export() {
    let mut obj = object();
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2099-01-01T00:00:00.000Z".into())].into());
    let mut created = export("e-own", ads::ACTIVE);
    created.start_time = Some(ts("2026-01-01T00:00:05.000Z")); // after the object's creation
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![created]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj), Expect::merge_patch(&obj)]);
    let ctx = context(client, &ads);
    run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [Call::List]);
    assert_eq!(seen.requests[1].applied_status().export_id.as_deref(), Some("e-own"));
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Recovered".into())]);
}
