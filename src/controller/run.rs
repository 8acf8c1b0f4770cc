//! Running the controllers: the start-up check ([`preflight`]), the watches and their
//! trigger filters, and [`run`] / [`run_with_accounts`] (the `ContinuousExport`
//! controller and, with accounts, the `ExportAccount` reconciler).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::accounts::{Accounts, Cache, Connection, Connector, scope_of};
use super::annotations;
use super::claim_index::ClaimIndex;
use super::context::{Context, ReconcileObserver, Settings};
use super::error::error_policy;
use super::export_account::{AccountContext, Verifier, account_error_policy, reconcile_account};
use super::info::INFO_LABEL;
use super::placement::OWN_SCOPE;
use super::reconcile::reconcile;
use crate::ads::ExportService;
use crate::ads::shared::{Changed, SharedListing};
use crate::api::{ContinuousExport, ExportAccount, ExportAccountSpec};

/// The RBAC the accounts need, as the preflight errors state it.
pub const ACCOUNTS_RBAC: &str = "exportaccounts (adsexport.io): get, list, watch, patch, update; \
     exportaccounts/status: get, patch; exportaccounts/finalizers: update; namespaces: get, list, watch";

/// Checks that the `ExportAccount` CRD is installed and that the operator may list
/// `ExportAccount`s and Namespaces.
///
/// # Errors
/// A one-line description: CRD missing (helm does not install new CRDs on upgrade: apply
/// `crds/exportaccounts.adsexport.io.yaml`) or forbidden (the RBAC needed, [`ACCOUNTS_RBAC`]).
pub async fn preflight_accounts(client: &Client) -> anyhow::Result<()> {
    let accounts: Api<ExportAccount> = Api::all(client.clone());
    match accounts.list(&ListParams::default().limit(1)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(anyhow::anyhow!(
                "the CRD exportaccounts.adsexport.io is not installed: run `kubectl apply --server-side -f \
                 crds/exportaccounts.adsexport.io.yaml` (or `ads-export-operator crd exportaccounts.adsexport.io | \
                 kubectl apply --server-side -f -`); helm installs CRDs only on first install, not on upgrade"
            ));
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(anyhow::anyhow!(
                "forbidden to list exportaccounts: {} (the operator's ClusterRole needs {ACCOUNTS_RBAC})",
                s.message
            ));
        }
        Err(e) => return Err(anyhow::anyhow!("cannot reach the Kubernetes API server: {e}")),
    }
    Ok(())
}

/// What the operator needs to use `ExportAccount`s: how to connect one (its ADS service
/// and home region) and how to verify its role.
pub struct AccountSupport<S> {
    /// Makes an account's service (the run wraps it in its own `SharedListing`).
    pub connector: Arc<dyn Connector<S>>,
    /// STS `AssumeRole` + `GetCallerIdentity`, for the `ExportAccount` reconciler.
    pub verifier: Arc<dyn Verifier>,
}

/// Wraps each account's service in its own [`SharedListing`] (listing, batching and
/// transition watch per (account, region)) and forwards its changes, with the account's
/// scope, to the controller's `reconcile_on`.
struct SharedConnector<S> {
    inner: Arc<dyn Connector<S>>,
    changes: mpsc::UnboundedSender<(String, Changed)>,
}

impl<S: ExportService> Connector<SharedListing<S>> for SharedConnector<S> {
    fn connect<'a>(
        &'a self,
        name: &'a str,
        spec: &'a ExportAccountSpec,
    ) -> BoxFuture<'a, Connection<SharedListing<S>>> {
        Box::pin(async move {
            let inner = self.inner.connect(name, spec).await;
            let ads = SharedListing::new(inner.ads);
            forward_changes(ads.changes(), scope_of(name, spec), self.changes.clone());
            Connection { ads, home_region: inner.home_region }
        })
    }
}

/// Forwards a listing's changes, tagged with `scope`, until either side ends.
fn forward_changes(
    changes: mpsc::UnboundedReceiver<Changed>,
    scope: String,
    to: mpsc::UnboundedSender<(String, Changed)>,
) {
    tokio::spawn(changes.for_each(move |c| {
        let _ = to.unbounded_send((scope.clone(), c));
        futures::future::ready(())
    }));
}

/// The `Api` for the watched scope (one namespace or all).
pub fn scoped_api(client: &Client, namespace: Option<&str>) -> Api<ContinuousExport> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The `Api` of ConfigMaps in the watched scope (one namespace or all).
fn scoped_config_maps(client: &Client, namespace: Option<&str>) -> Api<ConfigMap> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The watch of the connection-info ConfigMaps (`spec.writeInfoTo`): only those with
/// [`INFO_LABEL`] (a server-side label selector, so the cache holds this operator's
/// ConfigMaps, not every ConfigMap of the cluster), without `managedFields`, feeding
/// `cache`. Each change (a deletion or an edit by someone else, or our own write)
/// triggers a reconcile of the ConfigMap's controller, which rewrites it when its keys
/// differ from the content.
fn info_watch(
    api: Api<ConfigMap>,
    cache: reflector::store::Writer<ConfigMap>,
) -> impl futures::Stream<Item = Result<ConfigMap, watcher::Error>> + Send + 'static {
    let selector = format!("{INFO_LABEL}=true");
    watcher(api, watcher::Config::default().labels(&selector).any_semantic())
        .default_backoff()
        .modify(|cm: &mut ConfigMap| cm.metadata.managed_fields = None)
        .reflect(cache)
        .touched_objects()
        .inspect_err(|e| {
            let hint = rbac_hint(e, "list and watch on configmaps");
            tracing::warn!(error = %e, "watch of the connection-info ConfigMaps failed{hint}");
        })
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

/// The watch trigger filter: a new generation (spec change or deletion marking), the
/// deletion itself, or a change of the steering annotations (`adsexport.io/paused`,
/// `adsexport.io/reconcile-requested-at`, which do not bump the generation). The
/// controller's own writes do not trigger a reconcile: the status, the `start-pending`
/// annotation, and the finalizer (added in the pass that goes on to apply, see
/// [`super::act::ensure_finalizer`]; one removed by hand is added again on the next
/// requeue). Requeues handle polling.
fn trigger_hash(obj: &ContinuousExport) -> Option<u64> {
    let deleting = obj.meta().deletion_timestamp.is_some();
    Some(hash_of((obj.meta().generation, deleting, annotations::steering(obj))))
}

/// The `ExportAccount` watch's trigger filter: a new generation (spec change or deletion
/// marking) or a new uid (the account deleted and created again under the same name).
/// Status writes (the reconciler's `Verified` condition) do not trigger.
fn account_spec_hash(a: &ExportAccount) -> Option<u64> {
    Some(hash_of((a.meta().generation, &a.meta().uid)))
}

/// The Namespace watch's trigger filter: a change of the labels (what a
/// `namespaceSelector` matches) or a new uid (the namespace created again).
/// Annotation and other metadata edits do not trigger.
fn namespace_labels_hash(n: &PartialObjectMeta<Namespace>) -> Option<u64> {
    Some(hash_of((n.labels(), &n.meta().uid)))
}

/// One 64-bit hash of `parts` (a tuple of what a trigger filter compares), for
/// kube-runtime's `predicate_filter`; equal parts give equal hashes within a process.
fn hash_of(parts: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// What the watch cache keeps of an object: everything but `metadata.managedFields`
/// and the annotations of other tools (e.g. `kubectl.kubernetes.io/last-applied-configuration`,
/// often as large as the object); only this operator's `adsexport.io/` annotations are
/// read. Status writes are server-side applies of the status alone and the finalizer
/// patch touches only `metadata.finalizers`, so nothing written is derived from the
/// dropped fields.
pub fn slim(obj: &mut ContinuousExport) {
    slim_meta(&mut obj.metadata);
}

/// [`slim`] on any object's metadata: no `managedFields`, only `adsexport.io/` annotations.
fn slim_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k.starts_with(OWN_ANNOTATION_PREFIX));
    }
}

/// The prefix of the annotations this operator reads (`adsexport.io/start-pending`,
/// `adsexport.io/paused`, `adsexport.io/reconcile-requested-at`).
const OWN_ANNOTATION_PREFIX: &str = "adsexport.io/";

/// Runs the controller until `shutdown` resolves (then finishes in-flight
/// reconciles and returns), without `ExportAccount`s: objects with `spec.accountRef`
/// are `AccountNotFound`.
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
    run_with_accounts(client, ads, None, settings, observer, shutdown).await
}

/// The watch of the `ExportAccount`s (those matching `selector`) feeding `writer`:
/// each new account, spec change or deletion reconciles the objects that reference it
/// (the claim index), at once.
fn account_watch(
    client: &Client,
    selector: Option<&str>,
    writer: reflector::store::Writer<ExportAccount>,
    accounts_synced: impl Fn() + Send + 'static,
    claims: Arc<ClaimIndex>,
) -> impl Stream<Item = ObjectRef<ContinuousExport>> + Send + 'static {
    let mut config = watcher::Config::default().any_semantic();
    if let Some(s) = selector {
        config = config.labels(s);
    }
    watcher(Api::<ExportAccount>::all(client.clone()), config)
        .default_backoff()
        .modify(|a: &mut ExportAccount| slim_meta(&mut a.metadata))
        .reflect(writer)
        .inspect(on_init_done(accounts_synced))
        .touched_objects()
        .predicate_filter(account_spec_hash, PredicateConfig::default())
        .filter_map(logged_ok("ExportAccounts"))
        .flat_map(move |a| object_refs(claims.referencing(&a.name_any())))
}

/// The watch of the Namespaces' metadata (the watched one, or all) feeding `writer`: a
/// change of a namespace's labels reconciles its objects that reference an account (a
/// `namespaceSelector` may grant or revoke it).
///
/// Metadata only on the wire, not just in the cache: kube's `Api<PartialObjectMeta<K>>`
/// lists and watches with `Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`
/// (`…;as=PartialObjectMetadata;…` for the watch), so the apiserver sends each
/// Namespace's `metadata` alone. This is what kube-runtime's `metadata_watcher` did; kube
/// deprecated it (since kube-runtime 3.1) for `watcher` on this `Api`, which this uses.
fn namespace_watch(
    client: &Client,
    namespace: Option<&str>,
    writer: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    namespaces_synced: impl Fn() + Send + 'static,
    claims: Arc<ClaimIndex>,
) -> impl Stream<Item = ObjectRef<ContinuousExport>> + Send + 'static {
    let mut config = watcher::Config::default().any_semantic();
    if let Some(ns) = namespace {
        config = config.fields(&format!("metadata.name={ns}"));
    }
    watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), config)
        .default_backoff()
        .modify(|n: &mut PartialObjectMeta<Namespace>| n.metadata.managed_fields = None)
        .reflect(writer)
        .inspect(on_init_done(namespaces_synced))
        .touched_objects()
        .predicate_filter(namespace_labels_hash, PredicateConfig::default())
        .filter_map(logged_ok("Namespaces"))
        .flat_map(move |n| object_refs(claims.referencing_in(&n.name_any())))
}

/// Calls `f` on the watch's `InitDone` (its first full list, and each relist's end).
fn on_init_done<K>(f: impl Fn()) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |e| {
        if let Ok(watcher::Event::InitDone) = e {
            f();
        }
    }
}

/// The watch's objects; its errors logged, with the RBAC the accounts need when the
/// apiserver refused (403) (the watcher retries with backoff).
fn logged_ok<K>(what: &'static str) -> impl FnMut(Result<K, watcher::Error>) -> futures::future::Ready<Option<K>> {
    move |r| {
        let r = r.inspect_err(|e| {
            let hint = rbac_hint(e, ACCOUNTS_RBAC);
            tracing::warn!(error = %e, "watch of the {what} failed{hint}");
        });
        futures::future::ready(r.ok())
    }
}

/// ` (the operator's RBAC needs <needs>)` when the apiserver refused the watch (HTTP
/// 403 Forbidden), else empty: other failures (unreachable, a bad selector, a missing
/// CRD) are not about RBAC.
fn rbac_hint(e: &watcher::Error, needs: &str) -> String {
    if is_forbidden(e) { format!(" (the operator's RBAC needs {needs})") } else { String::new() }
}

/// Whether the apiserver answered the watch's list or watch with 403 Forbidden.
fn is_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => s.code == 403,
        _ => false,
    }
}

fn object_refs(objects: Vec<(String, String)>) -> impl Stream<Item = ObjectRef<ContinuousExport>> {
    futures::stream::iter(objects.into_iter().map(|(ns, name)| ObjectRef::new(&name).within(&ns)))
}

/// [`run`] with `ExportAccount`s (`accounts`): the accounts' and Namespaces' watches,
/// one [`SharedListing`] per account, and, when `settings.reconcile_accounts`, the
/// `ExportAccount` reconciler in the same process.
///
/// # Errors
/// Only from start-up (see [`preflight`], [`preflight_accounts`]).
pub async fn run_with_accounts<S: ExportService>(
    client: Client,
    ads: S,
    accounts: Option<AccountSupport<S>>,
    settings: Settings,
    observer: Option<Arc<dyn ReconcileObserver>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    preflight(&client, settings.namespace.as_deref()).await?;
    if accounts.is_some() {
        preflight_accounts(&client).await?;
    }
    let api = scoped_api(&client, settings.namespace.as_deref());
    let (reader, writer) = reflector::store();
    // Readiness from the stream itself: `Store::wait_until_ready` wakes only its last
    // waiter, and the controller is already one.
    let on_synced = observer.clone();
    let synced = Arc::new(AtomicBool::new(false));
    let mark_synced = synced.clone();
    let shutdown = shutdown.shared();
    let (changes_tx, changes_rx) = mpsc::unbounded::<(String, Changed)>();
    let (account_store, account_writer) = reflector::store();
    let (namespace_store, namespace_writer) = reflector::store();
    let support = accounts;
    let accounts = support.as_ref().map(|a| {
        let connector = Arc::new(SharedConnector { inner: a.connector.clone(), changes: changes_tx.clone() });
        Arc::new(Accounts::new(account_store, namespace_store, connector))
    });
    let mut claims = ClaimIndex::new(settings.default_region.clone()).with_home_region(settings.home_region.clone());
    if let Some(a) = &accounts {
        let (a, operator) = (a.clone(), settings.default_region.clone());
        claims = claims.with_placer(Arc::new(move |o: &ContinuousExport| a.placement(o, operator.as_deref())));
    }
    let claims = Arc::new(claims);
    let index = claims.clone();
    let (users_tx, users_rx) = mpsc::unbounded::<ObjectRef<ExportAccount>>();
    let trigger = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(e) = event {
                index.apply(e);
                account_users_changed(e, &users_tx);
            }
            if let Ok(watcher::Event::InitDone) = event {
                mark_synced.store(true, Ordering::Release);
                if let Some(o) = &on_synced {
                    tracing::info!("watch cache synced");
                    o.synced();
                }
            }
        })
        .applied_objects()
        .predicate_filter(trigger_hash, PredicateConfig::default());
    let concurrency = settings.max_concurrent_reconciles.max(1);
    let ads = SharedListing::new(ads);
    forward_changes(ads.changes(), OWN_SCOPE.to_owned(), changes_tx);
    let changed = reconciles_on_change(changes_rx, claims.clone());
    let account_triggers =
        account_triggers(&client, &settings, accounts.as_ref(), account_writer, namespace_writer, &claims);
    let account_controller = account_controller(
        &client,
        &settings,
        support.as_ref(),
        &claims,
        accounts.as_ref(),
        users_rx,
        shutdown.clone(),
    );
    let (info_cache, info_writer) = reflector::store();
    let info = info_watch(scoped_config_maps(&client, settings.namespace.as_deref()), info_writer);
    let mut ctx = Context::new(client, ads, settings);
    ctx.claims = claims;
    ctx.info_cache = info_cache;
    ctx.observer = observer;
    ctx.accounts = accounts;
    let events = ctx.events.clone();
    tracing::info!(namespace = ctx.settings.namespace.as_deref().unwrap_or("<all>"), "controller starting");
    let controller = Controller::for_stream(trigger, reader)
        .owns_stream(info)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .reconcile_on(changed)
        .reconcile_on(account_triggers)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        });
    let controller = until_shutdown_before_sync(controller, shutdown.clone(), synced, "controller");
    futures::future::join(controller, account_controller).await;
    // The last passes' events are still queued: publish them, unless the apiserver is gone.
    if tokio::time::timeout(EVENTS_FLUSH, events.flush()).await.is_err() {
        tracing::warn!("events not published within {EVENTS_FLUSH:?} of the shutdown were dropped");
    }
    Ok(())
}

/// The objects to reconcile at once because the transition watch of a scope (the
/// operator's own, or an account's) saw their export change (docs/architecture.md,
/// "Reads at scale"): every object of that scope that claims it.
fn reconciles_on_change(
    changes: impl Stream<Item = (String, Changed)> + Send + 'static,
    claims: Arc<ClaimIndex>,
) -> impl Stream<Item = ObjectRef<ContinuousExport>> + Send + 'static {
    changes.flat_map(move |(scope, c)| object_refs(claims.claimants(&scope, &c.export_id)))
}

/// A `ContinuousExport` referencing an account appeared, changed or went: the
/// account's `inUseBy` (and a waiting deletion) is looked at again.
fn account_users_changed(
    event: &watcher::Event<ContinuousExport>,
    to: &mpsc::UnboundedSender<ObjectRef<ExportAccount>>,
) {
    let (watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o)) = event else { return };
    if let Some(r) = &o.spec.account_ref {
        let _ = to.unbounded_send(ObjectRef::new(&r.name));
    }
}

/// The objects to reconcile because an account or a namespace changed (empty without
/// accounts).
fn account_triggers<S: ExportService>(
    client: &Client,
    settings: &Settings,
    accounts: Option<&Arc<Accounts<SharedListing<S>>>>,
    account_writer: reflector::store::Writer<ExportAccount>,
    namespace_writer: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    claims: &Arc<ClaimIndex>,
) -> futures::stream::BoxStream<'static, ObjectRef<ContinuousExport>> {
    let Some(accounts) = accounts else { return futures::stream::empty().boxed() };
    let (a, n) = (accounts.clone(), accounts.clone());
    let by_account = account_watch(
        client,
        settings.account_selector.as_deref(),
        account_writer,
        move || a.mark_synced(Cache::Accounts),
        claims.clone(),
    );
    let by_namespace = namespace_watch(
        client,
        settings.namespace.as_deref(),
        namespace_writer,
        move || n.mark_synced(Cache::Namespaces),
        claims.clone(),
    );
    futures::stream::select(by_account, by_namespace).boxed()
}

/// The `ExportAccount` reconciler, when `settings.reconcile_accounts` (else a future
/// that ends at once).
fn account_controller<S: ExportService>(
    client: &Client,
    settings: &Settings,
    support: Option<&AccountSupport<S>>,
    claims: &Arc<ClaimIndex>,
    accounts: Option<&Arc<Accounts<SharedListing<S>>>>,
    users: mpsc::UnboundedReceiver<ObjectRef<ExportAccount>>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let (Some(support), Some(accounts), true) = (support, accounts, settings.reconcile_accounts) else {
        return futures::future::ready(()).boxed();
    };
    let reporter = Reporter { controller: settings.controller_name.clone(), instance: settings.instance.clone() };
    let forget_in = accounts.clone();
    let ctx = AccountContext::new(
        client.clone(),
        claims.clone(),
        support.verifier.clone(),
        Recorder::new(client.clone(), reporter),
        settings.resync_period,
        (settings.backoff_base, settings.backoff_max),
        Arc::new(move |name: &str| forget_in.forget(name)),
    );
    let mut config = watcher::Config::default().any_semantic();
    if let Some(s) = &settings.account_selector {
        config = config.labels(s);
    }
    tracing::info!("ExportAccount reconciler starting");
    let (reader, writer) = reflector::store();
    let synced = Arc::new(AtomicBool::new(false));
    let mark_synced = synced.clone();
    let trigger = watcher(Api::<ExportAccount>::all(client.clone()), config)
        .default_backoff()
        .reflect(writer)
        .inspect(on_init_done(move || mark_synced.store(true, Ordering::Release)))
        .applied_objects();
    let shutdown = shutdown.shared();
    let controller = Controller::for_stream(trigger, reader)
        .reconcile_on(users)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_account, account_error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "ExportAccount reconcile ended with an error");
            }
        });
    until_shutdown_before_sync(controller, shutdown, synced, "ExportAccount reconciler").boxed()
}

/// Runs `controller` to its end, or only until `shutdown` when that comes before its
/// watch cache synced (see [`shutdown_before_sync`]); `what` names it in the log.
async fn until_shutdown_before_sync(
    controller: impl Future<Output = ()>,
    shutdown: impl Future<Output = ()>,
    synced: Arc<AtomicBool>,
    what: &'static str,
) {
    tokio::select! {
        () = controller => tracing::info!("{what} stopped"),
        () = shutdown_before_sync(shutdown, synced) => tracing::info!("{what} stopped before its watch cache synced"),
    }
}

/// How long a shutdown waits for the queued events to be published.
const EVENTS_FLUSH: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves when `shutdown` comes before the watch cache's first list completed.
///
/// kube-runtime's graceful shutdown ends the trigger stream, which also feeds the
/// cache, while its runner waits for the cache to be ready before it starts: a
/// shutdown (SIGTERM) during the first list would wait forever. With nothing synced,
/// no reconcile has started, so the controller can simply be dropped. After the sync
/// this never resolves, and the graceful shutdown lets in-flight reconciles finish.
async fn shutdown_before_sync(shutdown: impl Future<Output = ()>, synced: Arc<AtomicBool>) {
    shutdown.await;
    if synced.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        ContinuousExportSpec, ContinuousExportStatus, PAUSED_ANNOTATION, RECONCILE_REQUESTED_ANNOTATION,
        START_PENDING_ANNOTATION,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn only_a_forbidden_watch_is_blamed_on_rbac() {
        let status = |code| Box::new(kube::core::Status { code, message: "m".into(), ..Default::default() });
        let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(status(403)));
        assert_eq!(rbac_hint(&forbidden, "x: list"), " (the operator's RBAC needs x: list)");
        assert_eq!(rbac_hint(&watcher::Error::WatchError(status(403)), "x"), " (the operator's RBAC needs x)");
        for other in [
            watcher::Error::InitialListFailed(kube::Error::Api(status(400))),
            watcher::Error::WatchFailed(kube::Error::Api(status(500))),
            watcher::Error::NoResourceVersion,
        ] {
            assert_eq!(rbac_hint(&other, "x"), "", "{other}");
        }
    }

    #[test]
    fn the_cache_keeps_only_what_the_controller_reads() {
        let mut o = ContinuousExport::new("inv", ContinuousExportSpec::default());
        o.metadata.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some("kubectl".into()), ..Default::default() }]);
        o.metadata.annotations = Some(
            [
                (START_PENDING_ANNOTATION.to_owned(), "2026-01-01T00:00:00Z".to_owned()),
                ("kubectl.kubernetes.io/last-applied-configuration".to_owned(), "{...}".to_owned()),
            ]
            .into(),
        );
        o.metadata.finalizers = Some(vec![crate::api::FINALIZER.to_owned()]);
        slim(&mut o);
        assert_eq!(o.metadata.managed_fields, None);
        let kept: Vec<_> = o.metadata.annotations.iter().flatten().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kept, [START_PENDING_ANNOTATION]);
        assert!(START_PENDING_ANNOTATION.starts_with(OWN_ANNOTATION_PREFIX));
        assert_eq!(o.metadata.finalizers.as_deref(), Some(&[crate::api::FINALIZER.to_owned()][..]));
    }

    #[test]
    fn the_cache_keeps_the_steering_annotations() {
        let mut o = ContinuousExport::new("inv", ContinuousExportSpec::default());
        o.metadata.annotations = Some(
            [
                (PAUSED_ANNOTATION.to_owned(), "true".to_owned()),
                (RECONCILE_REQUESTED_ANNOTATION.to_owned(), "1".to_owned()),
            ]
            .into(),
        );
        slim(&mut o);
        assert!(annotations::is_paused(&o));
        assert_eq!(annotations::steering(&o), [Some("true"), Some("1")]);
    }

    /// The namespace watch's first list asks the apiserver for metadata only (the
    /// `PartialObjectMetadataList` media type) and, for a single watched namespace,
    /// for that namespace alone (the field selector).
    #[tokio::test]
    async fn the_namespace_watch_lists_metadata_only() {
        use http::{Request, Response, header::ACCEPT};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (_store, writer) = reflector::store();
        let watch = namespace_watch(&client, Some("team-a"), writer, || {}, Arc::new(ClaimIndex::new(None)));
        let watching = tokio::spawn(watch.for_each(|_| futures::future::ready(())));
        let deadline = std::time::Duration::from_secs(10);
        let (request, _reply) = tokio::time::timeout(deadline, handle.next_request())
            .await
            .expect("the watch lists within 10 s")
            .expect("a request");
        watching.abort();
        assert_eq!(request.uri().path(), "/api/v1/namespaces");
        let accept = request.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
        assert_eq!(accept, Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"));
        let query = request.uri().query().unwrap_or_default();
        assert!(query.contains("fieldSelector=metadata.name%3Dteam-a"), "no field selector in {query}");
    }

    /// A copy of `obj` with `edit` applied.
    fn edited<T: Clone>(obj: &T, edit: impl FnOnce(&mut T)) -> T {
        let mut copy = obj.clone();
        edit(&mut copy);
        copy
    }

    #[test]
    fn namespace_label_changes_trigger_and_other_metadata_does_not() {
        let mut n = PartialObjectMeta::<Namespace>::default();
        n.metadata.name = Some("team-a".into());
        n.metadata.uid = Some("uid-1".into());
        n.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        let hash = |edit: fn(&mut PartialObjectMeta<Namespace>)| namespace_labels_hash(&edited(&n, edit));
        let base = namespace_labels_hash(&n);
        let other = hash(|n| {
            n.metadata.resource_version = Some("42".into());
            n.metadata.annotations = Some([("example.com/note".to_owned(), "x".to_owned())].into());
        });
        assert_eq!(other, base, "annotations and resourceVersion do not trigger");
        let relabelled = hash(|n| {
            n.metadata.labels.as_mut().unwrap().insert("team".into(), "b".into());
        });
        assert_ne!(relabelled, base, "a changed label triggers");
        let added = hash(|n| {
            n.metadata.labels.as_mut().unwrap().insert("env".into(), "prod".into());
        });
        assert_ne!(added, base, "an added label triggers");
        assert_ne!(hash(|n| n.metadata.uid = Some("uid-2".into())), base, "the namespace created again triggers");
    }

    #[test]
    fn account_spec_changes_trigger_and_status_writes_do_not() {
        let spec = serde_json::json!({"roleArn": "arn:aws:iam::111111111111:role/ads-export"});
        let mut a = ExportAccount::new("prod", serde_json::from_value(spec).unwrap());
        a.metadata.generation = Some(1);
        a.metadata.uid = Some("uid-1".into());
        let hash = |edit: fn(&mut ExportAccount)| account_spec_hash(&edited(&a, edit));
        let base = account_spec_hash(&a);
        let status = hash(|a| a.metadata.resource_version = Some("7".into()));
        assert_eq!(status, base, "a status write does not trigger");
        assert_ne!(hash(|a| a.metadata.generation = Some(2)), base, "a new generation triggers");
        assert_ne!(hash(|a| a.metadata.uid = Some("uid-2".into())), base, "the account created again triggers");
    }

    #[test]
    fn steering_annotations_trigger_and_own_writes_do_not() {
        let mut o = ContinuousExport::new("inv", ContinuousExportSpec::default());
        o.metadata.generation = Some(1);
        let base = trigger_hash(&o);
        // the controller's own writes: the status, start-pending; and other tools' annotations
        let mut own = o.clone();
        own.status = Some(ContinuousExportStatus {
            export_id: Some("e-1".into()),
            last_handled_reconcile_at: Some("1".into()),
            ..Default::default()
        });
        own.metadata.annotations = Some(
            [(START_PENDING_ANNOTATION.to_owned(), "t".to_owned()), ("example.com/note".to_owned(), "x".to_owned())]
                .into(),
        );
        own.metadata.finalizers = Some(vec![crate::api::FINALIZER.to_owned()]);
        assert_eq!(trigger_hash(&own), base, "no reconcile for the controller's own writes");
        let mut deleting = own.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        assert_ne!(trigger_hash(&deleting), base, "a deletion triggers a reconcile");
        for (key, value) in [(PAUSED_ANNOTATION, "true"), (RECONCILE_REQUESTED_ANNOTATION, "1")] {
            let mut user = own.clone();
            user.metadata.annotations.as_mut().unwrap().insert(key.to_owned(), value.to_owned());
            assert_ne!(trigger_hash(&user), base, "{key} triggers a reconcile");
            let mut changed = user.clone();
            changed.metadata.annotations.as_mut().unwrap().insert(key.to_owned(), "2".to_owned());
            assert_ne!(trigger_hash(&changed), trigger_hash(&user), "a new value of {key} triggers again");
        }
    }
}
