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
