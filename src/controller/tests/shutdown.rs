//! [`super::super::run::run`] and shutdown: a SIGTERM while the watch cache's first
//! list is still unanswered ends the controller instead of hanging it.

use super::*;

/// The preflight list is answered; the watcher's first list never is, so the watch
/// cache never syncs. A shutdown that has already happened must still end `run`.
#[tokio::test]
async fn shutdown_before_the_first_sync_ends_the_controller() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let apiserver = tokio::spawn(async move {
        let mut held = Vec::new(); // unanswered requests stay pending, not refused
        let mut requests = 0;
        while let Some((request, send)) = handle.next_request().await {
            requests += 1;
            let preflight = request.uri().query().is_some_and(|q| q.contains("limit=1"));
            if preflight && requests == 1 {
                let list = json!({"apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExportList",
                    "metadata": {"resourceVersion": "1"}, "items": []});
                send.send_response(Response::new(Body::from(serde_json::to_vec(&list).unwrap())));
            } else {
                held.push(send);
            }
        }
        requests
    });
    let run = super::super::run::run(client, FakeAds::new(), settings(), None, std::future::ready(()));
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await;
    assert!(ended.is_ok(), "run did not end within 10 s of a shutdown before the first sync");
    ended.unwrap().expect("run ends without an error");
    apiserver.abort();
}

/// Signals the first sync of the `ContinuousExport` watch cache.
struct OnSynced(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>);

impl super::super::ReconcileObserver for OnSynced {
    fn reconciled(&self, _: &'static str, _: Duration) {}
    fn export_status(&self, _: &str, _: Option<&str>) {}
    fn deleted(&self, _: &str) {}
    fn synced(&self) {
        if let Some(tx) = self.0.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

/// No account is ever connected or verified: nothing is listed.
struct NoAccounts;

impl super::super::accounts::Connector<FakeAds> for NoAccounts {
    fn connect<'a>(
        &'a self,
        _: &'a str,
        _: &'a crate::api::ExportAccountSpec,
    ) -> futures::future::BoxFuture<'a, super::super::accounts::Connection<FakeAds>> {
        unreachable!("no ExportAccount is listed")
    }
}

impl super::super::export_account::Verifier for NoAccounts {
    fn verify<'a>(
        &'a self,
        _: &'a str,
        _: &'a crate::api::ExportAccountSpec,
    ) -> futures::future::BoxFuture<'a, Result<crate::ads::assume::CallerIdentity, String>> {
        unreachable!("no ExportAccount is listed")
    }
}

/// With the `ExportAccount` reconciler: the preflights and the `ContinuousExport`
/// watch's first list are answered (that cache syncs), the `ExportAccount` lists never
/// are (e.g. a selector the apiserver rejects, or RBAC), so the reconciler's cache never
/// syncs. A shutdown after the first sync must still end `run_with_accounts`.
#[tokio::test]
async fn shutdown_before_the_account_cache_syncs_ends_the_operator() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let apiserver = tokio::spawn(async move {
        let mut held = Vec::new(); // unanswered requests stay pending, not refused
        while let Some((request, send)) = handle.next_request().await {
            let query = request.uri().query().unwrap_or_default().to_owned();
            let path = request.uri().path().to_owned();
            let preflight = query.split('&').any(|p| p == "limit=1");
            let export_list = path.ends_with("/continuousexports") && !query.contains("watch=true");
            let kind = if path.ends_with("/exportaccounts") { "ExportAccountList" } else { "ContinuousExportList" };
            if preflight || export_list {
                let list = json!({"apiVersion": "adsexport.io/v1alpha1", "kind": kind,
                    "metadata": {"resourceVersion": "1"}, "items": []});
                send.send_response(Response::new(Body::from(serde_json::to_vec(&list).unwrap())));
            } else {
                held.push(send);
            }
        }
    });
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let observer = Arc::new(OnSynced(std::sync::Mutex::new(Some(synced_tx))));
    let support = super::super::run::AccountSupport { connector: Arc::new(NoAccounts), verifier: Arc::new(NoAccounts) };
    let settings = Settings { reconcile_accounts: true, ..settings() };
    let shutdown = async move {
        let _ = synced_rx.await;
    };
    let run =
        super::super::run::run_with_accounts(client, FakeAds::new(), Some(support), settings, Some(observer), shutdown);
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await;
    assert!(ended.is_ok(), "run_with_accounts did not end within 10 s of a shutdown before the accounts synced");
    ended.unwrap().expect("run_with_accounts ends without an error");
    apiserver.abort();
}
