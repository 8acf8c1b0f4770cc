//! The third step of a pass: carry out a [`Plan`] (annotation, Start or Stop and the
//! read after it, events) and write the status once. Every Kubernetes write and ADS
//! call after the observation is here; what they mean is decided by the pure steps.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::Event as KubeEvent;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::accounts::Binding;
use super::claims::owner;
use super::context::Context;
use super::decide::{AnnotationChange, Attempt, Call, Next, Notice, Plan, Times};
use super::error::Error;
use super::fold::{self, StartOutcome, StopOutcome, Verdict};
use super::info::{INFO_LABEL, InfoPlan, Write};
use super::observation::{Observation, Source};
use crate::ads::{ExportService, Reason, format_time};
use crate::api::{ContinuousExport, ContinuousExportStatus, FIELD_MANAGER, FINALIZER, START_PENDING_ANNOTATION};

/// The object a pass acts on, and whether it carries `start-pending` right now.
pub struct Target<'a> {
    /// The object (as decided on).
    pub obj: &'a ContinuousExport,
    /// Its namespaced `Api`.
    pub api: &'a Api<ContinuousExport>,
    /// Whether the object carries the `start-pending` annotation (updated as it is set
    /// and removed).
    pub marked: bool,
}

impl Target<'_> {
    /// Sets (`Some(time)`) or removes (`None`) the `start-pending` annotation (a plain
    /// merge patch: the annotation is not part of the status' server-side apply).
    async fn patch_pending(&mut self, value: Option<String>) -> Result<(), Error> {
        let marked = value.is_some();
        let patch = json!({"metadata": {"annotations": {START_PENDING_ANNOTATION: value}}});
        self.api.patch(&self.obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        self.marked = marked;
        Ok(())
    }

    /// Applies `change`: a removal only when the object carries the annotation.
    pub async fn annotate(&mut self, change: AnnotationChange) -> Result<(), Error> {
        match change {
            AnnotationChange::Clear if self.marked => self.patch_pending(None).await,
            _ => Ok(()),
        }
    }
}

/// Adds [`FINALIZER`] to `obj` when it lacks it and is not being deleted, and returns
/// the object as the apiserver stored it ([`Source::Stored`]); else `obj` as it is
/// ([`Source::Cache`]).
///
/// The patch is kube-runtime's finalizer helper's own JSON patch (a `test` of the
/// finalizers as read, then an `add`), so a concurrent change of the finalizers makes it
/// fail and the pass is retried. Unlike the helper, which returns and waits for the
/// patch's watch event, the caller goes on with the returned object in the same pass:
/// the finalizer and the first status cost one reconcile, not two (issue: cold start).
///
/// # Errors
/// [`Error::Kube`] when the patch fails (a 422 when the `test` failed).
pub async fn ensure_finalizer(
    api: &Api<ContinuousExport>,
    obj: Arc<ContinuousExport>,
) -> Result<(Arc<ContinuousExport>, Source), Error> {
    let has = obj.finalizers().iter().any(|f| f == FINALIZER);
    if has || obj.meta().deletion_timestamp.is_some() {
        return Ok((obj, Source::Cache));
    }
    let ops = if obj.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": obj.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    let stored = api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
    Ok((Arc::new(stored), Source::Stored))
}

/// Queues an event about `obj` (published beside the pass, see [`super::events`]).
pub fn publish<S: ExportService>(ctx: &Context<S>, obj: &ContinuousExport, notice: &Notice) {
    let ev = KubeEvent {
        type_: notice.type_,
        reason: notice.reason.clone(),
        note: Some(notice.note.clone()),
        action: notice.action.clone(),
        secondary: None,
    };
    ctx.events.publish(ev, obj.object_ref(&()));
}

/// Server-side applies the whole status (owned fields not set are removed).
/// A 404 (object gone meanwhile) is not an error.
///
/// # Errors
/// [`Error::Kube`] for any other failure.
pub async fn write_status(
    api: &Api<ContinuousExport>,
    name: &str,
    status: &ContinuousExportStatus,
) -> Result<(), Error> {
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

/// Carries out the connection-info part of a pass ([`InfoPlan`]): server-side applies
/// the ConfigMap (this object as its controller, label [`INFO_LABEL`], the operator's
/// field manager, forced: the ConfigMap is this object's), and deletes the ConfigMaps
/// this object controls under names it no longer writes (on the UID the watch cache
/// has, so a ConfigMap made anew under that name meanwhile is kept). A 404 on delete
/// is not an error.
///
/// # Errors
/// [`Error::Kube`] when a write fails (e.g. RBAC without `configmaps`: the chart grants
/// get, list, watch, create, patch and delete).
pub async fn write_info<S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    ns: &str,
    plan: &InfoPlan,
) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    if let Some((name, Write::Apply(data))) = &plan.write {
        let owner = obj.controller_owner_ref(&()).map(|mut r| {
            r.block_owner_deletion = Some(true); // a foreground deletion waits for it
            r
        });
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {INFO_LABEL: "true"}, "ownerReferences": [owner]},
            "data": data,
        });
        api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
        info!(configmap = name.as_str(), "connection info written");
    }
    for name in &plan.remove {
        let uid = ctx.info_cache.get(&ObjectRef::new(name).within(ns)).and_then(|cm| cm.uid());
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid, resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => info!(configmap = name.as_str(), "connection info removed: spec.writeInfoTo no longer names it"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Carries out the plan's annotation change and call, and folds the outcome.
///
/// # Errors
/// [`Error::Kube`] when an annotation patch fails (ADS failures are in the verdict).
pub async fn execute<S: ExportService>(
    ctx: &Context<S>,
    bind: &Binding<S>,
    target: &mut Target<'_>,
    obs: &Observation,
    plan: Plan,
) -> Result<Verdict, Error> {
    target.annotate(plan.annotation).await?;
    let region = obs.region.clone().unwrap_or_default();
    let spec = &target.obj.spec;
    let verdict = match plan.next.clone() {
        Next::Done(result) => fold::without_call(plan, result),
        Next::Call(Call::Start(attempt)) => {
            let outcome = start(ctx, bind, target, &region, attempt).await?;
            let obs = with_claims_on_running(ctx, target.obj, obs, &outcome);
            fold::start(spec, &obs, plan, attempt, outcome)
        }
        Next::Call(Call::Stop { id, times, reason }) => {
            let outcome = stop(bind.ads(&ctx.ads), &region, &id, times).await;
            fold::stop(spec, obs, plan, &id, &reason, outcome)
        }
    };
    target.annotate(verdict.annotation).await?;
    Ok(verdict)
}

/// The observation with the other objects' claims on the export a conflict named
/// (the observation asked the claim index only about the IDs it knew of).
fn with_claims_on_running<'a, S: ExportService>(
    ctx: &Context<S>,
    obj: &ContinuousExport,
    obs: &'a Observation,
    outcome: &StartOutcome,
) -> Cow<'a, Observation> {
    let StartOutcome::Failed { running: Some(active), .. } = outcome else { return Cow::Borrowed(obs) };
    if obs.others.claimed(&active.export_id) {
        return Cow::Borrowed(obs);
    }
    let mut more = obs.clone();
    more.others.claims.extend(ctx.claims.claims_on(obj, [active.export_id.as_str()]));
    Cow::Owned(more)
}

/// StartContinuousExport, once the start gate of the account's region is taken and
/// (first attempt) the annotation set; then Describe of the new export, or on a
/// conflict a listing that names the running one.
async fn start<S: ExportService>(
    ctx: &Context<S>,
    bind: &Binding<S>,
    target: &mut Target<'_>,
    region: &str,
    attempt: Attempt,
) -> Result<StartOutcome, Error> {
    let ads = bind.ads(&ctx.ads);
    let _gate = match ctx.starts.enter(&bind.scope, region, &owner(target.obj)) {
        Ok(gate) => gate,
        Err(holder) => return Ok(StartOutcome::Gated { holder }),
    };
    if attempt == Attempt::First {
        target.patch_pending(Some(format_time(Timestamp::now()))).await?;
    }
    match ads.start(region).await {
        Ok(started) => {
            info!(export_id = %started.export_id, "started export");
            let described = ads.describe(region, &started.export_id).await;
            Ok(StartOutcome::Started { started, described })
        }
        Err(error) => {
            let running = match error.reason {
                Reason::Conflict => ads
                    .list(region)
                    .await
                    .ok()
                    .and_then(|all| all.into_iter().find(|d| super::decide::is_running(&d.status))),
                _ => None,
            };
            Ok(StartOutcome::Failed { error, running })
        }
    }
}

/// StopContinuousExport of `id`; then Describe when the status is kept ([`Times`]), or
/// when ADS answers `OperationNotPermitted`.
pub async fn stop<S: ExportService>(ads: &S, region: &str, id: &str, times: Times) -> StopOutcome {
    match ads.stop(region, id).await {
        Ok(answer) => {
            info!(export_id = id, "stopped export");
            let described = match times {
                Times::FromAnswerAndDescribe => Some(ads.describe(region, id).await),
                Times::NotNeeded => None,
            };
            StopOutcome::Stopped { times: answer, described }
        }
        Err(error) if error.reason == Reason::OperationNotPermitted => {
            StopOutcome::Refused { error, described: ads.describe(region, id).await }
        }
        Err(e) => StopOutcome::Failed(e),
    }
}
