//! One reconcile: the finalizer helper routes to [`apply`] or [`cleanup`], each
//! observe -> decide -> act (docs/architecture.md, "Observe, decide, act").

use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::{Instrument, info, warn};

use super::accounts::{Binding, Refusal};
use super::act::{self, Target};
use super::annotations::{self, PAUSED_REASON};
use super::claims::{key, managed_id};
use super::conclude::{self, Requeue, announcements};
use super::context::Context;
use super::decide::Times;
use super::decide::{self, AnnotationChange, Next, Notice, Plan};
use super::deletion::{self, End};
use super::error::Error;
use super::failure::Failure;
use super::fold::{self, Verdict};
use super::info::{self, InfoObservation, InfoPlan};
use super::messages;
use super::observation::{Observation, Source};
use super::observe;
use crate::ads::ExportService;
use crate::api::{CONDITION_SYNCED, ContinuousExport, FINALIZER, PAUSED_ANNOTATION};

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
        export_id = tracing::field::Empty, // recorded once known, so logged at most once
    );
    if let Some(id) = managed_id(&obj) {
        span.record("export_id", id);
    }
    let api: Api<ContinuousExport> = Api::namespaced(ctx.client.clone(), &ns);
    let result = if annotations::is_paused(&obj) {
        // Before the finalizer helper: a paused object is neither given the finalizer
        // nor released from it (its deletion waits until it is unpaused).
        paused(&obj, &api, &ctx).instrument(span).await
    } else {
        // With the finalizer in place, the helper routes this very pass to apply.
        let (obj, source) = match act::ensure_finalizer(&api, obj).instrument(span.clone()).await {
            Ok(read) => read,
            Err(e) => return finished(ctx.as_ref(), started, Err(e)),
        };
        finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                Finalizer::Apply(obj) => apply(&obj, source, &api, &ctx).await,
                Finalizer::Cleanup(obj) => cleanup(&obj, &api, &ctx).await,
            }
        })
        .instrument(span)
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    };
    finished(ctx.as_ref(), started, result)
}

/// Reports the pass to the metrics hook and returns its result.
fn finished<S: ExportService>(
    ctx: &Context<S>,
    started: Instant,
    result: Result<Action, Error>,
) -> Result<Action, Error> {
    if let Some(o) = &ctx.observer {
        o.reconciled(if result.is_ok() { "ok" } else { "error" }, started.elapsed());
    }
    result
}

fn action(requeue: Requeue) -> Action {
    match requeue {
        Requeue::After(d) => Action::requeue(d),
        Requeue::AwaitChange => Action::await_change(),
    }
}

/// The account `obj` uses (docs/architecture.md, "Accounts"): the operator's own
/// identity without `spec.accountRef`, else its `ExportAccount` if it exists and allows
/// the namespace.
///
/// # Errors
/// [`Refusal`]: the account is missing (also when the operator watches none) or does not
/// allow the namespace.
async fn bind<S: ExportService>(ctx: &Context<S>, obj: &ContinuousExport) -> Result<Binding<S>, Refusal> {
    match (&obj.spec.account_ref, &ctx.accounts) {
        (None, _) => Ok(Binding::own()),
        (Some(r), None) => Err(Refusal::NotFound { account: r.name.clone() }),
        (Some(_), Some(accounts)) => accounts.bind(obj).await,
    }
}

/// The apply branch: drive the export towards the spec, then write status and requeue.
async fn apply<S: ExportService>(
    cached: &ContinuousExport,
    source: Source,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let bind = match bind(ctx, cached).await {
        Ok(bind) => bind,
        Err(Refusal::NotSynced) => return Err(not_synced()),
        Err(refusal) => return refused(cached, api, ctx, &refusal).await,
    };
    observe::home_region(cached, ctx, &bind).await;
    let obj = observe::object(cached, source, api, ctx, &bind).await?;
    let (obj, key) = (obj.as_ref(), key(cached));
    let stored = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    // A reconcile request, or the first pass after a pause, looks again despite a stall.
    let asked = annotations::reconcile_request(obj).is_some() || annotations::status_paused(&stored);
    if decide::stalled_for_generation(&stored, generation) && !asked {
        report_status(ctx, &key, &stored);
        return Ok(Action::await_change());
    }
    ctx.backoff.observe_generation(&key, generation);

    let obs = observe::for_apply(obj, ctx, &bind).await;
    let plan = decide::decide(&obj.spec, &obs);
    let mut target = Target { obj, api, marked: obs.pending.marked };
    let mut verdict = act::execute(ctx, &bind, &mut target, &obs, plan).await?;
    if let Err(failure) = verdict.result {
        verdict.result = Err(explain(ctx, &bind, obj, &obs, failure).await);
    }
    // The connection info follows the status this pass writes, in the region it used.
    let read = observe::info(obj, ctx, obs.region.as_deref(), &verdict.status).await;
    let info = read.as_ref().map_or_else(|_| InfoPlan::none(), InfoObservation::plan);
    info::fold(&mut verdict.result, &info);
    let action = finish(ctx, &mut target, &obs, &verdict).await?;
    // After the status is stored: a failed read or write of the ConfigMap loses nothing
    // of the export's state, and the error policy retries it.
    read?;
    act::write_info(ctx, obj, &key_namespace(obj)?, &info).await?;
    Ok(action)
}

/// The pass waits for the account caches' first list (polled by the error policy).
fn not_synced() -> Error {
    Error::Waiting(messages::account_refused(&Refusal::NotSynced).message)
}

/// An object that cannot use its `spec.accountRef` ([`messages::account_refused`]):
/// no AWS call; the status says why (Stalled, looked at again when the account or the
/// namespace changes), its region and export fields as stored.
async fn refused<S: ExportService>(
    obj: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
    refusal: &Refusal,
) -> Result<Action, Error> {
    let mut obs = observe::local(obj, ctx, &Binding::own());
    obs.region = obj.status.as_ref().and_then(|s| s.region.clone());
    let failure = messages::account_refused(refusal);
    let plan = Plan {
        annotation: AnnotationChange::Keep,
        status: obs.status.clone(),
        notices: Vec::new(),
        next: Next::Done(Err(failure.clone())),
    };
    let verdict = fold::without_call(plan, Err(failure));
    let mut target = Target { obj, api, marked: false };
    finish(ctx, &mut target, &obs, &verdict).await
}

fn key_namespace(obj: &ContinuousExport) -> Result<String, Error> {
    obj.namespace().ok_or(Error::MissingField("metadata.namespace"))
}

/// A `HomeRegionNotSet` or no-region failure with what the account's home region says
/// (looked up again: ADS's answer may mean it changed), see
/// [`messages::explain_home_region`]; any other failure as it is.
async fn explain<S: ExportService>(
    ctx: &Context<S>,
    bind: &Binding<S>,
    obj: &ContinuousExport,
    obs: &Observation,
    failure: Failure,
) -> Failure {
    match bind.home_region(ctx.settings.home_region.as_ref()) {
        Some(cache) if messages::home_region_explains(&failure) => {
            let lookup = cache.refresh().await;
            let source = observe::region_source(obj, ctx, bind);
            messages::explain_home_region(failure, obs.region.as_deref(), source, &lookup)
        }
        _ => failure,
    }
}

/// Publishes the verdict's events, writes the concluded status (once, when it
/// changed), announces condition changes, and removes a `start-pending` that the
/// stored `status.exportId` settled.
async fn finish<S: ExportService>(
    ctx: &Context<S>,
    target: &mut Target<'_>,
    obs: &Observation,
    verdict: &Verdict,
) -> Result<Action, Error> {
    let (obj, key) = (target.obj, key(target.obj));
    for notice in &verdict.notices {
        publish_logged(ctx, obj, notice);
    }
    if let Err(f) = &verdict.result {
        // `error`, not `message`: JSON log lines already use `message` for the text.
        warn!(reason = f.reason(), operation = %f.step, error = %f.message, "AWS call failed");
    }
    if let Some(id) = verdict.status.export_id.as_deref().filter(|id| managed_id(obj) != Some(*id)) {
        tracing::Span::current().record("export_id", id); // learned in this pass
    }
    let conclusion = conclude::conclude(&obj.spec, obs, verdict);
    ctx.backoff.store(&key, conclusion.attempts);
    if conclusion.status != obs.status {
        act::write_status(target.api, &obj.name_any(), &conclusion.status).await?;
        let step = verdict.result.as_ref().err().map_or("Reconcile", |f| f.step.as_str());
        for notice in announcements(&obs.status, &conclusion.status, step) {
            act::publish(ctx, obj, &notice);
        }
    }
    if target.marked && conclusion.status.export_id.is_some() {
        // status.exportId is stored: the start is no longer pending.
        target.annotate(decide::AnnotationChange::Clear).await?;
    }
    report_status(ctx, &key, &conclusion.status);
    Ok(action(conclusion.requeue))
}

/// Publishes a Normal event of the pass and logs what it says.
fn publish_logged<S: ExportService>(ctx: &Context<S>, obj: &ContinuousExport, notice: &Notice) {
    info!(reason = notice.reason, note = notice.note, "event");
    act::publish(ctx, obj, notice);
}

fn report_status<S: ExportService>(ctx: &Context<S>, key: &str, status: &crate::api::ContinuousExportStatus) {
    if let Some(o) = &ctx.observer {
        o.export_status(key, status.export_status.as_deref());
    }
}

/// A paused object (`adsexport.io/paused: "true"`): no AWS call, no finalizer change,
/// and no status change but `Synced=False`, reason `Paused` (written once, and again
/// only when the generation or the deletion changes it). Waits for the next change of
/// the object, such as the annotation's removal.
async fn paused<S: ExportService>(
    obj: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let stored = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    let deleting = obj.metadata.deletion_timestamp.is_some();
    let status = conclude::paused(&stored, generation, deleting, k8s_openapi::jiff::Timestamp::now());
    if status != stored {
        act::write_status(api, &obj.name_any(), &status).await?;
        if !annotations::status_paused(&stored) {
            let note =
                format!("reconciliation paused by {PAUSED_ANNOTATION}: \"true\"; no AWS calls until it is removed");
            publish_logged(ctx, obj, &Notice::normal(PAUSED_REASON, "Reconcile", note));
        }
    }
    Ok(Action::await_change())
}

/// The cleanup branch: per `deletionPolicy`, stop the export, then let the finalizer go.
async fn cleanup<S: ExportService>(
    obj: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
) -> Result<Action, Error> {
    let bind = match bind(ctx, obj).await {
        Ok(bind) => bind,
        Err(Refusal::NotSynced) => return Err(not_synced()),
        Err(refusal) => return released_without_account(obj, ctx, &refusal).await,
    };
    observe::home_region(obj, ctx, &bind).await;
    let obs = observe::for_deletion(obj, ctx, &bind).await;
    let (deletion, mut notices) = deletion::decide(&obj.spec, &obs);
    let end = match deletion.ended() {
        Ok(end) => end,
        Err(id) => {
            let region = obs.region.clone().unwrap_or_default();
            let stopped = act::stop(bind.ads(&ctx.ads), &region, &id, Times::NotNeeded).await;
            let (end, mut more) = deletion::fold_stop(&obs, &id, stopped);
            notices.append(&mut more);
            end
        }
    };
    for notice in &notices {
        publish_logged(ctx, obj, notice);
    }
    match end {
        End::Release(what) => Ok(released(obj, ctx, &what)),
        End::Hold(failure) => {
            let failure = explain(ctx, &bind, obj, &obs, failure).await;
            Err(hold(obj, api, ctx, &obs, failure).await?)
        }
    }
}

/// The finalizer helper releases the finalizer on this answer: forget the object.
fn released<S: ExportService>(obj: &ContinuousExport, ctx: &Context<S>, what: &str) -> Action {
    info!(what, "finalizer released");
    let key = key(obj);
    ctx.backoff.forget(&key);
    if let Some(o) = &ctx.observer {
        o.deleted(&key);
    }
    Action::await_change()
}

/// A deletion whose `ExportAccount` no longer allows the namespace (an administrator
/// revoked the grant) or is gone: the operator may not use the account's credentials
/// for it, so it makes no AWS call, releases the finalizer, and says in a Warning event
/// which export it leaves running (README, "Many accounts").
async fn released_without_account<S: ExportService>(
    obj: &ContinuousExport,
    ctx: &Context<S>,
    refusal: &Refusal,
) -> Result<Action, Error> {
    let failure = messages::account_refused(refusal);
    let left = match (managed_id(obj), obj.status.as_ref().and_then(|s| s.region.as_deref())) {
        (Some(id), region) => format!(
            "export {id} (region {}) is left running: stop it with the account's own credentials \
             (aws discovery stop-continuous-export --export-id {id})",
            region.unwrap_or("unknown")
        ),
        (None, _) => "no export was managed".to_owned(),
    };
    let note = format!("deleted without an AWS call: {}; {left}", failure.message);
    warn!(reason = failure.reason(), note, "finalizer released without the account");
    act::publish(ctx, obj, &Notice::warning(failure.reason(), "Delete", note));
    Ok(released(obj, ctx, "the account is not usable"))
}

/// A deletion that cannot finish yet: say why in the status, warn once per new
/// reason, and return the error that requeues it.
async fn hold<S: ExportService>(
    obj: &ContinuousExport,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
    obs: &Observation,
    failure: Failure,
) -> Result<Error, Error> {
    let (status, retry_in, attempts) = conclude::hold_deletion(obs, &failure);
    ctx.backoff.store(&key(obj), attempts);
    if status != obs.status {
        act::write_status(api, &obj.name_any(), &status).await?;
        // One Warning per new reason, not one per retry.
        let was = obs.status.condition(CONDITION_SYNCED).filter(|c| c.status == "False").map(|c| c.reason.as_str());
        if retry_in.is_some() && was != Some(failure.reason()) {
            let note = format!("cannot stop the export yet: {failure}");
            act::publish(ctx, obj, &Notice::warning(failure.reason(), failure.step.as_str(), note));
        }
    }
    Ok(match retry_in {
        Some(retry_in) => Error::Retry { error: failure, retry_in },
        None => Error::Waiting(failure.message),
    })
}
