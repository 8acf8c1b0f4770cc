//! One start in flight per region, START_FAILED, and the `start-pending` value.

use super::*;

// One start in flight per region
// ---------------------------------------------------------------------------

/// Another object, older than [`object`], whose start is pending (annotation, no status).
fn pending_object(name: &str) -> ContinuousExport {
    let mut o = other_object(name, "unused");
    o.status = None;
    o.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    o
}

#[test]
fn start_gate_holds_a_region_for_one_object() {
    let gate = super::StartGate::default();
    let a = gate.enter("operator", "us-west-2", "ns/a").expect("free");
    assert_eq!(gate.enter("operator", "us-west-2", "ns/b").err().as_deref(), Some("ns/a"), "held by a");
    assert!(gate.enter("operator", "eu-west-1", "ns/b").is_ok(), "another region");
    assert!(gate.enter("111111111111", "us-west-2", "ns/c").is_ok(), "another account's region");
    drop(a);
    assert!(gate.enter("operator", "us-west-2", "ns/b").is_ok(), "free again");
}

#[tokio::test]
async fn a_start_waits_while_another_object_has_a_pending_start_in_the_region() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![pending_object("old")]);
    let action = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(action, Action::requeue(POLL_MIN), "a wait is polled, not backed off as a failure");
    assert_eq!(ads.take_calls(), [Call::List], "no Start, no annotation");
    let status = seen.requests[1].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "ResourceInUse");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("pending start of ContinuousExport team-a/old"));
    let msg = &cond(&status, CONDITION_RECONCILING).message;
    assert!(msg.contains("looking again in 250ms (at "), "{msg}");
}

#[tokio::test]
async fn a_pending_start_does_not_take_an_export_while_an_older_one_is_pending() {
    // Both objects' starts went unanswered; the export that showed up may be either's:
    // the older object resolves first, this one waits (and, being deleted, stops nothing).
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    let since = "2026-03-01T12:00:00.000Z";
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), since.into())].into());
    let mut created = export("e-x", ads::ACTIVE);
    created.start_time = Some(ts("2026-03-01T12:00:01.000Z"));
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![created]));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![pending_object("old")]);
    let err = cleanup_error(run(&obj, &ctx).await);
    server.finish().await;
    assert!(matches!(err, Error::Waiting(ref m) if m.contains("team-a/old")), "{err:?}");
    assert_eq!(ads.take_calls(), [Call::List], "no Stop");
}

// ---------------------------------------------------------------------------
// START_FAILED: start anew, with backoff
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_start_failed_export_is_let_go_and_a_new_one_started_with_backoff() {
    let obj = with_status(object(), managed("e-1", ads::START_IN_PROGRESS));
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_FAILED)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let first = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    requeue_delay_between(&first, Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Start in the same pass");
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_id, None, "the failed export is let go");
    assert_eq!(status.status_detail.as_deref(), Some("START_FAILED detail"));
    assert_cond(&status, CONDITION_SYNCED, "False", "StartFailed");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("export e-1 is START_FAILED"));
    assert_eq!(seen.event_reasons(), [("Warning".into(), "StartFailed".into())]);

    // The retry starts a new export; it fails to start too: the delay doubles.
    let obj = with_status(object(), status);
    ads.on_list(Ok(vec![export("e-1", ads::START_FAILED)]))
        .on_start(Ok(started("e-2")))
        .on_describe(Ok(export("e-2", ads::START_FAILED)));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = reuse(ctx, client);
    let second = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    requeue_delay_between(&second, Duration::from_secs(8), Duration::from_secs(10));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-2")]);
    assert_eq!(seen.requests[2].pending_value(), &Value::Null, "that start settled: annotation removed");
    assert_eq!(seen.requests[3].applied_status().export_id, None);
}

#[tokio::test]
async fn an_adopted_start_failed_export_stalls() {
    let mut obj = with_status(object(), managed("e-1", ads::START_IN_PROGRESS));
    obj.spec.export_id = Some("e-1".into());
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_FAILED)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"), "spec.exportId names it: kept");
    assert_cond(&status, CONDITION_STALLED, "True", "StartFailed");
}

#[tokio::test]
async fn stopping_an_export_not_listed_yet_still_stops_it() {
    let mut obj = with_status(object(), managed("e-1", ads::ACTIVE));
    obj.spec.stopped = true;
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::NotFound, "not listed")))
        .on_stop(Ok(StopTimes::default()));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(POLL_MIN), "polls");
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_cond(&status, CONDITION_READY, "False", "StopInProgress");
}

#[tokio::test]
async fn a_start_pending_value_from_before_the_object_existed_is_dropped() {
    // Copied with a manifest; a retained export is running and unclaimed.
    let mut obj = object(); // created 2026-01-01
    obj.spec.stopped = true;
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2025-06-01T00:00:00.000Z".into())].into());
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [], "nothing recovered, nothing stopped");
    assert_eq!(seen.requests[1].pending_value(), &Value::Null, "dropped");
    assert_cond(&seen.requests[2].applied_status(), CONDITION_READY, "True", "NotStarted");
}

#[tokio::test]
async fn an_adopting_object_never_has_a_pending_start() {
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    obj.spec.export_id = Some("export-typo".into());
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), [], "no List, no Stop of an unrelated export");
}

#[tokio::test]
async fn a_future_start_pending_time_still_recovers_the_export() {
    let mut obj = object();
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2099-01-01T00:00:00.000Z".into())].into());
    let mut created = export("e-own", ads::ACTIVE);
    created.start_time = Some(ts("2026-01-01T00:00:05.000Z")); // after the object's creation
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![created]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj), Expect::merge_patch(&obj)]);
    let ctx = context(client, &ads);
    run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [Call::List]);
    assert_eq!(seen.requests[1].applied_status().export_id.as_deref(), Some("e-own"));
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Recovered".into())]);
}
