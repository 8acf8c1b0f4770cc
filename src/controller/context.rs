//! The state shared by all reconciles: [`Context`], its [`Settings`], the metrics
//! hook ([`ReconcileObserver`]) and the per-(account, region) [`StartGate`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};

use super::accounts::Accounts;
use super::backoff::Backoff;
use super::claim_index::ClaimIndex;
use super::events::Events;
use crate::ads::ExportService;
use crate::ads::home_region::HomeRegionCache;

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
    /// The account's Migration Hub home region (looked up once, shared): the region of
    /// objects without `spec.region` when `default_region` is `None`, and what the
    /// `HomeRegionNotSet` messages name. `None`: never looked up.
    pub home_region: Option<Arc<HomeRegionCache>>,
    /// Label selector of the `ExportAccount`s this operator uses and reconciles, e.g.
    /// `team=a` (`None`: all). Lets several operators share a cluster (and the tests).
    pub account_selector: Option<String>,
    /// Whether this operator runs the `ExportAccount` reconciler (status, the
    /// `adsexport.io/account-in-use` finalizer). It needs to see every
    /// `ContinuousExport` that may reference an account, so the binary enables it only
    /// when it watches all namespaces.
    pub reconcile_accounts: bool,
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
            home_region: None,
            account_selector: None,
            reconcile_accounts: false,
        }
    }
}

/// Observes reconciles for metrics; the default does nothing.
pub trait ReconcileObserver: Send + Sync + 'static {
    /// One reconcile finished: `result` is `"ok"` or `"error"`, after `elapsed`.
    fn reconciled(&self, result: &'static str, elapsed: Duration);
    /// An object's `exportStatus` as last written (`None`: no export), keyed by UID.
    fn export_status(&self, uid: &str, status: Option<&str>);
    /// The object with this UID is gone (its finalizer was released).
    fn deleted(&self, uid: &str);
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
    /// The event queue (events.k8s.io/v1, published beside the reconcile).
    pub events: Events,
    /// The claims of all watched `ContinuousExport`s, fed by the controller's watch:
    /// which export IDs other objects manage or want, whose starts are pending.
    pub claims: Arc<ClaimIndex>,
    /// The connection-info ConfigMaps (label [`super::info::INFO_LABEL`]) in the watched
    /// scope, fed by the controller's watch of them (empty until it runs).
    pub info_cache: Store<ConfigMap>,
    /// Metrics hook.
    pub observer: Option<Arc<dyn ReconcileObserver>>,
    /// Regions with a StartContinuousExport in flight in this process, and whose.
    pub starts: StartGate,
    /// The `ExportAccount`s objects may use (`spec.accountRef`); `None`: none (an
    /// object naming one is `AccountNotFound`).
    pub accounts: Option<Arc<Accounts<S>>>,
}

/// At most one StartContinuousExport in flight per (scope, region) in this process: an
/// unanswered start may have created any export that later shows up in the account's
/// region, so two at once could not tell whose export is whose. (Across reconciles the
/// `start-pending` annotation, seen in the watch cache, plays the same part.) The scope
/// is the AWS account (`placement::OWN_SCOPE` or an account ID): another account's
/// start never holds this one's region.
#[derive(Debug, Default)]
pub struct StartGate(std::sync::Mutex<std::collections::HashMap<(String, String), String>>);

impl StartGate {
    /// Takes `region` of `scope` for the object `owner` (`namespace/name`). It is free
    /// again when the returned guard is dropped.
    ///
    /// # Errors
    /// The holder's `namespace/name` if another object holds the scope's region.
    pub fn enter<'a>(&'a self, scope: &str, region: &str, owner: &str) -> Result<StartGuard<'a>, String> {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = (scope.to_owned(), region.to_owned());
        match held.get(&at) {
            Some(holder) if holder != owner => Err(holder.clone()),
            _ => {
                held.insert(at.clone(), owner.to_owned());
                Ok(StartGuard { gate: self, at })
            }
        }
    }
}

/// Holds a (scope, region) of a [`StartGate`] until dropped.
#[derive(Debug)]
pub struct StartGuard<'a> {
    gate: &'a StartGate,
    at: (String, String),
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        self.gate.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.at);
    }
}

impl<S: ExportService> Context<S> {
    /// A context with the given parts, an empty claim index, an empty ConfigMap cache
    /// and no observer; its event lanes start on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(client: Client, ads: S, settings: Settings) -> Self {
        let reporter = Reporter { controller: settings.controller_name.clone(), instance: settings.instance.clone() };
        Self {
            events: Events::start(&client, &reporter),
            backoff: Backoff::new(settings.backoff_base, settings.backoff_max),
            claims: Arc::new(
                ClaimIndex::new(settings.default_region.clone()).with_home_region(settings.home_region.clone()),
            ),
            client,
            ads,
            settings,
            info_cache: reflector::store().0,
            observer: None,
            starts: StartGate::default(),
            accounts: None,
        }
    }
}
