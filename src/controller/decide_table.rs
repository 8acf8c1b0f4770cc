//! The rules as one table: spec (stopped, `spec.exportId`, deletion policy, deleting)
//! x what ADS reports (each of the seven statuses, no export, `NotFound`) x pending
//! start / claims by other objects. Each row runs the pure steps only: [`reads`] picks
//! the read, the row's ADS answer fills it, [`decide::decide`] (or
//! [`deletion::decide`]) plans; a planned call is taken to succeed (Start: the export
//! is `START_IN_PROGRESS`; Stop: both times answered) and folded; [`conclude`] gives
//! the conditions. Rows assert the plan and the four conditions (`-`: not written).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::backoff::{Attempts, Policy};
use super::claims::{Age, Claim, Hold, Lifecycle, Others, PendingStart};
use super::conclude::{conclude, hold_deletion};
use super::decide::{self, AnnotationChange, Attempt, Call, Next, ReadPlan, reads};
use super::deletion::{self, Deletion};
use super::fold::{self, StartOutcome, StopOutcome};
use super::observation::{Observation, Pending, Reads, Schedule};
use crate::ads::ExportStatus::{self, *};
use crate::ads::{AdsError, ExportDescription, Operation, Reason, StartedExport, StopTimes};
use crate::api::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CONDITION_SYNCED, ContinuousExportSpec,
    ContinuousExportStatus, DeletionPolicy, ManagementPolicy,
};

const REGION: &str = "us-west-2";
const ID: &str = "e-1";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The spec columns.
#[derive(Clone, Copy, Debug)]
struct Spec {
    stopped: bool,
    adopt: bool,
    /// `managementPolicy: ObserveOnly` (with `spec.exportId: e-1`).
    observe: bool,
    policy: DeletionPolicy,
    deleting: bool,
}

const RUN: Spec =
    Spec { stopped: false, adopt: false, observe: false, policy: DeletionPolicy::Delete, deleting: false };
const STOP: Spec = Spec { stopped: true, ..RUN };
const ADOPT: Spec = Spec { adopt: true, ..RUN };
const ADOPT_STOP: Spec = Spec { adopt: true, stopped: true, ..RUN };
const DELETE: Spec = Spec { deleting: true, ..RUN };
const RETAIN: Spec = Spec { deleting: true, policy: DeletionPolicy::Retain, ..RUN };
const OBSERVE: Spec = Spec { observe: true, ..RUN };
const OBSERVE_DELETE: Spec = Spec { observe: true, deleting: true, ..RUN };
const ADOPT_DELETE: Spec = Spec { adopt: true, deleting: true, ..RUN };

/// Whether the object already manages [`ID`] (`status.exportId`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Held {
    /// `status.exportId: e-1`.
    Managed,
    /// No `status.exportId`.
    New,
    /// `status.exportId: e-1` written under `ObserveOnly`: observed, not managed.
    Observed,
}
use Held::*;

/// What ADS answers to the read the rules ask for.
#[derive(Clone, Copy, Debug)]
enum Ads {
    /// Describe (or the region's listing) shows [`ID`] in this status.
    Is(ExportStatus),
    /// Describe answers `ResourceNotFoundException`; a listing is empty.
    NotFound,
    /// No export: a listing is empty (no read expected otherwise).
    Nothing,
}
use Ads::*;

/// The pending-start and claim columns.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ctx {
    /// No annotation, no other object.
    Alone,
    /// This object's own start is pending (annotation from a minute ago).
    Pending,
    /// An older object manages [`ID`].
    Claimed,
    /// An older object that manages [`ID`] is being deleted.
    ClaimedDeleting,
    /// A younger object manages [`ID`].
    ClaimedYounger,
    /// An older object's start is pending in the region.
    OtherPending,
    /// `spec.exportId` names another export than the managed one.
    Mismatch,
    /// Neither `spec.region` nor `--aws-region`.
    NoRegion,
}
use Ctx::*;

/// The plan a row expects.
#[derive(Clone, Debug, PartialEq)]
enum Want {
    /// No call.
    Done,
    /// No call; the annotation is removed first.
    DoneClearing,
    /// StartContinuousExport.
    Start(Attempt),
    /// StopContinuousExport of [`ID`].
    Stop,
    /// Deletion: the finalizer is released.
    Release,
    /// Deletion: held by a failure.
    HoldDel,
}

struct Row {
    name: &'static str,
    spec: Spec,
    held: Held,
    ads: Ads,
    ctx: Ctx,
    want: Want,
    conditions: [&'static str; 4],
}

fn row(name: &'static str, spec: Spec, held: Held, ads: Ads, ctx: Ctx, want: Want, c: [&'static str; 4]) -> Row {
    Row { name, spec, held, ads, ctx, want, conditions: c }
}

fn description(status: ExportStatus) -> ExportDescription {
    ExportDescription {
        export_id: ID.into(),
        status: status.into(),
        status_detail: Some(format!("{status} detail")),
        start_time: Some(ts("2026-03-01T11:59:30Z")),
        ..ExportDescription::default()
    }
}

fn spec_of(s: Spec, ctx: Ctx) -> ContinuousExportSpec {
    ContinuousExportSpec {
        stopped: s.stopped,
        export_id: match (s.adopt || s.observe, ctx) {
            (_, Mismatch) => Some("e-other".into()),
            (true, _) => Some(ID.into()),
            _ => None,
        },
        region: None,
        account_ref: None,
        deletion_policy: s.policy,
        management_policy: if s.observe { ManagementPolicy::ObserveOnly } else { ManagementPolicy::Full },
        write_info_to: None,
    }
}

fn others(ctx: Ctx) -> Others {
    let claim =
        |lifecycle| Claim { id: ID.into(), owner: "ns/older".into(), hold: Hold::Manages, age: Age::Older, lifecycle };
    match ctx {
        Claimed => Others { claims: vec![claim(Lifecycle::Live)], ..Others::default() },
        ClaimedDeleting => Others { claims: vec![claim(Lifecycle::Deleting)], ..Others::default() },
        ClaimedYounger => {
            Others { claims: vec![Claim { age: Age::Younger, ..claim(Lifecycle::Live) }], ..Others::default() }
        }
        OtherPending => Others {
            pending_starts: vec![PendingStart { owner: "ns/older".into(), age: Age::Older }],
            ..Others::default()
        },
        _ => Others::default(),
    }
}

/// The observation of a row, before the ADS reads.
fn observation(r: &Row) -> Observation {
    let status = match r.held {
        Managed => ContinuousExportStatus {
            export_id: Some(ID.into()),
            export_status: Some(Active.as_str().into()),
            ..ContinuousExportStatus::default()
        },
        New => ContinuousExportStatus::default(),
        Observed => ContinuousExportStatus {
            export_id: Some(ID.into()),
            export_status: Some(Active.as_str().into()),
            management_policy: Some(ManagementPolicy::ObserveOnly),
            ..ContinuousExportStatus::default()
        },
    };
    let pending = match r.ctx {
        Pending => Pending { marked: true, since: Some(ts("2026-03-01T11:59:00Z")) },
        _ => Pending::default(),
    };
    Observation {
        region: (r.ctx != NoRegion).then(|| REGION.to_owned()),
        generation: 1,
        status,
        pending,
        request: None,
        others: others(r.ctx),
        ads: Reads::default(),
        schedule: Schedule {
            resync: Duration::from_secs(600),
            policy: Policy { base: Duration::from_secs(5), max: Duration::from_secs(300) },
            attempts: Attempts::default(),
            jitter: 0.0,
        },
        now: ts("2026-03-01T12:00:00Z"),
    }
}

fn described(ads: Ads) -> Result<ExportDescription, AdsError> {
    match ads {
        Is(status) => Ok(description(status)),
        NotFound | Nothing => Err(AdsError::new(Operation::Describe, Reason::NotFound, "not found")),
    }
}

fn listed(ads: Ads) -> Result<Vec<ExportDescription>, AdsError> {
    match ads {
        Is(status) => Ok(vec![description(status)]),
        NotFound | Nothing => Ok(vec![]),
    }
}

fn started_ok() -> StartOutcome {
    let started = StartedExport { export_id: ID.into(), ..StartedExport::default() };
    StartOutcome::Started { started, described: Ok(description(StartInProgress)) }
}

fn stopped_ok() -> StopOutcome {
    let times = StopTimes { start_time: Some(ts("2026-03-01T11:59:30Z")), stop_time: Some(ts("2026-03-01T12:00:00Z")) };
    StopOutcome::Stopped { times, described: None }
}

/// `"True Active"`, or `-` when the condition is absent.
fn summary(s: &ContinuousExportStatus) -> [String; 4] {
    [CONDITION_READY, CONDITION_SYNCED, CONDITION_RECONCILING, CONDITION_STALLED]
        .map(|t| s.condition(t).map_or("-".to_owned(), |c| format!("{} {}", c.status, c.reason)))
}

/// Runs an apply row through reads, decide, the call's success, fold and conclude.
fn apply(r: &Row, spec: &ContinuousExportSpec, mut obs: Observation) -> (Want, ContinuousExportStatus) {
    match reads(spec, &obs) {
        ReadPlan::Nothing => {}
        ReadPlan::Describe(id) => {
            assert_eq!(id, spec.export_id.clone().unwrap_or(ID.into()), "{}: reads", r.name);
            obs.ads.described = Some(described(r.ads));
        }
        ReadPlan::List => obs.ads.listed = Some(listed(r.ads)),
    }
    let plan = decide::decide(spec, &obs);
    let clearing = plan.annotation == AnnotationChange::Clear;
    let (want, verdict) = match plan.next.clone() {
        Next::Done(result) => {
            (if clearing { Want::DoneClearing } else { Want::Done }, fold::without_call(plan, result))
        }
        Next::Call(Call::Start(attempt)) => {
            (Want::Start(attempt), fold::start(spec, &obs, plan, attempt, started_ok()))
        }
        Next::Call(Call::Stop { id, reason, .. }) => {
            assert_eq!(id, ID, "{}: stops", r.name);
            (Want::Stop, fold::stop(spec, &obs, plan, &id, &reason, stopped_ok()))
        }
    };
    (want, conclude(spec, &obs, &verdict).status)
}

/// Runs a deletion row through its reads, the deletion rules and (held) its conditions.
fn delete(r: &Row, spec: &ContinuousExportSpec, mut obs: Observation) -> (Want, ContinuousExportStatus) {
    if deletion::needs_listing(&obs) {
        obs.ads.listed = Some(listed(r.ads));
    }
    if let Some(id) = deletion::to_describe(spec, &obs) {
        assert_eq!(id, ID, "{}: describes", r.name);
        obs.ads.described = Some(described(r.ads));
    }
    match deletion::decide(spec, &obs).0 {
        Deletion::Release(_) => (Want::Release, obs.status),
        Deletion::Stop(_) => (Want::Stop, obs.status),
        Deletion::Hold(f) => (Want::HoldDel, hold_deletion(&obs, &f).0),
    }
}

#[rustfmt::skip]
fn table() -> Vec<Row> {
    use Want::*;
    const ACTIVE: [&str; 4] = ["True Active", "True Synced", "False Settled", "False NotStalled"];
    const STARTING: [&str; 4] = ["False StartInProgress", "True Synced", "True Transitioning", "False NotStalled"];
    const STOPPING: [&str; 4] = ["False StopInProgress", "True Synced", "True Transitioning", "False NotStalled"];
    const NOT_STARTED: [&str; 4] = ["True NotStarted", "True Synced", "False Settled", "False NotStalled"];
    const DUPLICATE: [&str; 4] = ["False AlreadyManaged", "False AlreadyManaged", "False AlreadyManaged", "True AlreadyManaged"];
    const GONE: [&str; 4] = ["False NotFound", "False NotFound", "False NotFound", "True NotFound"];
    const WAITING: [&str; 4] = ["False Pending", "False ResourceInUse", "True ResourceInUse", "False NotStalled"];
    const BUSY: [&str; 4] = ["False Pending", "False Conflict", "True Conflict", "False NotStalled"];
    const UNTOUCHED: [&str; 4] = ["-", "-", "-", "-"];
    const DELETE_WAITS: [&str; 4] = ["-", "-", "True Deleting", "-"];
    const OBSERVED: [&str; 4] = ["True Observed", "True Synced", "False Settled", "False NotStalled"];
    vec![
        // spec running, the object manages e-1: the status ADS reports
        row("managed START_IN_PROGRESS",  RUN, Managed, Is(StartInProgress), Alone, Done, STARTING),
        row("managed START_FAILED: start anew", RUN, Managed, Is(StartFailed), Alone, DoneClearing,
            ["False Pending", "False StartFailed", "True StartFailed", "False NotStalled"]),
        row("managed ACTIVE",             RUN, Managed, Is(Active), Alone, Done, ACTIVE),
        row("managed ERROR",              RUN, Managed, Is(Error), Alone, Done,
            ["False Error", "True Synced", "False ExportError", "True ExportError"]),
        row("managed STOP_IN_PROGRESS",   RUN, Managed, Is(StopInProgress), Alone, Done,
            ["False StopInProgress", "True Synced", "True Transitioning", "False NotStalled"]),
        row("managed STOP_FAILED",        RUN, Managed, Is(StopFailed), Alone, Done,
            ["False StopFailed", "True Synced", "False StopFailed", "True StopFailed"]),
        row("managed INACTIVE (out of band)", RUN, Managed, Is(Inactive), Alone, Done,
            ["False Inactive", "True Synced", "False StoppedOutsideKubernetes", "True StoppedOutsideKubernetes"]),
        row("managed, not found",         RUN, Managed, NotFound, Alone, Done, GONE),
        row("managed, an older object manages it too", RUN, Managed, Is(Active), Claimed, Done, DUPLICATE),
        row("managed, spec.exportId differs", RUN, Managed, Is(Active), Mismatch, Done,
            ["False InvalidParameter", "False InvalidParameter", "False InvalidParameter", "True InvalidParameter"]),
        // spec stopped, the object manages e-1
        row("stopped START_IN_PROGRESS: wait", STOP, Managed, Is(StartInProgress), Alone, Done,
            ["False StartInProgress", "True Synced", "True Transitioning", "False NotStalled"]),
        row("stopped START_FAILED",       STOP, Managed, Is(StartFailed), Alone, Done,
            ["True StartFailed", "True Synced", "False Settled", "False NotStalled"]),
        row("stopped ACTIVE: stop",       STOP, Managed, Is(Active), Alone, Stop, STOPPING),
        row("stopped ERROR: stop",        STOP, Managed, Is(Error), Alone, Stop, STOPPING),
        row("stopped STOP_IN_PROGRESS",   STOP, Managed, Is(StopInProgress), Alone, Done, STOPPING),
        row("stopped STOP_FAILED: stop again", STOP, Managed, Is(StopFailed), Alone, Stop,
            ["False StopInProgress", "False StopFailed", "True StopFailed", "False NotStalled"]),
        row("stopped INACTIVE",           STOP, Managed, Is(Inactive), Alone, Done,
            ["True Stopped", "True Synced", "False Settled", "False NotStalled"]),
        row("stopped, not found: a Stop settles it", STOP, Managed, NotFound, Alone, Stop, STOPPING),
        // spec.exportId: adopt e-1
        row("adopt ACTIVE",               ADOPT, New, Is(Active), Alone, Done, ACTIVE),
        row("adopt INACTIVE",             ADOPT, New, Is(Inactive), Alone, Done,
            ["False Inactive", "True Synced", "False StoppedOutsideKubernetes", "True StoppedOutsideKubernetes"]),
        row("adopt START_FAILED: stall, not restart", ADOPT, New, Is(StartFailed), Alone, Done,
            ["False StartFailed", "True Synced", "False StartFailed", "True StartFailed"]),
        row("adopt, not found",           ADOPT, New, NotFound, Alone, Done, GONE),
        row("adopt stopped ACTIVE: stop", ADOPT_STOP, New, Is(Active), Alone, Stop, STOPPING),
        row("adopt, an older object manages it", ADOPT, New, Is(Active), Claimed, Done, DUPLICATE),
        row("adopt, its manager is being deleted", ADOPT, New, Is(Active), ClaimedDeleting, Done, WAITING),
        row("adopt, a stray start-pending is dropped", ADOPT, New, Is(Active), Pending, DoneClearing, ACTIVE),
        // no export, no spec.exportId: start, or find the pending start's export
        row("new: start",                 RUN, New, Nothing, Alone, Start(Attempt::First), STARTING),
        row("new, another export ACTIVE: no Start", RUN, New, Is(Active), Alone, DoneClearing, BUSY),
        row("new, another export START_IN_PROGRESS", RUN, New, Is(StartInProgress), Alone, DoneClearing, BUSY),
        row("new, only an INACTIVE export: start", RUN, New, Is(Inactive), Alone, Start(Attempt::First), STARTING),
        row("new, an older object's start pending: wait", RUN, New, Nothing, OtherPending, Done, WAITING),
        row("pending, nothing listed: start again", RUN, New, Nothing, Pending, Start(Attempt::Retry), STARTING),
        row("pending, its export ACTIVE: recovered", RUN, New, Is(Active), Pending, Done, ACTIVE),
        row("pending, its export START_IN_PROGRESS", RUN, New, Is(StartInProgress), Pending, Done, STARTING),
        row("pending, its export START_FAILED: start anew", RUN, New, Is(StartFailed), Pending, Start(Attempt::Retry), STARTING),
        row("stopped new: nothing to start", STOP, New, Nothing, Alone, Done, NOT_STARTED),
        row("stopped, pending left nothing", STOP, New, Nothing, Pending, DoneClearing, NOT_STARTED),
        row("stopped, pending's export ACTIVE: stop it", STOP, New, Is(Active), Pending, Stop, STOPPING),
        row("no region",                  RUN, New, Nothing, NoRegion, Done,
            ["False Pending", "False UnknownError", "True UnknownError", "False NotStalled"]),
        // being deleted, deletionPolicy Delete
        row("delete ACTIVE: stop",        DELETE, Managed, Is(Active), Alone, Stop, UNTOUCHED),
        row("delete ERROR: stop",         DELETE, Managed, Is(Error), Alone, Stop, UNTOUCHED),
        row("delete STOP_FAILED: stop",   DELETE, Managed, Is(StopFailed), Alone, Stop, UNTOUCHED),
        row("delete START_IN_PROGRESS: wait", DELETE, Managed, Is(StartInProgress), Alone, HoldDel, DELETE_WAITS),
        row("delete START_FAILED",        DELETE, Managed, Is(StartFailed), Alone, Release, UNTOUCHED),
        row("delete STOP_IN_PROGRESS",    DELETE, Managed, Is(StopInProgress), Alone, Release, UNTOUCHED),
        row("delete INACTIVE",            DELETE, Managed, Is(Inactive), Alone, Release, UNTOUCHED),
        row("delete, not found: a Stop settles it", DELETE, Managed, NotFound, Alone, Stop, UNTOUCHED),
        row("delete, an older object manages it", DELETE, Managed, Is(Active), Claimed, Release, UNTOUCHED),
        row("delete, nothing started",    DELETE, New, Nothing, Alone, Release, UNTOUCHED),
        row("delete, pending's export ACTIVE: stop it", DELETE, New, Is(Active), Pending, Stop, UNTOUCHED),
        row("delete, no region, managed", DELETE, Managed, Nothing, NoRegion, HoldDel,
            ["-", "False UnknownError", "True Deleting", "-"]),
        row("delete, no region, nothing started", DELETE, New, Nothing, NoRegion, Release, UNTOUCHED),
        // being deleted, deletionPolicy Retain
        row("retain ACTIVE",              RETAIN, Managed, Is(Active), Alone, Release, UNTOUCHED),
        // managementPolicy ObserveOnly: mirror e-1 whatever its state or manager; never Start or Stop
        row("observe ACTIVE",             OBSERVE, New, Is(Active), Alone, Done, OBSERVED),
        row("observe INACTIVE: no stall", OBSERVE, New, Is(Inactive), Alone, Done, OBSERVED),
        row("observe ERROR: no stop, no stall", OBSERVE, New, Is(Error), Alone, Done, OBSERVED),
        row("observe STOP_FAILED",        OBSERVE, New, Is(StopFailed), Alone, Done, OBSERVED),
        row("observe START_IN_PROGRESS: polled", OBSERVE, New, Is(StartInProgress), Alone, Done,
            ["False StartInProgress", "True Synced", "True Transitioning", "False NotStalled"]),
        row("observe STOP_IN_PROGRESS: polled", OBSERVE, New, Is(StopInProgress), Alone, Done, STOPPING),
        row("observe, not found",         OBSERVE, New, NotFound, Alone, Done, GONE),
        row("observe, an older object manages it: no matter", OBSERVE, New, Is(Active), Claimed, Done, OBSERVED),
        row("observe, a stray start-pending is dropped", OBSERVE, New, Is(Active), Pending, DoneClearing, OBSERVED),
        row("Full -> ObserveOnly: lets go, no Stop", OBSERVE, Managed, Is(Active), Alone, Done, OBSERVED),
        row("observe, already observed",  OBSERVE, Observed, Is(Active), Alone, Done, OBSERVED),
        row("observe, no region",         OBSERVE, New, Nothing, NoRegion, Done,
            ["False Pending", "False UnknownError", "True UnknownError", "False NotStalled"]),
        // ObserveOnly -> Full: an adoption of the observed export
        row("takeover ACTIVE",            ADOPT, Observed, Is(Active), Alone, Done, ACTIVE),
        row("takeover, stopped: stop",    ADOPT_STOP, Observed, Is(Active), Alone, Stop, STOPPING),
        row("takeover, an older object manages it", ADOPT, Observed, Is(Active), Claimed, Done, DUPLICATE),
        row("takeover, a younger object manages it", ADOPT, Observed, Is(Active), ClaimedYounger, Done, DUPLICATE),
        row("takeover, its manager is being deleted", ADOPT, Observed, Is(Active), ClaimedDeleting, Done, WAITING),
        // deleting an observer, or an object that has not taken over yet: nothing stopped
        row("delete an observer",         OBSERVE_DELETE, Observed, Is(Active), Alone, Release, UNTOUCHED),
        row("delete an observer that managed it", OBSERVE_DELETE, Managed, Is(Active), Alone, Release, UNTOUCHED),
        row("delete before the takeover", ADOPT_DELETE, Observed, Is(Active), Alone, Release, UNTOUCHED),
    ]
}

#[test]
fn the_rules() {
    let mut failures = Vec::new();
    for r in table() {
        let spec = spec_of(r.spec, r.ctx);
        let obs = observation(&r);
        let (want, status) = if r.spec.deleting { delete(&r, &spec, obs) } else { apply(&r, &spec, obs) };
        let got = summary(&status);
        if want != r.want || got != r.conditions.map(str::to_owned) {
            failures.push(format!(
                "{}: plan {want:?} (wanted {:?}), conditions {got:?} (wanted {:?})",
                r.name, r.want, r.conditions
            ));
        }
    }
    assert!(failures.is_empty(), "{} rows differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn no_read_before_a_configuration_error_or_a_claim() {
    for (spec, held, ctx) in [
        (RUN, Managed, Claimed),
        (RUN, Managed, Mismatch),
        (ADOPT, New, Claimed),
        (STOP, New, Alone),
        (RUN, New, NoRegion),
    ] {
        let r = row("", spec, held, Nothing, ctx, Want::Done, ["-"; 4]);
        assert_eq!(reads(&spec_of(spec, ctx), &observation(&r)), ReadPlan::Nothing, "{spec:?} {held:?} {ctx:?}");
    }
}

#[test]
fn decide_is_pure() {
    // The same observation gives the same plan, however often it is asked.
    for r in table().into_iter().filter(|r| !r.spec.deleting) {
        let spec = spec_of(r.spec, r.ctx);
        let mut obs = observation(&r);
        obs.ads.described = Some(described(r.ads));
        obs.ads.listed = Some(listed(r.ads));
        assert_eq!(decide::decide(&spec, &obs), decide::decide(&spec, &obs), "{}", r.name);
    }
}

#[test]
fn a_takeover_is_announced_and_a_refused_one_lets_go_of_what_it_observed() {
    let taken = row("", ADOPT, Observed, Is(Active), Alone, Want::Done, ["-"; 4]);
    let mut obs = observation(&taken);
    obs.ads.described = Some(described(taken.ads));
    let plan = decide::decide(&spec_of(ADOPT, Alone), &obs);
    let adopted: Vec<_> = plan.notices.iter().filter(|n| n.reason == "Adopted").collect();
    assert_eq!(adopted.len(), 1, "{:?}", plan.notices);
    assert!(adopted[0].note.contains("observed until now"), "{}", adopted[0].note);
    let verdict = fold::without_call(plan.clone(), Ok(decide::Phase::Steady));
    let status = conclude(&spec_of(ADOPT, Alone), &obs, &verdict).status;
    assert_eq!((status.managed_export_id(), status.management_policy), (Some(ID), None), "now managed");

    let refused = row("", ADOPT, Observed, Is(Active), Claimed, Want::Done, ["-"; 4]);
    let plan = decide::decide(&spec_of(ADOPT, Claimed), &observation(&refused));
    assert_eq!(plan.status.export_id, None, "the status names no export it does not manage");
}

#[test]
fn an_observer_reads_its_export_whoever_manages_it_and_the_shared_listing_will_do() {
    let r = row("", OBSERVE, New, Is(Active), Claimed, Want::Done, ["-"; 4]);
    let (spec, obs) = (spec_of(OBSERVE, Claimed), observation(&r));
    assert_eq!(reads(&spec, &obs), ReadPlan::Describe(ID.into()));
    assert!(decide::shared_read_suffices(&spec, &obs));
    let asked = Observation { request: Some("now".into()), ..obs };
    assert!(!decide::shared_read_suffices(&spec, &asked), "a reconcile request reads afresh");
}

#[test]
fn a_handled_request_is_recorded_and_kept() {
    let r = row("", RUN, Managed, Is(Active), Alone, Want::Done, ["-"; 4]);
    let spec = spec_of(RUN, Alone);
    let mut obs = observation(&r);
    obs.ads.described = Some(described(r.ads));
    obs.request = Some("2026-03-01T12:00:00Z".into());
    let plan = decide::decide(&spec, &obs);
    let status = conclude(&spec, &obs, &fold::without_call(plan.clone(), Ok(decide::Phase::Steady))).status;
    assert_eq!(status.last_handled_reconcile_at.as_deref(), Some("2026-03-01T12:00:00Z"));
    // The next pass, with nothing new asked, keeps it.
    let next = Observation { request: None, status: status.clone(), ..obs };
    let again = conclude(&spec, &next, &fold::without_call(decide::decide(&spec, &next), Ok(decide::Phase::Steady)));
    assert_eq!(again.status, status, "no write: the request stays recorded");
}

#[test]
fn pausing_changes_only_the_synced_condition() {
    let r = row("", RUN, Managed, Is(Active), Alone, Want::Done, ["-"; 4]);
    let spec = spec_of(RUN, Alone);
    let mut obs = observation(&r);
    obs.ads.described = Some(described(r.ads));
    let steady =
        conclude(&spec, &obs, &fold::without_call(decide::decide(&spec, &obs), Ok(decide::Phase::Steady))).status;
    let paused = super::conclude::paused(&steady, 2, false, obs.now);
    assert_eq!(
        summary(&paused),
        ["True Active", "False Paused", "False Settled", "False NotStalled"].map(str::to_owned)
    );
    let others = |s: &ContinuousExportStatus| ContinuousExportStatus {
        conditions: s.conditions.iter().filter(|c| c.type_ != CONDITION_SYNCED).cloned().collect(),
        ..s.clone()
    };
    assert_eq!(others(&paused), others(&steady));
    assert_eq!(super::conclude::paused(&paused, 2, false, obs.now), paused, "written once");
    let deleting = super::conclude::paused(&paused, 2, true, obs.now);
    assert!(deleting.condition(CONDITION_SYNCED).unwrap().message.contains("the deletion waits"));
    // Resuming announces itself.
    let resumed = Observation { status: paused, ..obs };
    assert!(decide::decide(&spec, &resumed).notices.iter().any(|n| n.reason == "Resumed"));
}
