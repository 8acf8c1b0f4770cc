//! The `ExportAccount` reconciler (docs/architecture.md, "Accounts"): a second
//! kube-runtime controller in the same process.
//!
//! Each pass assumes the account's role afresh and asks STS `GetCallerIdentity` with the
//! temporary credentials (when due: a new generation, every resync period after a
//! success, on the backoff schedule after a failure), counts the `ContinuousExport`s
//! that reference the account (the claim index, not a cache scan), and writes the
//! status by server-side apply: `accountId`, `assumedRoleArn`, `lastVerifiedTime`
//! (RFC 3339, UTC), `lastError`, `inUseBy`, `observedGeneration` and `Ready`.
//!
//! Deletion: every `ExportAccount` carries [`ACCOUNT_FINALIZER`]; it is removed only
//! once no `ContinuousExport` references the account, so the role's credentials remain
//! usable to stop their exports. Until then `Ready=False`, reason `InUse`, names them and
//! a Warning event says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::claim_index::ClaimIndex;
use super::conditions::{ConditionUpdate, merge};
use crate::ads::assume::CallerIdentity;
use crate::ads::format_time;
use crate::api::{
    ACCOUNT_FINALIZER, CONDITION_READY, ExportAccount, ExportAccountSpec, ExportAccountStatus, FIELD_MANAGER,
};

/// Checks that an account's role can be assumed (the operator's: STS `AssumeRole` then
/// `GetCallerIdentity`, `ads::assume::verify`; the unit tests': a fake).
pub trait Verifier: Send + Sync + 'static {
    /// Who the role is once assumed.
    ///
    /// # Errors
    /// One line with STS's code and message (never a key or token).
    fn verify<'a>(
        &'a self,
        name: &'a str,
        spec: &'a ExportAccountSpec,
    ) -> BoxFuture<'a, Result<CallerIdentity, String>>;
}

/// Reason of `Ready=True`: the role was assumed.
pub const ASSUMED: &str = "Assumed";
/// Reason of `Ready=False` while the deletion waits for the account's `ContinuousExport`s.
pub const IN_USE: &str = "InUse";
/// Event reason of a failed verification.
pub const ASSUME_FAILED: &str = "AssumeFailed";

/// Shared state of the `ExportAccount` reconciles.
pub struct AccountContext {
    /// Kubernetes client.
    pub client: Client,
    /// Which `ContinuousExport`s reference which account.
    pub claims: Arc<ClaimIndex>,
    /// STS.
    pub verifier: Arc<dyn Verifier>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Re-verification period after a success (the `--resync-period`).
    pub resync: Duration,
    /// First retry delay after a failed verification.
    pub backoff_base: Duration,
    /// Retry delay cap.
    pub backoff_max: Duration,
    /// Called when an account is gone (the CE side forgets its connection).
    pub forget: Arc<dyn Fn(&str) + Send + Sync>,
    schedule: Mutex<HashMap<String, Due>>,
}

/// When an account is to be verified next, and how many verifications failed in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The generation last verified.
    pub generation: i64,
    /// Failures in a row (0 after a success).
    pub failures: u32,
    /// The next verification.
    pub at: Instant,
}

impl AccountContext {
    /// A context; nothing is scheduled yet (every account is verified on its first pass).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        claims: Arc<ClaimIndex>,
        verifier: Arc<dyn Verifier>,
        recorder: Recorder,
        resync: Duration,
        backoff: (Duration, Duration),
        forget: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Self {
        Self {
            client,
            claims,
            verifier,
            recorder,
            resync,
            backoff_base: backoff.0,
            backoff_max: backoff.1,
            forget,
            schedule: Mutex::default(),
        }
    }

    fn due(&self, name: &str) -> Option<Due> {
        self.schedule.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).copied()
    }

    fn set_due(&self, name: &str, due: Option<Due>) {
        let mut s = self.schedule.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match due {
            Some(d) => s.insert(name.to_owned(), d),
            None => s.remove(name),
        };
    }
}

/// Whether the account is to be verified now: never verified in this process, a new
/// generation, or its time has come.
pub fn verification_due(due: Option<&Due>, generation: i64, now: Instant) -> bool {
    due.is_none_or(|d| d.generation != generation || d.at <= now)
}

/// The schedule after a verification at `now`: the resync period after a success, else
/// `base * 2^(failures - 1)` capped at `max`.
pub fn next_due(
    previous: Option<&Due>,
    generation: i64,
    ok: bool,
    now: Instant,
    ctx: (Duration, Duration, Duration),
) -> Due {
    let (resync, base, max) = ctx;
    if ok {
        return Due { generation, failures: 0, at: now + resync };
    }
    let failures = previous.filter(|d| d.generation == generation).map_or(0, |d| d.failures) + 1;
    let delay = base.saturating_mul(2u32.saturating_pow(failures - 1)).min(max);
    Due { generation, failures, at: now + delay }
}

/// The condition reason of a failed verification: `Unreachable` when STS could not be
/// reached ([`crate::ads::assume::STS_UNREACHABLE`]), `AuthorizationError` when STS
/// refused (an access, token or signature error), else `UnknownError`.
pub fn failure_reason(message: &str) -> &'static str {
    if message.starts_with(crate::ads::assume::STS_UNREACHABLE) {
        return crate::ads::Reason::Unreachable.as_str();
    }
    const REFUSALS: [&str; 6] = [
        "AccessDenied",
        "InvalidClientTokenId",
        "ExpiredToken",
        "SignatureDoesNotMatch",
        "NotAuthorized",
        "could not assume role",
    ];
    if REFUSALS.iter().any(|c| message.contains(c)) { "AuthorizationError" } else { "UnknownError" }
}

/// `ns/name, ...` of the objects, at most 10 named.
pub fn named_users(users: &[(String, String)]) -> String {
    let mut names: Vec<String> = users.iter().take(10).map(|(ns, n)| format!("{ns}/{n}")).collect();
    if users.len() > 10 {
        names.push(format!("and {} more", users.len() - 10));
    }
    names.join(", ")
}

/// The `Ready` condition a pass concludes: in use while deleting (`InUse`), else from
/// the verification (`Assumed`, or the failure's reason with STS's message); `None`
/// when nothing was verified this pass (the stored one stays).
pub fn ready(
    verified: Option<&Result<CallerIdentity, String>>,
    deleting_with: Option<&[(String, String)]>,
) -> Option<ConditionUpdate> {
    if let Some(users) = deleting_with {
        let message = format!("deletion waits for {} ContinuousExports: {}", users.len(), named_users(users));
        return Some(ConditionUpdate::is_false(CONDITION_READY, IN_USE, message));
    }
    Some(match verified? {
        Ok(who) => ConditionUpdate::is_true(CONDITION_READY, ASSUMED, format!("assumed the role as {}", who.arn)),
        Err(e) => ConditionUpdate::is_false(CONDITION_READY, failure_reason(e), e.clone()),
    })
}

/// The status a pass writes: `stored` with the verification's fields, `inUseBy`, the
/// generation and the `Ready` condition ([`ready`]). Pure.
pub fn status_after(
    stored: &ExportAccountStatus,
    generation: i64,
    users: usize,
    verified: Option<&Result<CallerIdentity, String>>,
    ready: Option<ConditionUpdate>,
    now: Timestamp,
) -> ExportAccountStatus {
    let mut status = stored.clone();
    match verified {
        Some(Ok(who)) => {
            status.account_id = Some(who.account.clone());
            status.assumed_role_arn = Some(who.arn.clone());
            status.last_verified_time = Some(format_time(now));
            status.last_error = None;
        }
        Some(Err(e)) => status.last_error = Some(e.clone()),
        None => {}
    }
    status.in_use_by = Some(i64::try_from(users).unwrap_or(i64::MAX));
    if let Some(update) = ready {
        status.conditions = merge(&stored.conditions, &[update], generation, now);
        status.observed_generation = Some(generation);
    }
    status
}

/// Reconciles one `ExportAccount` (see the module docs).
///
/// # Errors
/// A failed Kubernetes call (status write, finalizer patch), or [`AccountError::InUse`]
/// while a deletion waits; the error policy requeues.
pub async fn reconcile_account(obj: Arc<ExportAccount>, ctx: Arc<AccountContext>) -> Result<Action, AccountError> {
    let api: Api<ExportAccount> = Api::all(ctx.client.clone());
    finalizer(&api, ACCOUNT_FINALIZER, obj, |event| async {
        match event {
            Finalizer::Apply(obj) => apply(&obj, &api, &ctx).await,
            Finalizer::Cleanup(obj) => cleanup(&obj, &api, &ctx).await,
        }
    })
    .await
    .map_err(|e| AccountError::Finalizer(Box::new(e)))
}

/// Why an `ExportAccount` pass ended early.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A Kubernetes call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The deletion waits for the `ContinuousExport`s that reference the account.
    #[error("deletion waits for {0} ContinuousExports")]
    InUse(usize),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<AccountError>>),
}

/// The error policy: a deletion in use is looked at again in 5 s (a referencing object's
/// deletion also triggers a pass at once), a Kubernetes error after the backoff base.
pub fn account_error_policy(obj: Arc<ExportAccount>, err: &AccountError, ctx: Arc<AccountContext>) -> Action {
    tracing::info!(account = obj.name_any(), error = %err, "ExportAccount pass ended early");
    Action::requeue(ctx.backoff_base.max(Duration::from_secs(5)))
}

async fn apply(obj: &ExportAccount, api: &Api<ExportAccount>, ctx: &AccountContext) -> Result<Action, AccountError> {
    let name = obj.name_any();
    let generation = obj.metadata.generation.unwrap_or(0);
    let stored = obj.status.clone().unwrap_or_default();
    let users = ctx.claims.referencing(&name).len();
    let now = Instant::now();
    let previous = ctx.due(&name);
    let verified = if verification_due(previous.as_ref(), generation, now) {
        let result = ctx.verifier.verify(&name, &obj.spec).await;
        let due = next_due(
            previous.as_ref(),
            generation,
            result.is_ok(),
            now,
            (ctx.resync, ctx.backoff_base, ctx.backoff_max),
        );
        ctx.set_due(&name, Some(due));
        Some(result)
    } else {
        None
    };
    let status =
        status_after(&stored, generation, users, verified.as_ref(), ready(verified.as_ref(), None), Timestamp::now());
    if status != stored {
        write_status(api, &name, &status).await?;
        announce(ctx, obj, &stored, &status).await;
    }
    let next = ctx.due(&name).map_or(ctx.resync, |d| d.at.saturating_duration_since(Instant::now()));
    Ok(Action::requeue(next.max(Duration::from_millis(100))))
}

async fn cleanup(obj: &ExportAccount, api: &Api<ExportAccount>, ctx: &AccountContext) -> Result<Action, AccountError> {
    let name = obj.name_any();
    let users = ctx.claims.referencing(&name);
    if users.is_empty() {
        tracing::info!(account = %name, "ExportAccount no longer in use: finalizer released");
        ctx.set_due(&name, None);
        (ctx.forget)(&name);
        return Ok(Action::await_change());
    }
    let stored = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    let ready = ready(None, Some(&users));
    let status = status_after(&stored, generation, users.len(), None, ready, Timestamp::now());
    if status != stored {
        write_status(api, &name, &status).await?;
        let note = format!(
            "ExportAccount {name} is being deleted but {} ContinuousExports still use it ({}): it is kept until \
             they are deleted",
            users.len(),
            named_users(&users)
        );
        publish(ctx, obj, EventType::Warning, IN_USE, note).await;
    }
    Err(AccountError::InUse(users.len()))
}

/// Events for a change of `Ready`: `Assumed` when it turns true, `AssumeFailed` when a
/// failure is new or its message changed.
async fn announce(ctx: &AccountContext, obj: &ExportAccount, was: &ExportAccountStatus, now: &ExportAccountStatus) {
    let ready = |s: &ExportAccountStatus| s.conditions.iter().find(|c| c.type_ == CONDITION_READY).cloned();
    let (before, after) = (ready(was), ready(now));
    let Some(after) = after else { return };
    let same = before.as_ref().is_some_and(|b| b.status == after.status && b.message == after.message);
    if same {
        return;
    }
    if after.status == "True" {
        publish(ctx, obj, EventType::Normal, ASSUMED, after.message).await;
    } else {
        publish(ctx, obj, EventType::Warning, ASSUME_FAILED, after.message).await;
    }
}

async fn publish(ctx: &AccountContext, obj: &ExportAccount, type_: EventType, reason: &str, note: String) {
    let ev = KubeEvent { type_, reason: reason.into(), note: Some(note), action: "Verify".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish event");
    }
}

/// Server-side applies the account's status. A 404 (gone meanwhile) is not an error.
async fn write_status(api: &Api<ExportAccount>, name: &str, status: &ExportAccountStatus) -> Result<(), kube::Error> {
    let body = json!({ "apiVersion": "adsexport.io/v1alpha1", "kind": "ExportAccount", "status": status });
    match api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> CallerIdentity {
        CallerIdentity { account: "111111111111".into(), arn: "arn:aws:sts::111111111111:assumed-role/ads/s".into() }
    }

    #[test]
    fn verification_is_due_first_on_a_new_generation_and_on_time() {
        let now = Instant::now();
        let later = Due { generation: 1, failures: 0, at: now + Duration::from_secs(60) };
        assert!(verification_due(None, 1, now), "never verified");
        assert!(!verification_due(Some(&later), 1, now), "not yet");
        assert!(verification_due(Some(&later), 2, now), "a new generation");
        assert!(verification_due(Some(&later), 1, now + Duration::from_secs(60)), "its time");
    }

    #[test]
    fn failures_back_off_and_a_success_waits_a_resync() {
        let (now, s) = (Instant::now(), Duration::from_secs);
        let ctx = (s(600), s(5), s(30));
        let ok = next_due(None, 1, true, now, ctx);
        assert_eq!((ok.failures, ok.at), (0, now + s(600)));
        let f1 = next_due(Some(&ok), 1, false, now, ctx);
        let f2 = next_due(Some(&f1), 1, false, now, ctx);
        let f4 = next_due(Some(&next_due(Some(&f2), 1, false, now, ctx)), 1, false, now, ctx);
        assert_eq!([f1.at, f2.at, f4.at], [now + s(5), now + s(10), now + s(30)], "doubling, capped");
        assert_eq!(next_due(Some(&f4), 2, false, now, ctx).failures, 1, "a new generation starts over");
    }

    #[test]
    fn the_status_says_who_the_role_is_or_why_not() {
        let now: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let ok = Ok(who());
        let status = status_after(&ExportAccountStatus::default(), 3, 2, Some(&ok), ready(Some(&ok), None), now);
        assert_eq!(status.account_id.as_deref(), Some("111111111111"));
        assert_eq!(status.last_verified_time.as_deref(), Some("2026-03-01T12:00:00.000Z"));
        assert_eq!((status.in_use_by, status.observed_generation), (Some(2), Some(3)));
        assert_eq!((status.conditions[0].status.as_str(), status.conditions[0].reason.as_str()), ("True", ASSUMED));
        let denied: Result<CallerIdentity, String> =
            Err("could not assume role arn:aws:iam::111111111111:role/ads: AccessDenied: not trusted".into());
        let failed = status_after(&status, 3, 2, Some(&denied), ready(Some(&denied), None), now);
        assert_eq!(failed.account_id.as_deref(), Some("111111111111"), "the last success is kept");
        assert!(failed.last_error.as_deref().unwrap().contains("AccessDenied"));
        assert_eq!(
            (failed.conditions[0].status.as_str(), failed.conditions[0].reason.as_str()),
            ("False", "AuthorizationError")
        );
        let again = status_after(&failed, 3, 2, Some(&ok), ready(Some(&ok), None), now);
        assert_eq!(again.last_error, None, "cleared on success");
        let counted = status_after(&again, 3, 5, None, None, now);
        assert_eq!((counted.in_use_by, counted.conditions), (Some(5), again.conditions), "no verification: Ready kept");
    }

    #[test]
    fn a_deletion_in_use_names_the_objects() {
        let users = [("a".to_owned(), "x".to_owned()), ("b".to_owned(), "y".to_owned())];
        let c = ready(None, Some(&users)).unwrap();
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            (IN_USE, "deletion waits for 2 ContinuousExports: a/x, b/y")
        );
        let many: Vec<_> = (0..12).map(|i| ("n".to_owned(), i.to_string())).collect();
        assert!(named_users(&many).ends_with("and 2 more"));
        assert_eq!(failure_reason("dispatch failure: connection refused"), "UnknownError");
    }
}
