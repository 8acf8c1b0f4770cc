//! The `ContinuousExport` controller: [`Context`], [`run`], the reconcile state
//! machine ([`reconcile`]) and its error policy.
//!
//! Reconcile follows DESIGN.md section 2; AWS errors are classified by
//! [`crate::ads::AdsError`] and become conditions (section 3). The controller talks to
//! AWS only through [`ExportService`] and to Kubernetes only through [`kube::Api`].

pub mod backoff;
pub mod conditions;
mod reconcile;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

pub use reconcile::reconcile;

use crate::ads::{AdsError, ExportService};
use crate::api::ContinuousExport;
use backoff::Backoff;

/// Errors a reconcile returns to the runtime; each leads to a backoff requeue.
///
/// AWS errors of the `Apply` branch do not surface here: they are written into
/// conditions and requeued from within reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (status write, annotation patch, read).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An AWS call failed while stopping the export of an object being deleted.
    #[error("{0}")]
    Ads(#[from] AdsError),
    /// An AWS call failed while stopping the export of an object being deleted; retried
    /// after `retry_in`, the failure backoff delay already stated in the object's
    /// `Synced` condition.
    #[error("{error}")]
    Retry {
        /// What failed.
        error: AdsError,
        /// When to try again (the error policy requeues after exactly this).
        retry_in: Duration,
    },
    /// The finalizer helper failed (adding or removing `adsexport.io/stop-export`).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The object lacks a namespace or name (never for objects read from the apiserver).
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// Deletion waits for the export to leave a transition (e.g. still starting):
    /// not a failure; polled on the short transition schedule.
    #[error("waiting: {0}")]
    Waiting(String),
}

impl Error {
    /// The error itself, or the reconcile error a finalizer error wraps.
    fn inner(&self) -> &Error {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Finalizer(f) => match &**f {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.inner(),
                _ => self,
            },
            _ => self,
        }
    }

    /// Whether this is a normal wait rather than a failure.
    fn is_waiting(&self) -> bool {
        matches!(self.inner(), Error::Waiting(_))
    }

    /// The delay a [`Error::Retry`] (possibly inside a finalizer error) asks for.
    fn retry_in(&self) -> Option<Duration> {
        match self.inner() {
            Error::Retry { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }
}

/// Controller settings (the `run` flags that shape reconcile).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Region for objects without `spec.region`. `None`: such objects report a
    /// recoverable `UnknownError` (retried with backoff, no AWS call) until the operator
    /// is restarted with a region; deleting one keeps the finalizer while it manages an export.
    pub default_region: Option<String>,
    /// Steady-state resync period (default 10 min): catches out-of-band changes.
    pub resync_period: Duration,
    /// First retry delay after a recoverable error (default 5 s).
    pub backoff_base: Duration,
    /// Retry delay cap (default 5 min).
    pub backoff_max: Duration,
    /// Objects reconciled at once (default 4).
    pub max_concurrent_reconciles: u16,
    /// Watch only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Name in the events' `reportingController`.
    pub controller_name: String,
    /// This process's identity in events (`reportingInstance`), e.g. the pod name.
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_region: None,
            resync_period: Duration::from_secs(600),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            max_concurrent_reconciles: 4,
            namespace: None,
            controller_name: "ads-export-operator".into(),
            instance: None,
        }
    }
}

/// Observes reconciles for metrics; the default does nothing.
pub trait ReconcileObserver: Send + Sync + 'static {
    /// One reconcile finished: `result` is `"ok"` or `"error"`, after `elapsed`.
    fn reconciled(&self, result: &'static str, elapsed: Duration);
    /// An object's `exportStatus` as last written (`None`: no export), keyed by UID;
    /// `deleted` once the object is gone.
    fn export_status(&self, uid: &str, status: Option<&str>, deleted: bool);
    /// The watch cache has its first full list: the controller is serving.
    fn synced(&self) {}
}

/// Shared state of all reconciles.
pub struct Context<S: ExportService> {
    /// Kubernetes client.
    pub client: Client,
    /// The ADS seam.
    pub ads: S,
    /// Settings from flags.
    pub settings: Settings,
    /// Per-object retry and poll schedule.
    pub backoff: Backoff,
    /// Event recorder (events.k8s.io/v1).
    pub recorder: Recorder,
    /// The controller's cache of all watched `ContinuousExport`s: used to tell which
    /// export IDs other objects already manage.
    pub store: Option<Store<ContinuousExport>>,
    /// Metrics hook.
    pub observer: Option<Arc<dyn ReconcileObserver>>,
    /// Regions with a StartContinuousExport in flight in this process, and whose.
    pub starts: StartGate,
}

/// At most one StartContinuousExport in flight per region in this process: an
/// unanswered start may have created any export that later shows up in the region, so
/// two at once could not tell whose export is whose. (Across reconciles the
/// `start-pending` annotation, seen in the watch cache, plays the same part.)
#[derive(Debug, Default)]
pub struct StartGate(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl StartGate {
    /// Takes `region` for the object `owner` (`namespace/name`). The region is free
    /// again when the returned guard is dropped.
    ///
    /// # Errors
    /// The holder's `namespace/name` if another object holds the region.
    pub fn enter<'a>(&'a self, region: &str, owner: &str) -> Result<StartGuard<'a>, String> {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match held.get(region) {
            Some(holder) if holder != owner => Err(holder.clone()),
            _ => {
                held.insert(region.to_owned(), owner.to_owned());
                Ok(StartGuard { gate: self, region: region.to_owned() })
            }
        }
    }
}

/// Holds a region of a [`StartGate`] until dropped.
#[derive(Debug)]
pub struct StartGuard<'a> {
    gate: &'a StartGate,
    region: String,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.region);
    }
}

impl<S: ExportService> Context<S> {
    /// A context with the given parts and no store or observer.
    pub fn new(client: Client, ads: S, settings: Settings) -> Self {
        let reporter = Reporter { controller: settings.controller_name.clone(), instance: settings.instance.clone() };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            backoff: Backoff::new(settings.backoff_base, settings.backoff_max),
            client,
            ads,
            settings,
            store: None,
            observer: None,
            starts: StartGate::default(),
        }
    }
}

/// The `Api` for the watched scope (one namespace or all).
pub fn scoped_api(client: &Client, namespace: Option<&str>) -> Api<ContinuousExport> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Checks that the apiserver is reachable and serves the CRD, with an error that
/// says how to fix it.
///
/// # Errors
/// A one-line description: no reachable cluster, CRD not installed, or forbidden.
pub async fn preflight(client: &Client, namespace: Option<&str>) -> anyhow::Result<()> {
    match scoped_api(client, namespace).list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(anyhow::anyhow!(
            "the CRD continuousexports.adsexport.io is not installed: run `ads-export-operator crd | kubectl apply \
             --server-side -f -` (or `kubectl apply --server-side -f crds/continuousexports.adsexport.io.yaml`)"
        )),
        Err(kube::Error::Api(s)) if s.code == 403 => Err(anyhow::anyhow!(
            "forbidden to list continuousexports{}: {} (check the operator's RBAC)",
            namespace.map(|n| format!(" in namespace {n}")).unwrap_or_default(),
            s.message
        )),
        Err(e) => Err(anyhow::anyhow!("cannot reach the Kubernetes API server: {e}")),
    }
}

/// The watch trigger filter: a new generation (spec change or deletion marking)
/// or a finalizer change. Status and annotation writes, including the controller's
/// own, do not trigger a reconcile; requeues handle polling.
fn trigger_hash(obj: &ContinuousExport) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    obj.finalizers().hash(&mut h);
    obj.meta().deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// The error policy: requeue after the object's next backoff delay (or, for a
/// normal wait, the next transition poll).
pub fn error_policy<S: ExportService>(obj: Arc<ContinuousExport>, err: &Error, ctx: Arc<Context<S>>) -> Action {
    if err.is_waiting() {
        let delay = ctx.backoff.next_poll_delay(&reconcile::key(&obj));
        tracing::info!(namespace = obj.namespace().unwrap_or_default(), name = obj.name_any(), %err, retry_in = ?delay);
        return Action::requeue(delay);
    }
    let delay = err.retry_in().unwrap_or_else(|| ctx.backoff.next_failure_delay(&reconcile::key(&obj)));
    tracing::warn!(
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Runs the controller until `shutdown` resolves (then finishes in-flight
/// reconciles and returns).
///
/// # Errors
/// Only from start-up (see [`preflight`]).
pub async fn run<S: ExportService>(
    client: Client,
    ads: S,
    settings: Settings,
    observer: Option<Arc<dyn ReconcileObserver>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    preflight(&client, settings.namespace.as_deref()).await?;
    let api = scoped_api(&client, settings.namespace.as_deref());
    let (reader, writer) = reflector::store();
    // Readiness from the stream itself: `Store::wait_until_ready` wakes only its last
    // waiter, and the controller is already one.
    let on_synced = observer.clone();
    let trigger = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let (Ok(watcher::Event::InitDone), Some(o)) = (event, &on_synced) {
                tracing::info!("watch cache synced");
                o.synced();
            }
        })
        .applied_objects()
        .predicate_filter(trigger_hash, PredicateConfig::default());
    let concurrency = settings.max_concurrent_reconciles.max(1);
    let mut ctx = Context::new(client, ads, settings);
    ctx.store = Some(reader.clone());
    ctx.observer = observer;
    tracing::info!(namespace = ctx.settings.namespace.as_deref().unwrap_or("<all>"), "controller starting");
    Controller::for_stream(trigger, reader)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        })
        .await;
    tracing::info!("controller stopped");
    Ok(())
}
