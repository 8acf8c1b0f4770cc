//! The reconcile state machine (DESIGN.md section 2).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, info, warn};

use super::conditions::{Desired, merge, now_seconds};
use super::{Context, Error};
use crate::ads::aws::op;
use crate::ads::{AdsError, ErrorClass, ExportDescription, ExportService, Reason, format_time, status as ads};
use crate::api::{
    CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CONDITION_SYNCED, ContinuousExport,
    ContinuousExportStatus, DeletionPolicy, FIELD_MANAGER, FINALIZER, START_PENDING_ANNOTATION,
};

/// How far before the `start-pending` time an export's `startTime` may lie and still
/// be taken as the one that start created (clock skew between this host and AWS).
const PENDING_SKEW: SignedDuration = SignedDuration::from_secs(300);

/// When a freshly adopted export is checked again for a second adopter.
const ADOPTION_RECHECK: Duration = Duration::from_secs(2);

/// Reconciles one `ContinuousExport`: the finalizer helper routes to apply or cleanup.
///
/// # Errors
/// [`Error`] for failed Kubernetes calls and, while deleting, failed AWS calls; the
/// error policy requeues with backoff.
pub async fn reconcile<S: ExportService>(obj: Arc<ContinuousExport>, ctx: Arc<Context<S>>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = obj.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    // `object`, not `name`: the JSON log format already uses `name` for the span's name.
    let span = tracing::info_span!(
        "reconcile",
        namespace = %ns,
        object = %obj.name_any(),
        export_id = obj.status.as_ref().and_then(|s| s.export_id.as_deref()).unwrap_or(""),
    );
    let api: Api<ContinuousExport> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => apply(&obj, &api, &ctx).await,
            Finalizer::Cleanup(obj) => cleanup(&obj, &api, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if let Some(o) = &ctx.observer {
        o.reconciled(if result.is_ok() { "ok" } else { "error" }, started.elapsed());
    }
    result
}

/// Stalled reasons that can clear without a spec change: the export's state in ADS
/// ([`Phase::Failed`]), another object's claim on the export (which may go away), or
/// an export ADS does not list (which may be eventual consistency).
/// Such objects are looked at again every resync period.
const RECHECKED_STALLS: [&str; 7] = [
    "StoppedOutsideKubernetes",
    "StartFailed",
    "StopFailed",
    "ExportError",
    "UnknownStatus",
    "AlreadyManaged",
    "NotFound",
];

/// What one pass of the AWS state machine concluded.
enum Phase {
    /// The export matches the spec (or there is nothing to do): resync later.
    Steady,
    /// Starting or stopping: poll again soon.
    Transition,
    /// The export is in a state that needs a human (failed, errored, stopped out of band).
    Failed { reason: &'static str, message: String },
    /// `spec.stopped` and the export no longer exists in ADS: nothing left to stop.
    Gone,
}

/// ADS does not list the export (any more): its last known state is stale.
fn mark_gone(status: &mut ContinuousExportStatus) {
    status.export_status = None;
    status.status_detail = Some("the export no longer exists in ADS".into());
}

fn has_export(obj: &ContinuousExport) -> bool {
    obj.status.as_ref().is_some_and(|s| s.export_id.is_some())
}

/// The per-object key of backoff state and metrics: the UID (namespace/name if none).
pub(super) fn key(obj: &ContinuousExport) -> String {
    obj.uid().unwrap_or_else(|| format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()))
}

/// Since when a start of this object may be pending, from its `start-pending`
/// annotation; `None` when no start can be: no annotation, an adopting object
/// (`spec.exportId`: it never sends Start), or a time from before the object existed (a
/// value copied with a manifest). An unparsable or future time still means "a start may
/// have happened", looked for from the object's creation on.
fn pending_since(obj: &ContinuousExport) -> Option<Timestamp> {
    if obj.spec.export_id.is_some() {
        return None;
    }
    let raw = obj.annotations().get(START_PENDING_ANNOTATION)?;
    let created = obj.meta().creation_timestamp.as_ref().map(|t| t.0);
    let from_creation = Some(created.unwrap_or(Timestamp::UNIX_EPOCH));
    let Ok(t) = raw.parse::<Timestamp>() else { return from_creation };
    let latest = Timestamp::now().checked_add(PENDING_SKEW).unwrap_or(Timestamp::MAX);
    match created.and_then(|c| c.checked_sub(PENDING_SKEW).ok()) {
        Some(earliest) if t < earliest => None,
        _ if t > latest => from_creation,
        _ => Some(t),
    }
}

/// Copies what ADS reports into the status fields.
fn copy_description(status: &mut ContinuousExportStatus, d: &ExportDescription) {
    status.export_id = Some(d.export_id.clone());
    status.export_status = Some(d.status.clone());
    status.status_detail = d.status_detail.clone();
    status.s3_bucket = d.s3_bucket.clone().or(status.s3_bucket.take());
    status.data_source = d.data_source.clone().or(status.data_source.take());
    status.database_name = d.database_name.clone().or(status.database_name.take());
    status.start_time = d.start_time.map(format_time).or(status.start_time.take());
    status.stop_time = d.stop_time.map(format_time).or(status.stop_time.take());
}

fn region<S: ExportService>(obj: &ContinuousExport, ctx: &Context<S>) -> Option<String> {
    obj.spec.region.clone().or_else(|| ctx.settings.default_region.clone())
}

/// Recoverable: restarting the operator with `--aws-region` fixes it (spec.region
/// cannot be added to an existing object).
fn no_region_error() -> AdsError {
    AdsError::new(
        "Configuration",
        Reason::Unknown,
        "no AWS region: start the operator with --aws-region (or AWS_REGION), or recreate this ContinuousExport \
         with spec.region set to the Migration Hub home region",
    )
}

/// Publishes an event. `action` is what the operator did (an ADS operation, or
/// `Reconcile`): events are aggregated per reason *and* action, so failures of
/// different operations stay apart.
async fn publish<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    warning: bool,
    (reason, action): (&str, &str),
    note: String,
) {
    let ev = KubeEvent {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

async fn patch_pending(api: &Api<ContinuousExport>, name: &str, value: Option<String>) -> Result<(), Error> {
    let patch = json!({"metadata": {"annotations": {START_PENDING_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Removes the `start-pending` annotation if the object carries it (`pending`), and
/// records that it no longer does.
async fn clear_pending(api: &Api<ContinuousExport>, name: &str, pending: &mut bool) -> Result<(), Error> {
    if *pending {
        patch_pending(api, name, None).await?;
        *pending = false;
    }
    Ok(())
}

/// Server-side applies the whole status (owned fields not set are removed).
/// A 404 (object gone meanwhile) is not an error.
async fn write_status(api: &Api<ContinuousExport>, name: &str, status: &ContinuousExportStatus) -> Result<(), Error> {
    let body = json!({
        "apiVersion": "adsexport.io/v1alpha1",
        "kind": "ContinuousExport",
        "status": status,
    });
    match api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Another object's claim on an export, from the controller's cache.
struct Claim {
    /// The export ID.
    id: String,
    /// `namespace/name` of the claiming object.
    owner: String,
    /// Claimed in `status.exportId` (it manages the export), not only in `spec.exportId`.
    managed: bool,
    /// The claiming object is older than this one (creation time, then name): the
    /// tie-breaker when two objects adopted one export at the same moment.
    older: bool,
    /// The claiming object is being deleted (its finalizer may still stop the export).
    deleting: bool,
}

/// The order in which objects count as older: creation time, then namespace and name.
fn age(o: &ContinuousExport) -> (Option<Timestamp>, String, String) {
    (o.meta().creation_timestamp.as_ref().map(|t| t.0), o.namespace().unwrap_or_default(), o.name_any())
}

/// Another object (with `only_older`, one older than `obj`) whose start is pending in
/// `region`: it carries `start-pending` and no `status.exportId`, so its unanswered
/// Start may have created any export that shows up there. Returns `namespace/name`.
fn pending_start_elsewhere<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    region: &str,
    only_older: bool,
) -> Option<String> {
    let store = ctx.store.as_ref()?;
    let (me, my_age) = (obj.uid(), age(obj));
    store
        .state()
        .iter()
        .filter(|o| o.uid() != me && (!only_older || age(o) < my_age))
        .filter(|o| pending_since(o).is_some() && !has_export(o))
        .find(|o| self::region(o, ctx).as_deref() == Some(region))
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
}

/// Recoverable: wait until `owner`'s pending start in `region` has settled.
fn pending_elsewhere_error(owner: &str, region: &str) -> AdsError {
    AdsError::new(
        op::START,
        Reason::ResourceInUse,
        format!(
            "waiting for the pending start of ContinuousExport {owner} in {region} to settle: until it does, an \
             export showing up there may be that one's"
        ),
    )
}

/// Claims of other objects on exports, those being deleted included (until their
/// finalizer is gone they may still stop, or keep, their export).
fn claims<S: ExportService>(ctx: &Context<S>, obj: &ContinuousExport) -> Vec<Claim> {
    let (me, my_age) = (obj.uid(), age(obj));
    let Some(store) = ctx.store.as_ref() else { return Vec::new() };
    store
        .state()
        .iter()
        .filter(|o| o.uid() != me)
        .filter_map(|o| {
            let in_status = o.status.as_ref().and_then(|st| st.export_id.clone());
            let managed = in_status.is_some();
            let id = in_status.or(o.spec.export_id.clone())?;
            let owner = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
            let deleting = o.meta().deletion_timestamp.is_some();
            Some(Claim { id, owner, managed, older: age(o) < my_age, deleting })
        })
        .collect()
}

/// The other object that already manages export `id` (and, with `only_older`, is
/// older than `obj`), if any.
fn managed_elsewhere<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    id: &str,
    only_older: bool,
) -> Option<Claim> {
    claims(ctx, obj).into_iter().find(|c| c.id == id && c.managed && (c.older || !only_older))
}

fn duplicate_error(id: &str, owner: &str) -> AdsError {
    AdsError::new(
        "Configuration",
        Reason::AlreadyManaged,
        format!(
            "export {id} is already managed by ContinuousExport {owner}; one export has one managing object: this \
             one adopts it once {owner} is gone, or delete this one"
        ),
    )
}

fn is_running(status: &str) -> bool {
    status == ads::ACTIVE || status == ads::START_IN_PROGRESS
}

/// The export a crashed or unanswered start may have created, among `exports`: running,
/// started no earlier than the `start-pending` time (less [`PENDING_SKEW`]), and
/// managed by no other object.
fn pending_candidate<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    exports: &[ExportDescription],
    since: Timestamp,
) -> Option<ExportDescription> {
    let claimed = claims(ctx, obj);
    let earliest = since.checked_sub(PENDING_SKEW).unwrap_or(since);
    exports
        .iter()
        .find(|d| {
            is_running(&d.status)
                && !claimed.iter().any(|c| c.id == d.export_id)
                && d.start_time.is_none_or(|t| t >= earliest)
        })
        .cloned()
}

/// [`pending_candidate`] among the region's exports as listed now.
async fn resolve_pending<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    region: &str,
    since: Timestamp,
) -> Result<Option<ExportDescription>, AdsError> {
    Ok(pending_candidate(ctx, obj, &ctx.ads.list(region).await?, since))
}

/// Names the running export `active` that makes a Start conflict: the object managing
/// it, or how to adopt it. `detail` (ADS's message, or why Start was not sent) is appended.
fn conflict_message<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    region: &str,
    active: &ExportDescription,
    detail: &str,
) -> String {
    let (id, state) = (&active.export_id, &active.status);
    let claims = claims(ctx, obj);
    let managing = claims.iter().find(|c| c.id == *id && c.managed).or_else(|| claims.iter().find(|c| c.id == *id));
    match managing.map(|c| c.owner.clone()) {
        Some(owner) => format!(
            "export {id} is already {state} in {region}, managed by ContinuousExport {owner}: ADS allows one active \
             export per region; stop that one first ({detail})"
        ),
        None => format!(
            "export {id} is already {state} in {region}; recreate this ContinuousExport with spec.exportId: {id} to \
             adopt it, or stop it first ({detail})"
        ),
    }
}

/// On `ConflictErrorException`, names the active export (see [`conflict_message`]).
async fn explain_conflict<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    region: &str,
    mut err: AdsError,
) -> AdsError {
    if let Ok(all) = ctx.ads.list(region).await
        && let Some(active) = all.iter().find(|d| is_running(&d.status))
    {
        err.message = conflict_message(ctx, obj, region, active, &err.message);
    }
    err
}

/// The apply branch: drive the export towards the spec, then write status and requeue.
async fn apply<S: ExportService>(
    cached: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let name = cached.name_any();
    let key = key(cached);
    let region = region(cached, ctx);
    // No export recorded yet: the cache may lag behind our own writes (an export just
    // started, a pending start), and starting twice must not happen. Decide on a fresh read.
    let fresh;
    let obj = if region.is_some() && cached.spec.export_id.is_none() && !has_export(cached) {
        fresh = api.get(&name).await?;
        &fresh
    } else {
        cached
    };
    let generation = obj.metadata.generation.unwrap_or(0);
    let old = obj.status.clone().unwrap_or_default();

    // Stalled by a terminal error for this very generation: wait for a spec change, make
    // no AWS calls. (A stall on the export's own state is looked at again every resync.)
    if old.condition(CONDITION_STALLED).is_some_and(|c| {
        c.status == "True"
            && c.observed_generation == Some(generation)
            && !RECHECKED_STALLS.contains(&c.reason.as_str())
    }) {
        if let Some(o) = &ctx.observer {
            o.export_status(&key, old.export_status.as_deref(), false);
        }
        return Ok(Action::await_change());
    }
    ctx.backoff.observe_generation(&key, generation);

    let mut status = old.clone();
    let mut pending = obj.annotations().contains_key(START_PENDING_ANNOTATION);
    let outcome = match region {
        Some(region) => sync(obj, api, ctx, &region, &mut status, &mut pending).await,
        None => Err(SyncError::Ads(no_region_error())),
    };
    let outcome = match outcome {
        Ok(phase) => Ok(phase),
        Err(SyncError::Kube(e)) => return Err(e),
        Err(SyncError::Ads(e)) => {
            // `error`, not `message`: JSON log lines already use `message` for the text.
            warn!(reason = %e.reason, operation = e.operation, error = %e.message, "AWS call failed");
            Err(e)
        }
    };
    if status.export_status != old.export_status {
        // A new state (e.g. starting -> stopping) polls from the shortest delay again.
        ctx.backoff.settled(&key);
    }

    let (desired, mut action) = evaluate(obj, ctx, &key, &status, &outcome);
    if obj.spec.export_id.is_some() && old.export_id.is_none() && status.export_id.is_some() {
        // Just adopted: another object may have adopted the same export at the same
        // moment, unseen in the cache until now. Look again shortly (the older one keeps it).
        action = Action::requeue(ADOPTION_RECHECK);
    }
    status.observed_generation = Some(generation);
    status.conditions = merge(&old.conditions, &desired, generation, now_seconds());
    let status_changed = status != old;
    if status_changed {
        write_status(api, &name, &status).await?;
        let action = outcome.as_ref().err().map_or("Reconcile", |e| e.operation);
        announce_sync_change(ctx, obj, &old, &status, action).await;
    }
    if pending && status.export_id.is_some() {
        // status.exportId is stored: the start is no longer pending.
        patch_pending(api, &name, None).await?;
    }
    if let Some(o) = &ctx.observer {
        o.export_status(&key, status.export_status.as_deref(), false);
    }
    Ok(action)
}

/// Emits a Warning event when `Synced` turns False (or changes reason), and when
/// `Stalled` turns True: once per change, not on every retry. `action` is the ADS
/// operation that failed (`Reconcile` when none did).
async fn announce_sync_change<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    old: &ContinuousExportStatus,
    new: &ContinuousExportStatus,
    action: &str,
) {
    for (type_, bad) in [(CONDITION_SYNCED, "False"), (CONDITION_STALLED, "True")] {
        let Some(now) = new.condition(type_).filter(|c| c.status == bad) else {
            continue;
        };
        if old.condition(type_).is_some_and(|b| b.status == bad && b.reason == now.reason) {
            continue;
        }
        if type_ == CONDITION_STALLED && new.condition(CONDITION_SYNCED).is_some_and(|c| c.reason == now.reason) {
            continue; // already announced as the Synced failure
        }
        publish(ctx, obj, true, (&now.reason, action), now.message.clone()).await;
    }
}

/// Conditions and requeue for the outcome of [`sync`].
fn evaluate<S: ExportService>(
    obj: &ContinuousExport,
    ctx: &Context<S>,
    key: &str,
    status: &ContinuousExportStatus,
    outcome: &Result<Phase, AdsError>,
) -> (Vec<Desired>, Action) {
    let stopped = obj.spec.stopped;
    let export_status = status.export_status.as_deref();
    let ready = match (export_status, stopped) {
        (Some(ads::ACTIVE), false) => Desired::new(CONDITION_READY, true, "Active", "the export is active"),
        (Some(ads::INACTIVE), true) => Desired::new(CONDITION_READY, true, "Stopped", "the export is stopped"),
        (Some(ads::START_FAILED), true) => {
            Desired::new(CONDITION_READY, true, "StartFailed", "the export never started: nothing to stop")
        }
        (None, true) if status.export_id.is_none() && outcome.is_ok() => {
            Desired::new(CONDITION_READY, true, "NotStarted", "spec.stopped is true: no export was started")
        }
        (Some(s), _) => Desired::new(
            CONDITION_READY,
            false,
            camel(s),
            format!("export is {s}, wanted {}", if stopped { ads::INACTIVE } else { ads::ACTIVE }),
        ),
        (None, _) => Desired::new(CONDITION_READY, false, "Pending", "no export yet"),
    };
    let ready = match outcome {
        // the last known state may be stale: a terminal error needs a human first
        Err(e) if e.class() == ErrorClass::Terminal => {
            Desired::new(CONDITION_READY, false, e.reason.as_str(), "see the Stalled condition")
        }
        Ok(Phase::Gone) => {
            Desired::new(CONDITION_READY, true, "ExportGone", "the export no longer exists in ADS: nothing to stop")
        }
        _ => ready,
    };
    let not_stalled = Desired::new(CONDITION_STALLED, false, "NotStalled", "");
    match outcome {
        Ok(phase) => {
            if !matches!(phase, Phase::Transition) {
                // Only a settled export clears the failure count: a transition between
                // failures (STOP_FAILED, Stop again, STOP_IN_PROGRESS, STOP_FAILED...)
                // must keep doubling the delay, not start again from the base.
                ctx.backoff.succeeded(key);
            }
            let synced = Desired::new(CONDITION_SYNCED, true, "Synced", "the last calls to AWS succeeded");
            match phase {
                Phase::Steady | Phase::Gone => {
                    ctx.backoff.settled(key);
                    let done = Desired::new(CONDITION_RECONCILING, false, "Settled", "");
                    (vec![ready, synced, done, not_stalled], Action::requeue(ctx.settings.resync_period))
                }
                Phase::Transition => {
                    let delay = ctx.backoff.next_poll_delay(key);
                    // No delay in the message: it would rewrite the status on every poll.
                    let want = if stopped { ads::INACTIVE } else { ads::ACTIVE };
                    let msg = format!("export is {}; polling until it is {want}", export_status.unwrap_or("pending"));
                    let busy = Desired::new(CONDITION_RECONCILING, true, "Transitioning", msg);
                    (vec![ready, synced, busy, not_stalled], Action::requeue(delay))
                }
                Phase::Failed { reason, message } => {
                    ctx.backoff.settled(key);
                    let done = Desired::new(CONDITION_RECONCILING, false, *reason, "");
                    let stalled = Desired::new(CONDITION_STALLED, true, *reason, message.clone());
                    // ADS may still move on (an ERROR export recovering, a new status):
                    // keep resyncing, as for a steady export.
                    (vec![ready, synced, done, stalled], Action::requeue(ctx.settings.resync_period))
                }
            }
        }
        Err(e) => {
            let synced =
                Desired::new(CONDITION_SYNCED, false, e.reason.as_str(), format!("{}: {}", e.operation, e.message));
            match e.class() {
                ErrorClass::Recoverable => {
                    // A wait for something else to settle (ResourceInUse: an export still
                    // starting, another object's pending start) is polled, not backed off
                    // as a failure: it should move on soon after the other side does.
                    let (delay, next) = next_try(ctx, key, e.reason == Reason::ResourceInUse);
                    let msg = format!("{}: {}; {next}", e.operation, e.message.trim_end_matches('.'));
                    let busy = Desired::new(CONDITION_RECONCILING, true, e.reason.as_str(), msg);
                    (vec![ready, synced, busy, not_stalled], Action::requeue(delay))
                }
                ErrorClass::Terminal => {
                    ctx.backoff.settled(key);
                    let (next, when) = if RECHECKED_STALLS.contains(&e.reason.as_str()) {
                        let every = ctx.settings.resync_period;
                        (Action::requeue(every), format!("checked again every {}", human(every)))
                    } else {
                        (Action::await_change(), "no retries until the spec changes".to_owned())
                    };
                    let done = Desired::new(CONDITION_RECONCILING, false, e.reason.as_str(), "");
                    let msg = format!("{}: {} ({when})", e.operation, e.message);
                    let stalled = Desired::new(CONDITION_STALLED, true, e.reason.as_str(), msg);
                    (vec![ready, synced, done, stalled], next)
                }
            }
        }
    }
}

/// When to try again after a recoverable error, and how a condition message says it:
/// a wait (`waiting`) is polled ("looking again in 2s (at <time>)"), a failure backs
/// off ("retry 3 in 20s (at <time>)"). Advances the object's poll or failure count.
fn next_try<S: ExportService>(ctx: &Context<S>, key: &str, waiting: bool) -> (Duration, String) {
    let delay = if waiting { ctx.backoff.next_poll_delay(key) } else { ctx.backoff.next_failure_delay(key) };
    let at = Timestamp::now().checked_add(delay).map(format_time).unwrap_or_default();
    let note = if waiting {
        format!("looking again in {} (at {at})", human(delay))
    } else {
        format!("retry {} in {} (at {at})", ctx.backoff.failures(key), human(delay))
    };
    (delay, note)
}

/// `START_IN_PROGRESS` -> `StartInProgress`.
fn camel(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()).unwrap_or_default()
        })
        .collect()
}

/// A duration for messages: `750ms`, `5s`, `2m30s`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Failures of [`sync`]: Kubernetes errors abort the reconcile; AWS errors become conditions.
enum SyncError {
    Kube(Error),
    Ads(AdsError),
}

impl From<AdsError> for SyncError {
    fn from(e: AdsError) -> Self {
        SyncError::Ads(e)
    }
}

impl From<Error> for SyncError {
    fn from(e: Error) -> Self {
        SyncError::Kube(e)
    }
}

impl From<kube::Error> for SyncError {
    fn from(e: kube::Error) -> Self {
        SyncError::Kube(e.into())
    }
}

/// Steps 3 to 5 of DESIGN.md section 2: find or start the export, describe it, stop it
/// when asked. Updates the export fields of `status` as it learns them, and `pending`
/// to whether the object now carries the `start-pending` annotation.
async fn sync<S: ExportService>(
    obj: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
    region: &str,
    status: &mut ContinuousExportStatus,
    pending: &mut bool,
) -> Result<Phase, SyncError> {
    let described = match status.export_id.clone() {
        Some(id) => {
            if let Some(spec_id) = obj.spec.export_id.as_deref().filter(|s| *s != id) {
                return Err(AdsError::new(
                    "Configuration",
                    Reason::InvalidParameter,
                    format!(
                        "spec.exportId {spec_id} differs from the export this object already manages ({id}); \
                         create a new ContinuousExport to manage {spec_id}"
                    ),
                )
                .into());
            }
            if let Some(other) = managed_elsewhere(ctx, obj, &id, true) {
                // Adopted at the same moment as an older object: that one keeps it, and
                // this status lets go of it, so deleting this object stops nothing.
                *status =
                    ContinuousExportStatus { conditions: std::mem::take(&mut status.conditions), ..Default::default() };
                return Err(duplicate_error(&id, &other.owner).into());
            }
            match describe_managed(ctx, region, &id).await {
                Err(e) if e.reason == Reason::NotFound => {
                    mark_gone(status);
                    if obj.spec.stopped {
                        // Not listed may be not listed *yet*: a Stop settles it.
                        return match stop(obj, ctx, region, &id, status, false).await {
                            Ok(()) => {
                                status.status_detail = None;
                                Ok(Phase::Transition)
                            }
                            Err(e) if e.reason == Reason::NotFound => Ok(Phase::Gone),
                            Err(e) => Err(e.into()),
                        };
                    }
                    return Err(e.into());
                }
                described => described?,
            }
        }
        None => match find_or_start(obj, api, ctx, region, status, pending).await? {
            Some(d) => d,
            None => return Ok(Phase::Steady), // stopped before anything was started
        },
    };
    copy_description(status, &described);
    let id = described.export_id.clone();
    if obj.status.as_ref().and_then(|s| s.export_id.as_deref()) != Some(id.as_str()) {
        tracing::Span::current().record("export_id", id.as_str()); // learned in this pass
    }

    if described.status == ads::START_FAILED && !obj.spec.stopped && obj.spec.export_id.is_none() {
        // An export this object started never ran. AWS: "To recover, call
        // start-continuous-export again": let it go, and start anew on the failure
        // backoff schedule (a start that keeps failing waits longer each time).
        let detail = described.status_detail.clone().unwrap_or_else(|| "no detail".into());
        // That start is settled (it failed): other objects may start now.
        clear_pending(api, &obj.name_any(), pending).await?;
        *status = ContinuousExportStatus {
            conditions: std::mem::take(&mut status.conditions),
            status_detail: Some(detail.clone()),
            ..Default::default()
        };
        return Err(AdsError::new(
            op::START,
            Reason::StartFailed,
            format!("export {id} is START_FAILED ({detail}); a new export will be started"),
        )
        .into());
    }

    if obj.spec.stopped {
        let stopping = match described.status.as_str() {
            ads::ACTIVE | ads::ERROR | ads::STOP_FAILED => stop(obj, ctx, region, &id, status, true).await,
            ads::START_IN_PROGRESS => return Ok(Phase::Transition), // stop once it is ACTIVE
            _ => Ok(()),
        };
        match stopping {
            // Gone between Describe and Stop: nothing left to stop (DESIGN section 3).
            Err(e) if e.reason == Reason::NotFound => {
                mark_gone(status);
                return Ok(Phase::Gone);
            }
            Err(e) => return Err(e.into()),
            Ok(()) if described.status == ads::STOP_FAILED => {
                // Stop was sent again; whatever it leads to, the next look is on the
                // failure backoff schedule, so a stop that keeps failing is no hot loop.
                let detail = described.status_detail.as_deref().unwrap_or("no detail");
                return Err(AdsError::new(
                    op::STOP,
                    Reason::StopFailed,
                    format!("ADS reported STOP_FAILED ({detail}); StopContinuousExport sent again"),
                )
                .into());
            }
            Ok(()) => {}
        }
    }
    Ok(phase(obj.spec.stopped, status))
}

/// Describes an export this object manages; a vanished export is terminal.
async fn describe_managed<S: ExportService>(
    ctx: &Context<S>,
    region: &str,
    id: &str,
) -> Result<ExportDescription, AdsError> {
    ctx.ads.describe(region, id).await.map_err(|mut e| {
        if e.reason == Reason::NotFound {
            e.message =
                format!("export {id} no longer exists in {region}: delete this ContinuousExport ({})", e.message);
        }
        e
    })
}

fn phase(stopped: bool, status: &ContinuousExportStatus) -> Phase {
    let detail = status.status_detail.clone().unwrap_or_default();
    match (status.export_status.as_deref().unwrap_or_default(), stopped) {
        (ads::START_IN_PROGRESS | ads::STOP_IN_PROGRESS, _) | (ads::ACTIVE, true) => Phase::Transition,
        (ads::ACTIVE, false) | (ads::INACTIVE | ads::START_FAILED, true) => Phase::Steady,
        (ads::INACTIVE, false) => Phase::Failed {
            reason: "StoppedOutsideKubernetes",
            message: format!(
                "the export is INACTIVE (stopped, or adopted already stopped) while spec.stopped is false; an \
                 export cannot be resumed: set spec.stopped: true to acknowledge, or create a new ContinuousExport \
                 without spec.exportId ({detail})"
            ),
        },
        (ads::START_FAILED, _) => Phase::Failed {
            reason: "StartFailed",
            message: format!(
                "ADS could not start the export: {detail}; set spec.stopped: true to acknowledge, or create a new \
                 ContinuousExport"
            ),
        },
        (ads::STOP_FAILED, _) => {
            Phase::Failed { reason: "StopFailed", message: format!("ADS could not stop the export: {detail}") }
        }
        (ads::ERROR, _) => Phase::Failed {
            reason: "ExportError",
            message: format!("the export is in ERROR: {detail}; set spec.stopped: true to stop it"),
        },
        (other, _) => {
            Phase::Failed { reason: "UnknownStatus", message: format!("ADS reports an unknown status {other:?}") }
        }
    }
}

/// No `status.exportId` yet: adopt `spec.exportId`, resolve a pending start, or start.
/// Returns `None` when the spec asks for a stopped export and none exists. Keeps
/// `pending` true while the object carries the `start-pending` annotation.
async fn find_or_start<S: ExportService>(
    obj: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
    region: &str,
    status: &mut ContinuousExportStatus,
    pending: &mut bool,
) -> Result<Option<ExportDescription>, SyncError> {
    let name = obj.name_any();
    if pending_since(obj).is_none() {
        // A `start-pending` value that cannot be this object's (see `pending_since`).
        clear_pending(api, &name, pending).await?;
    }
    if let Some(id) = obj.spec.export_id.as_deref() {
        if let Some(other) = managed_elsewhere(ctx, obj, id, false) {
            if other.deleting {
                // Its finalizer decides the export's fate first; look again after it.
                return Err(AdsError::new(
                    "Configuration",
                    Reason::ResourceInUse,
                    format!(
                        "export {id} is still managed by ContinuousExport {}, which is being deleted; adopting it \
                         once that object is gone",
                        other.owner
                    ),
                )
                .into());
            }
            return Err(duplicate_error(id, &other.owner).into());
        }
        let d = ctx.ads.describe(region, id).await.map_err(|mut e| {
            if e.reason == Reason::NotFound {
                e.message = format!(
                    "cannot adopt export {id}: not found in {region}; spec.exportId and spec.region are immutable, so \
                     recreate this ContinuousExport with the right ones"
                );
            }
            e
        })?;
        publish(ctx, obj, false, ("Adopted", "Adopt"), format!("adopted export {id} ({}) in {region}", d.status)).await;
        info!(export_id = id, "adopted export");
        return Ok(Some(d));
    }

    // `obj` is a fresh read here (see `apply`).
    let since = pending_since(obj);
    if since.is_none() && obj.spec.stopped {
        return Ok(None); // nothing started, nothing to start
    }
    // One look at the region's exports: the export of a pending start, or the running
    // one that would make Start fail (StartContinuousExport is not idempotent, and an
    // unanswered attempt must never be taken for another's running export).
    let exports = ctx.ads.list(region).await?;
    if let Some(since) = since {
        if let Some(d) = pending_candidate(ctx, obj, &exports, since) {
            if let Some(other) = pending_start_elsewhere(ctx, obj, region, true) {
                return Err(pending_elsewhere_error(&other, region).into());
            }
            publish(
                ctx,
                obj,
                false,
                ("Recovered", "Adopt"),
                format!(
                    "found export {}, started by an earlier attempt whose answer was lost; managing it",
                    d.export_id
                ),
            )
            .await;
            info!(export_id = %d.export_id, "resolved pending start");
            return Ok(Some(d));
        }
        info!("pending start left no export");
    }
    if obj.spec.stopped {
        clear_pending(api, &name, pending).await?;
        return Ok(None);
    }
    // One start in flight per region: another object's unanswered start would make
    // every export that shows up there ambiguous (a running one may be its own).
    if let Some(other) = pending_start_elsewhere(ctx, obj, region, since.is_some()) {
        return Err(pending_elsewhere_error(&other, region).into());
    }
    if let Some(active) = exports.iter().find(|d| is_running(&d.status)) {
        // Not this object's (see above): Start would answer ConflictErrorException.
        clear_pending(api, &name, pending).await?;
        let detail = "StartContinuousExport not sent: ADS allows one active export per region";
        return Err(
            AdsError::new(op::START, Reason::Conflict, conflict_message(ctx, obj, region, active, detail)).into()
        );
    }

    let owner = format!("{}/{name}", obj.namespace().unwrap_or_default());
    let _gate = ctx.starts.enter(region, &owner).map_err(|holder| pending_elsewhere_error(&holder, region))?;

    // An earlier attempt's time is kept: the export it may have created started after it.
    let retrying = *pending;
    if !retrying {
        patch_pending(api, &name, Some(format_time(Timestamp::now()))).await?;
        *pending = true;
    }
    let started = match ctx.ads.start(region).await {
        Ok(s) => s,
        Err(e) => {
            // A definite failure started nothing. A conflict after an earlier attempt
            // whose answer was lost may be that attempt's export, not yet listed when
            // checked above: keep the annotation so the next pass looks again.
            let maybe_ours = e.reason == Reason::Conflict && retrying;
            if !e.ambiguous && !maybe_ours {
                clear_pending(api, &name, pending).await?;
            }
            let e = if e.reason == Reason::Conflict { explain_conflict(ctx, obj, region, e).await } else { e };
            return Err(e.into());
        }
    };
    info!(export_id = %started.export_id, "started export");
    publish(ctx, obj, false, ("Started", "Start"), format!("started export {} in {region}", started.export_id)).await;
    // Remember the ID right away: if the Describe below fails, the status written
    // with the error still records which export this object owns.
    status.export_id = Some(started.export_id.clone());
    status.s3_bucket = started.s3_bucket.clone();
    status.data_source = started.data_source.clone();
    status.database_name = started.database_name.clone();
    status.start_time = started.start_time.map(format_time);
    status.export_status = Some(ads::START_IN_PROGRESS.into());
    match describe_managed(ctx, region, &started.export_id).await {
        Ok(d) => Ok(Some(d)),
        // Not listed yet right after Start (eventual consistency): it is starting.
        Err(e) if e.reason == Reason::NotFound => Ok(Some(ExportDescription {
            export_id: started.export_id.clone(),
            status: ads::START_IN_PROGRESS.into(),
            status_detail: None,
            s3_bucket: started.s3_bucket,
            data_source: started.data_source,
            database_name: started.database_name,
            start_time: started.start_time,
            stop_time: None,
        })),
        Err(e) => Err(e.into()),
    }
}

/// Stops an ACTIVE (or ERROR) export and records the times: from the Stop answer,
/// else (when `want_times`) from Describe, since the documented sample response
/// carries neither.
async fn stop<S: ExportService>(
    obj: &ContinuousExport,
    ctx: &Context<S>,
    region: &str,
    id: &str,
    status: &mut ContinuousExportStatus,
    want_times: bool,
) -> Result<(), AdsError> {
    match ctx.ads.stop(region, id).await {
        Ok(times) => {
            status.export_status = Some(ads::STOP_IN_PROGRESS.into());
            if let Some(t) = times.start_time {
                status.start_time = Some(format_time(t));
            }
            if let Some(t) = times.stop_time {
                status.stop_time = Some(format_time(t));
            }
            info!(export_id = id, "stopped export");
            publish(ctx, obj, false, ("Stopped", "Stop"), format!("stopped export {id}")).await;
            if want_times && (times.start_time.is_none() || times.stop_time.is_none()) {
                copy_description(status, &describe_managed(ctx, region, id).await?);
            }
            Ok(())
        }
        // Stopped meanwhile by someone else: fine if it is now stopping or stopped.
        Err(e) if e.reason == Reason::OperationNotPermitted => {
            let d = describe_managed(ctx, region, id).await?;
            copy_description(status, &d);
            if d.status == ads::INACTIVE || d.status == ads::STOP_IN_PROGRESS { Ok(()) } else { Err(e) }
        }
        Err(e) => Err(e),
    }
}

/// The cleanup branch: per `deletionPolicy`, stop the export, then let the finalizer go.
async fn cleanup<S: ExportService>(
    obj: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let key = key(obj);
    let status = obj.status.clone().unwrap_or_default();
    let done = |what: String| {
        info!(what, "finalizer released");
        ctx.backoff.forget(&key);
        if let Some(o) = &ctx.observer {
            o.export_status(&key, None, true);
        }
        Ok(Action::await_change())
    };
    if obj.spec.deletion_policy == DeletionPolicy::Retain {
        // Name the export left behind, also one of a start whose answer was lost.
        let mut status = status.clone();
        if let (None, Some(since), Some(region)) = (&status.export_id, pending_since(obj), region(obj, ctx))
            && let Ok(Some(d)) = resolve_pending(ctx, obj, &region, since).await
        {
            status.export_status = Some(d.status.clone());
            status.export_id = Some(d.export_id);
        }
        if let Some(id) = &status.export_id {
            let state = status.export_status.as_deref().unwrap_or("in an unknown state");
            let note = if is_running(state) {
                format!("deletionPolicy Retain: export {id} left running")
            } else {
                format!("deletionPolicy Retain: export {id} left as it is ({state})")
            };
            publish(ctx, obj, false, ("Retained", "Delete"), note).await;
        }
        return done("retained".into());
    }
    let result = match region(obj, ctx) {
        Some(region) => stop_for_delete(obj, ctx, &region, &status).await,
        None if status.export_id.is_none() && pending_since(obj).is_none() => {
            return done("no region: nothing could have been started".into());
        }
        // An export may be running, and only its region's endpoint can stop it.
        None => Err(no_region_error()),
    };
    match result {
        Ok(what) => done(what),
        Err(e) => {
            // Say why deletion waits: a starting export is a normal wait, not a failure
            // (polled; no time in the message, which would rewrite the status every poll).
            let waiting = e.reason == Reason::ResourceInUse;
            let what = format!("deleting: {}: {}", e.operation, e.message.trim_end_matches('.'));
            let mut desired = vec![Desired::new(CONDITION_RECONCILING, true, "Deleting", what.clone())];
            let mut retry_in = None;
            if !waiting {
                let (delay, next) = next_try(ctx, &key, false);
                desired.push(Desired::new(CONDITION_SYNCED, false, e.reason.as_str(), format!("{what}; {next}")));
                retry_in = Some(delay);
            }
            let mut st = status.clone();
            let generation = obj.metadata.generation.unwrap_or(0);
            st.observed_generation = Some(generation);
            st.conditions = merge(&status.conditions, &desired, generation, now_seconds());
            if st != status {
                write_status(api, &obj.name_any(), &st).await?;
                // One Warning per new reason, not one per retry.
                let was = status.condition(CONDITION_SYNCED).filter(|c| c.status == "False").map(|c| c.reason.as_str());
                if !waiting && was != Some(e.reason.as_str()) {
                    let note = format!("cannot stop the export yet: {e}");
                    publish(ctx, obj, true, (e.reason.as_str(), e.operation), note).await;
                }
            }
            Err(match retry_in {
                Some(retry_in) => Error::Retry { error: e, retry_in },
                None => Error::Waiting(e.message),
            })
        }
    }
}

async fn stop_for_delete<S: ExportService>(
    obj: &ContinuousExport,
    ctx: &Context<S>,
    region: &str,
    status: &ContinuousExportStatus,
) -> Result<String, AdsError> {
    // Only an export this object manages (status.exportId, or its own pending start):
    // a spec.exportId whose adoption never succeeded (unknown, or managed by another
    // object) is not this object's to stop.
    let id = match status.export_id.clone() {
        Some(id) => id,
        None => match pending_since(obj) {
            Some(since) => match resolve_pending(ctx, obj, region, since).await? {
                Some(d) => {
                    if let Some(other) = pending_start_elsewhere(ctx, obj, region, true) {
                        return Err(pending_elsewhere_error(&other, region));
                    }
                    d.export_id
                }
                None => return Ok("no export was started".into()),
            },
            None => return Ok("no export was started".into()),
        },
    };
    if let Some(other) = managed_elsewhere(ctx, obj, &id, true) {
        return Ok(format!("export {id} is managed by ContinuousExport {}: not stopped", other.owner));
    }
    match ctx.ads.describe(region, &id).await.map(|d| d.status) {
        // STOP_FAILED: the export may still be exporting; ask again.
        Ok(state) if matches!(state.as_str(), ads::ACTIVE | ads::ERROR | ads::STOP_FAILED) => {}
        Ok(state) if state == ads::START_IN_PROGRESS => {
            return Err(AdsError::new(
                op::STOP,
                Reason::ResourceInUse,
                format!("export {id} is still starting; it is stopped once ACTIVE"),
            ));
        }
        Ok(other) => return Ok(format!("export {id} is {other}")),
        // Not listed, which may just be too soon after Start: a Stop settles it.
        Err(e) if e.reason == Reason::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut scratch = status.clone(); // the object is going away: its status times are not needed
    match stop(obj, ctx, region, &id, &mut scratch, false).await {
        Ok(()) => Ok(format!("stopped export {id}")),
        Err(e) if e.reason == Reason::NotFound => Ok(format!("export {id} does not exist")),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: &str) -> ContinuousExportStatus {
        ContinuousExportStatus { export_status: Some(s.into()), ..Default::default() }
    }

    #[test]
    fn phases() {
        assert!(matches!(phase(false, &st(ads::ACTIVE)), Phase::Steady));
        assert!(matches!(phase(true, &st(ads::INACTIVE)), Phase::Steady));
        assert!(matches!(phase(true, &st(ads::ACTIVE)), Phase::Transition));
        assert!(matches!(phase(false, &st(ads::START_IN_PROGRESS)), Phase::Transition));
        assert!(matches!(phase(true, &st(ads::STOP_IN_PROGRESS)), Phase::Transition));
        assert!(matches!(phase(false, &st(ads::INACTIVE)), Phase::Failed { reason: "StoppedOutsideKubernetes", .. }));
        assert!(matches!(phase(false, &st(ads::ERROR)), Phase::Failed { reason: "ExportError", .. }));
        assert!(matches!(phase(false, &st(ads::START_FAILED)), Phase::Failed { reason: "StartFailed", .. }));
        assert!(matches!(phase(true, &st(ads::START_FAILED)), Phase::Steady), "nothing runs: what stopped asks");
        assert!(matches!(phase(false, &st("NEW_THING")), Phase::Failed { reason: "UnknownStatus", .. }));
    }

    #[test]
    fn helpers() {
        assert_eq!(camel("START_IN_PROGRESS"), "StartInProgress");
        assert_eq!(human(Duration::from_millis(750)), "750ms");
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_secs(150)), "2m30s");
    }

    #[test]
    fn description_copies_and_keeps_known_fields() {
        let mut status = ContinuousExportStatus { s3_bucket: Some("b".into()), ..Default::default() };
        let d = ExportDescription {
            export_id: "e".into(),
            status: ads::ACTIVE.into(),
            start_time: crate::ads::timestamp_from_epoch(1_493_405_005, 639_000_000),
            ..Default::default()
        };
        copy_description(&mut status, &d);
        assert_eq!(status.export_id.as_deref(), Some("e"));
        assert_eq!(status.s3_bucket.as_deref(), Some("b"));
        assert_eq!(status.start_time.as_deref(), Some("2017-04-28T18:43:25.639Z"));
    }
}
