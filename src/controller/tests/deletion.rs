//! The finalizer and deletion, regressions, a vanished export, and the paths found by review.

use super::*;

// ---------------------------------------------------------------------------
// Finalizer and deletion
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_finalizer_is_added_and_the_same_pass_applies() {
    let with = object();
    let mut obj = with.clone();
    obj.metadata.finalizers = None;
    obj.spec.stopped = true;
    let mut stored = with.clone();
    stored.spec.stopped = true;
    let ads = FakeAds::new();
    // The patch's answer (the object with the finalizer) is what the pass goes on with,
    // as fresh as a read: no GET, and no second reconcile waits for the patch's watch event.
    let (client, server) = apiserver(vec![Expect::json_patch(&stored), Expect::apply_status(&stored)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), []);
    assert_eq!(
        seen.requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    assert_cond(&seen.requests[1].applied_status(), CONDITION_READY, "True", "NotStarted");
}

#[tokio::test]
async fn a_finalizer_is_appended_after_the_others_it_tests() {
    let mut obj = object();
    obj.metadata.finalizers = Some(vec!["example.com/other".into()]);
    obj.spec.stopped = true;
    let mut stored = obj.clone();
    stored.metadata.finalizers = Some(vec!["example.com/other".into(), FINALIZER.into()]);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&stored), Expect::apply_status(&stored)]);
    let ctx = context(client, &ads);
    run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(
        seen.requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": ["example.com/other"]},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    );
}

#[tokio::test]
async fn deleting_without_our_finalizer_does_nothing() {
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    obj.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert!(seen.requests.is_empty(), "never re-add a finalizer to an object being deleted");
    assert_eq!(ads.take_calls(), []);
}

#[tokio::test]
async fn delete_with_retain_leaves_the_export_and_releases_the_finalizer() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Retain);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [], "Retain: no AWS call");
    assert_eq!(
        seen.requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Retained".into())]);
}

#[tokio::test]
async fn delete_stops_an_active_export_then_releases_the_finalizer() {
    let mut obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    obj.metadata.finalizers = Some(vec!["example.com/other".into(), FINALIZER.into()]);
    let ads = FakeAds::new();
    let times = StopTimes { start_time: Some(ts(SAMPLE_START)), stop_time: Some(ts("2026-02-01T08:00:00.000Z")) };
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(times));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    ads.assert_drained();
    assert_eq!(
        seen.requests[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/1"},
        ]),
        "only our finalizer, at its index"
    );
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Stopped".into())]);
}

#[tokio::test]
async fn delete_of_a_vanished_export_releases_the_finalizer() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    // Not listed (maybe just too soon after Start): a Stop settles it.
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::NotFound, "no such export"))).on_stop(Err(ads_error(
        Operation::Stop,
        Reason::NotFound,
        "no such export",
    )));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    assert_eq!(seen.requests.len(), 1);
}

#[tokio::test]
async fn delete_of_a_starting_export_keeps_the_finalizer() {
    let obj = deleting(with_status(object(), managed("e-1", ads::START_IN_PROGRESS)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    let err = result.expect_err("cleanup must fail so the finalizer stays");
    match err {
        Error::Finalizer(e) => match *e {
            kube::runtime::finalizer::Error::CleanupFailed(Error::Waiting(msg)) => {
                assert!(msg.contains("still starting"), "{msg}");
            }
            other => panic!("unexpected finalizer error {other:?}"),
        },
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Stop while starting");
    // a normal wait: Reconciling says so, Synced is not a failure, no Warning event
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_RECONCILING, "True", "Deleting");
    assert!(cond(&status, CONDITION_RECONCILING).message.starts_with("deleting: "));
    assert!(status.condition(CONDITION_SYNCED).is_none(), "no Synced failure written");
    assert!(seen.event_reasons().is_empty(), "{:?}", seen.event_reasons());
}

#[tokio::test]
async fn delete_with_a_pending_start_stops_the_export_it_created() {
    // Crashed between Start and the status write, then deleted.
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    let since = "2026-03-01T12:00:00.000Z";
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), since.into())].into());
    let mut created = export("e-orphan", ads::ACTIVE);
    created.start_time = Some(ts("2026-03-01T12:00:00.300Z"));
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![created.clone()])).on_describe(Ok(created)).on_stop(Ok(StopTimes::default()));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    // no Describe for the times after the Stop: the object is going away
    assert_eq!(ads.take_calls(), [Call::List, describe("e-orphan"), stop("e-orphan")]);
}

// ---------------------------------------------------------------------------
// Kubernetes failures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn failed_pending_patch_aborts_before_start() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj).fails(409, "Conflict")]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    let err = result.expect_err("a failed annotation write is a reconcile error");
    assert!(
        matches!(&err, Error::Finalizer(e) if matches!(**e, kube::runtime::finalizer::Error::ApplyFailed(Error::Kube(_)))),
        "{err:?}"
    );
    assert_eq!(ads.take_calls(), [Call::List], "never Start without the pending annotation");
}

#[tokio::test]
async fn status_write_of_a_deleted_object_is_not_an_error() {
    let obj = with_status(object(), ContinuousExportStatus { export_id: Some("e-1".into()), ..Default::default() });
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj).fails(404, "NotFound")]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    assert_eq!(result.expect("404 on the status write is ignored"), Action::requeue(RESYNC));
}

// ---------------------------------------------------------------------------
// Regressions: bugs these tests found, now fixed.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn fresh_read_keeps_the_stored_conditions() {
    // The apiserver stores a settled status whose conditions date from T0; the cached
    // copy handed to reconcile has no status yet.
    let mut stored = settled_status("e-1").await;
    for c in &mut stored.conditions {
        c.last_transition_time = Time(ts("2026-01-01T00:00:00Z"));
    }
    let fresh = with_status(object(), stored);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    // ADS still reports what is stored: nothing to write (the status is written only when it changed).
    let (client, server) = apiserver(vec![Expect::get(&fresh)]);
    let result = run(&object(), &context(client, &ads)).await;
    let seen = server.finish().await; // today: an unexpected PATCH .../status with lastTransitionTime = now
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(seen.requests.len(), 1);
}

#[tokio::test]
async fn delete_after_a_successful_stop_does_not_depend_on_the_times_describe() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(StopTimes::default())).on_describe(Err(ads_error(
        Operation::Describe,
        Reason::Throttled,
        "Rate exceeded",
    )));
    // The export is stopping: the finalizer should go.
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let result = run(&obj, &context(client, &ads)).await;
    server.finish().await; // today: PATCH .../status (Synced=False Throttled) instead of the finalizer patch
    assert_eq!(result.expect("cleanup succeeded"), Action::await_change());
}

#[test]
fn debug_duration_parser() {
    assert_eq!(parse_debug_duration("Action { requeue_after: Some(4.5s) }"), Some(Duration::from_millis(4500)));
    assert_eq!(parse_debug_duration("Action { requeue_after: Some(750ms) }"), Some(Duration::from_millis(750)));
    assert_eq!(parse_debug_duration("Action { requeue_after: None }"), None);
    assert_eq!(parse_debug_duration("Action { requeue_after: Some(4.000000001s) }"), Some(Duration::new(4, 1)));
}

// ---------------------------------------------------------------------------
// A managed export that vanished from ADS
// ---------------------------------------------------------------------------

#[tokio::test]
async fn vanished_export_is_stalled_and_not_ready() {
    let obj = with_status(object(), managed("e-1", ads::ACTIVE));
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::NotFound, "no such export")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC), "looked at again: it may show up");
    let status = seen.requests[0].applied_status();
    // the last known ACTIVE must not read as Ready next to Stalled
    assert_cond(&status, CONDITION_READY, "False", "NotFound");
    assert_cond(&status, CONDITION_STALLED, "True", "NotFound");
    assert!(cond(&status, CONDITION_STALLED).message.contains("delete this ContinuousExport"));
    assert_eq!(seen.event_reasons(), [("Warning".into(), "NotFound".into())]);
}

#[tokio::test]
async fn vanished_export_counts_as_stopped_when_stopped_is_asked() {
    let mut obj = with_status(object(), managed("e-1", ads::ACTIVE));
    obj.spec.stopped = true;
    let ads = FakeAds::new();
    // Not listed may be not listed yet: a Stop settles it, and its NotFound means gone.
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::NotFound, "no such export"))).on_stop(Err(ads_error(
        Operation::Stop,
        Reason::NotFound,
        "no such export",
    )));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "ExportGone");
    assert_eq!(status.export_status, None, "no stale ACTIVE");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_SYNCED, "True", "Synced");
}

// ---------------------------------------------------------------------------
// Paths found by review: deletion without a region, Stop/Describe NotFound,
// STOP_FAILED, retry times while deleting, export-state stalls, deleting claimants
// ---------------------------------------------------------------------------

#[tokio::test]
async fn delete_without_a_region_keeps_the_finalizer_of_a_managed_export() {
    let mut obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    obj.metadata.generation = Some(2); // deletion bumped it
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = Arc::new(Context::new(client, ads.clone(), Settings { default_region: None, ..settings() }));
    let err = cleanup_error(run(&obj, &ctx).await);
    let seen = server.finish().await;
    assert!(matches!(err, Error::Retry { .. }), "{err:?}");
    assert_eq!(ads.take_calls(), [], "no region: no call, and no finalizer removal either");
    let status = seen.requests[0].applied_status();
    assert_eq!(status.observed_generation, Some(2));
    assert_cond(&status, CONDITION_SYNCED, "False", "UnknownError");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("--aws-region") && msg.contains("retry 1 in "), "{msg}");
}

#[tokio::test]
async fn delete_without_a_region_or_an_export_releases_the_finalizer() {
    let obj = deleting(object(), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = Arc::new(Context::new(client, ads.clone(), Settings { default_region: None, ..settings() }));
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), []);
}

#[tokio::test]
async fn delete_failure_states_the_retry_time_and_warns_once_per_reason() {
    let obj = deleting(with_status(object(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::ServerError, "try later")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let before = Timestamp::now();
    let err = cleanup_error(run(&obj, &ctx).await);
    let seen = server.finish().await;
    let Error::Retry { retry_in, .. } = &err else { panic!("{err:?}") };
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "ServerError");
    let at = retry_at(&cond(&status, CONDITION_SYNCED).message);
    let at_ms = at.duration_since(before).as_millis();
    assert!((3_900..=5_100).contains(&at_ms), "retry time {at_ms} ms ahead, delay {retry_in:?}");
    assert_eq!(seen.event_reasons(), [("Warning".into(), "ServerError".into())]);

    // The error policy requeues after exactly the stated delay.
    let ctx = reuse(ctx, apiserver(vec![]).0);
    let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(err)));
    let Error::Finalizer(inner) = &wrapped else { unreachable!() };
    let kube::runtime::finalizer::Error::CleanupFailed(Error::Retry { retry_in, .. }) = &**inner else {
        unreachable!()
    };
    assert_eq!(super::error_policy(Arc::new(obj.clone()), &wrapped, ctx.clone()), Action::requeue(*retry_in));

    // The same failure again: a new retry time is written, but no second Warning.
    let obj = with_status(obj, status);
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::ServerError, "try later")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    cleanup_error(run(&obj, &ctx).await);
    let seen = server.finish().await;
    assert!(cond(&seen.requests[0].applied_status(), CONDITION_SYNCED).message.contains("retry 2 in"));
    assert!(seen.event_reasons().is_empty(), "{:?}", seen.event_reasons());
}

#[tokio::test]
async fn delete_stops_a_stop_failed_export() {
    let obj = deleting(with_status(object(), managed("e-1", ads::STOP_FAILED)), DeletionPolicy::Delete);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::STOP_FAILED))).on_stop(Ok(StopTimes::default()));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
}

#[tokio::test]
async fn stop_answering_not_found_counts_as_stopped() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Err(ads_error(
        Operation::Stop,
        Reason::NotFound,
        "no such export",
    )));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "ExportGone");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_eq!(status.export_status, None);
}

#[tokio::test]
async fn describe_not_found_right_after_start_is_a_transition() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Err(ads_error(
        Operation::Describe,
        Reason::NotFound,
        "not listed yet",
    )));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(POLL_MIN));
    let seen = server.finish().await;
    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"));
    assert_eq!(status.export_status.as_deref(), Some(ads::START_IN_PROGRESS));
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Transitioning");
}

#[tokio::test]
async fn stop_failed_export_is_stopped_again_on_a_doubling_schedule() {
    let key = "0b5f5d3c-uid";
    let mut obj = stopping_object();
    obj.status = Some(managed("e-1", ads::STOP_FAILED));
    let ads = FakeAds::new();
    let times = StopTimes { start_time: Some(ts(SAMPLE_START)), stop_time: Some(ts("2026-02-01T08:00:00.000Z")) };
    ads.on_describe(Ok(export("e-1", ads::STOP_FAILED))).on_stop(Ok(times.clone()));
    ads.on_describe(Ok(export("e-1", ads::STOP_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let first = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1"), describe("e-1")]);
    requeue_delay_between(&first, Duration::from_secs(4), Duration::from_secs(5));
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_cond(&status, CONDITION_SYNCED, "False", "StopFailed");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("STOP_FAILED detail"));
    assert_cond(&status, CONDITION_RECONCILING, "True", "StopFailed");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");

    // Stopping again: a successful poll does not reset the failure count ...
    let obj = with_status(obj, status);
    ads.on_describe(Ok(export("e-1", ads::STOP_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(ctx.backoff.attempts(key).failures, 1);

    // ... so a second STOP_FAILED waits twice as long before the next look.
    let obj = with_status(obj, seen.requests[0].applied_status());
    ads.on_describe(Ok(export("e-1", ads::STOP_FAILED))).on_stop(Ok(times));
    ads.on_describe(Ok(export("e-1", ads::STOP_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    let third = run(&obj, &ctx).await.expect("reconcile");
    server.finish().await;
    requeue_delay_between(&third, Duration::from_secs(8), Duration::from_secs(10));
    assert_eq!(ads.take_calls(), [describe("e-1"), describe("e-1"), stop("e-1"), describe("e-1")]);
}

#[tokio::test]
async fn stall_on_the_export_state_is_described_again_at_resync() {
    let obj = with_status(object(), managed("e-1", ads::ACTIVE));
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ERROR)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "True", "ExportError");

    // Same generation, still stalled: ADS is asked again, and a recovery shows.
    let obj = with_status(obj, status);
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::requeue(RESYNC));
    let seen = server.finish().await;
    assert_eq!(ads.take_calls(), [describe("e-1"), describe("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "Active");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
}

#[tokio::test]
async fn adopting_an_export_whose_manager_is_being_deleted_waits() {
    let mut obj = object();
    obj.spec.export_id = Some("e-1".into());
    let leaving = deleting(other_object("old", "e-1"), DeletionPolicy::Retain);
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![leaving]);
    let action = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_ne!(action, Action::await_change(), "retried, not stalled");
    assert_eq!(ads.take_calls(), []);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "ResourceInUse");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("team-a/old, which is being deleted"));
}

#[tokio::test]
async fn pending_start_never_takes_the_export_of_an_object_being_deleted() {
    // Crashed before Start, then deleted; meanwhile another object, itself being
    // deleted with Retain, manages the only running export.
    let mut obj = deleting(object(), DeletionPolicy::Delete);
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    let mut theirs = export("e-theirs", ads::ACTIVE);
    theirs.start_time = Some(ts("2026-03-01T12:00:00.300Z"));
    let leaving = deleting(other_object("old", "e-theirs"), DeletionPolicy::Retain);
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![theirs]));
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let ctx = context_with_cache(client, &ads, vec![leaving]);
    assert_eq!(run(&obj, &ctx).await.expect("reconcile"), Action::await_change());
    server.finish().await;
    assert_eq!(ads.take_calls(), [Call::List], "no Stop of another object's export");
}

// ---------------------------------------------------------------------------
