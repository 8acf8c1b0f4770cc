//! Running the controller: the start-up check ([`preflight`]), the watch and its
//! trigger filter, and [`run`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::annotations;
use super::claim_index::ClaimIndex;
use super::context::{Context, ReconcileObserver, Settings};
use super::error::error_policy;
use super::info::INFO_LABEL;
use super::reconcile::reconcile;
use crate::ads::ExportService;
use crate::ads::shared::{Changed, SharedListing};
use crate::api::ContinuousExport;

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
            tracing::warn!(error = %e, "watch of the connection-info ConfigMaps failed (does the operator's RBAC grant list and watch on configmaps?)");
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

/// The watch trigger filter: a new generation (spec change or deletion marking), a
/// finalizer change, or a change of the steering annotations (`adsexport.io/paused`,
/// `adsexport.io/reconcile-requested-at`, which do not bump the generation). Status
/// writes and the `start-pending` annotation, the controller's own writes, do not
/// trigger a reconcile; requeues handle polling.
fn trigger_hash(obj: &ContinuousExport) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    obj.finalizers().hash(&mut h);
    obj.meta().deletion_timestamp.is_some().hash(&mut h);
    annotations::steering(obj).hash(&mut h);
    Some(h.finish())
}

/// What the watch cache keeps of an object: everything but `metadata.managedFields`
/// and the annotations of other tools (e.g. `kubectl.kubernetes.io/last-applied-configuration`,
/// often as large as the object); only this operator's `adsexport.io/` annotations are
/// read. Status writes are server-side applies of the status alone and the finalizer
/// patch touches only `metadata.finalizers`, so nothing written is derived from the
/// dropped fields.
pub fn slim(obj: &mut ContinuousExport) {
    obj.metadata.managed_fields = None;
    if let Some(annotations) = obj.metadata.annotations.as_mut() {
        annotations.retain(|k, _| k.starts_with(OWN_ANNOTATION_PREFIX));
    }
}

/// The prefix of the annotations this operator reads (`adsexport.io/start-pending`,
/// `adsexport.io/paused`, `adsexport.io/reconcile-requested-at`).
const OWN_ANNOTATION_PREFIX: &str = "adsexport.io/";

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
    let synced = Arc::new(AtomicBool::new(false));
    let mark_synced = synced.clone();
    let shutdown = shutdown.shared();
    let claims =
        Arc::new(ClaimIndex::new(settings.default_region.clone()).with_home_region(settings.home_region.clone()));
    let index = claims.clone();
    let trigger = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(e) = event {
                index.apply(e);
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
    let changed = reconciles_on_change(ads.changes(), claims.clone());
    let (info_cache, info_writer) = reflector::store();
    let info = info_watch(scoped_config_maps(&client, settings.namespace.as_deref()), info_writer);
    let mut ctx = Context::new(client, ads, settings);
    ctx.claims = claims;
    ctx.info_cache = info_cache;
    ctx.observer = observer;
    tracing::info!(namespace = ctx.settings.namespace.as_deref().unwrap_or("<all>"), "controller starting");
    let controller = Controller::for_stream(trigger, reader)
        .owns_stream(info)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .reconcile_on(changed)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        });
    tokio::select! {
        () = controller => tracing::info!("controller stopped"),
        () = shutdown_before_sync(shutdown, synced) => tracing::info!("controller stopped before the watch cache synced"),
    }
    Ok(())
}

/// The objects to reconcile at once because the transition watch saw their export
/// change (docs/architecture.md, "Reads at scale"): every object that claims it.
fn reconciles_on_change(
    changes: impl Stream<Item = Changed> + Send + 'static,
    claims: Arc<ClaimIndex>,
) -> impl Stream<Item = ObjectRef<ContinuousExport>> + Send + 'static {
    changes.flat_map(move |c| {
        let objects = claims.claimants(&c.export_id);
        futures::stream::iter(objects.into_iter().map(|(ns, name)| ObjectRef::new(&name).within(&ns)))
    })
}

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
        assert_eq!(trigger_hash(&own), base, "no reconcile for the controller's own writes");
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
