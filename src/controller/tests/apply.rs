//! The apply branch: starting, adopting, steady state, stopping.

use super::*;

// ---------------------------------------------------------------------------
// Apply: starting
// ---------------------------------------------------------------------------

#[tokio::test]
async fn new_object_starts_once_and_records_status_before_clearing_pending() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);

    let before = Timestamp::now();
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    let action = result.expect("reconcile");

    assert_eq!(action, Action::requeue(RESYNC), "steady: resync period");
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-1")]);
    ads.assert_drained();

    let r = &seen.requests;
    // 1: the pending annotation, an RFC 3339 time, written before Start
    let pending = r[1].pending_value().as_str().expect("start-pending is a time");
    let pending = ts(pending);
    assert!(pending >= Timestamp::from_second(before.as_second()).unwrap() && pending <= Timestamp::now());
    assert!(r[1].query.iter().all(|(k, _)| k != "fieldManager"), "plain merge patch: {}", r[1].describe());
    // 2: the status, with the export's ID before the annotation goes
    let status = r[2].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"));
    assert_eq!(status.export_status.as_deref(), Some(ads::ACTIVE));
    assert_eq!(status.start_time.as_deref(), Some(SAMPLE_START));
    assert!(is_ms_rfc3339(status.start_time.as_deref().unwrap()));
    assert_eq!(status.s3_bucket.as_deref(), Some("aws-application-discovery-service-abc"));
    assert_eq!(status.database_name.as_deref(), Some("application_discovery_service_database"));
    assert_eq!(status.data_source.as_deref(), Some("AGENT"));
    assert_eq!(status.status_detail.as_deref(), Some("ACTIVE detail"));
    assert_eq!(status.observed_generation, Some(1));
    assert_cond(&status, CONDITION_READY, "True", "Active");
    assert_cond(&status, CONDITION_SYNCED, "True", "Synced");
    assert_cond(&status, CONDITION_RECONCILING, "False", "Settled");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [CONDITION_READY, CONDITION_SYNCED, CONDITION_RECONCILING, CONDITION_STALLED]);
    assert!(status.conditions.iter().all(|c| c.observed_generation == Some(1)));
    // 3: the annotation removed (merge patch null)
    assert_eq!(r[3].body, json!({"metadata": {"annotations": {START_PENDING_ANNOTATION: null}}}));

    assert_eq!(seen.event_reasons(), [("Normal".into(), "Started".into())]);
}

#[tokio::test]
async fn start_in_progress_polls_with_short_backoff() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Ok(export("e-1", ads::START_IN_PROGRESS)));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(POLL_MIN), "first poll after POLL_MIN");

    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::START_IN_PROGRESS));
    assert_cond(&status, CONDITION_READY, "False", "StartInProgress");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Transitioning");
    assert_eq!(cond(&status, CONDITION_RECONCILING).message, "export is START_IN_PROGRESS; polling until it is ACTIVE");

    // The next poll: ACTIVE now; the poll schedule is reset, steady resync.
    let obj = with_status(object(), status);
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client2, server2) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx2 = reuse(ctx, client2);
    let result = run(&obj, &ctx2).await;
    let seen = server2.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-1"), describe("e-1")]);
    assert_cond(&seen.requests[0].applied_status(), CONDITION_READY, "True", "Active");
}

#[tokio::test]
async fn start_with_home_region_not_set_clears_pending_and_backs_off() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Err(ads_error(Operation::Start, Reason::HomeRegionNotSet, "home region not set")));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = context(client, &ads);

    let before = Timestamp::now();
    let result = run(&obj, &ctx).await;
    let after = Timestamp::now();
    let seen = server.finish().await;
    let action = result.expect("AWS errors become conditions, not reconcile errors");

    assert_eq!(ads.take_calls(), [Call::List, Call::Start]);
    let r = &seen.requests;
    assert!(r[1].pending_value().is_string(), "annotation added before Start");
    assert_eq!(r[2].pending_value(), &Value::Null, "definite failure: annotation removed");

    // First retry: base 5 s less up to 20 % jitter.
    let delay = requeue_delay_between(&action, Duration::from_secs(4), Duration::from_secs(5));
    let status = r[3].applied_status();
    assert_eq!(status.export_id, None);
    assert_cond(&status, CONDITION_SYNCED, "False", "HomeRegionNotSet");
    assert_eq!(cond(&status, CONDITION_SYNCED).message, "StartContinuousExport: home region not set");
    assert_cond(&status, CONDITION_RECONCILING, "True", "HomeRegionNotSet");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_READY, "False", "Pending");
    let msg = &cond(&status, CONDITION_RECONCILING).message;
    assert!(msg.contains("retry 1 in"), "{msg}");
    let at = retry_at(msg);
    let lo = before.checked_add(delay).unwrap().checked_sub(Duration::from_millis(1)).unwrap();
    let hi = after.checked_add(delay).unwrap();
    assert!(at >= lo && at <= hi, "retry time {at} should be now + {delay:?}");

    assert_eq!(seen.event_reasons(), [("Warning".into(), "HomeRegionNotSet".into())]);

    // The retry fails the same way: the delay doubles, the status (message) is
    // rewritten, but no second Warning event.
    let obj = with_status(object(), status);
    ads.on_list(Ok(vec![])).on_start(Err(ads_error(Operation::Start, Reason::HomeRegionNotSet, "home region not set")));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = reuse(ctx, client);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(8), Duration::from_secs(10));
    let status = seen.requests[3].applied_status();
    assert!(cond(&status, CONDITION_RECONCILING).message.contains("retry 2 in"));
    assert!(seen.events.is_empty(), "same reason: no new event: {:?}", seen.event_reasons());
}

#[tokio::test]
async fn ambiguous_start_keeps_pending_and_next_reconcile_adopts_without_starting() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Err(AdsError {
        ambiguous: true,
        ..ads_error(Operation::Start, Reason::Unreachable, "operation timed out")
    }));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start]);
    let pending = seen.requests[1].pending_value().as_str().expect("pending time").to_owned();
    let status = seen.requests[2].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "Unreachable");
    assert_eq!(status.export_id, None);
    assert_eq!(seen.event_reasons(), [("Warning".into(), "Unreachable".into())]);

    // What the apiserver now stores: the annotation (never removed) and that status.
    let mut stored = with_status(object(), status);
    stored.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), pending.clone())].into());

    // The start did reach AWS: an export started just now is ACTIVE; an older stopped one is ignored.
    let mut created = export("e-new", ads::ACTIVE);
    created.start_time = Some(ts(&pending));
    let mut old = export("e-old", ads::INACTIVE);
    old.start_time = Some(ts("2020-01-01T00:00:00.000Z"));
    ads.on_list(Ok(vec![old, created]));
    let (client, server) =
        apiserver(vec![Expect::get(&stored), Expect::apply_status(&stored), Expect::merge_patch(&stored)]);
    let ctx = reuse(ctx, client);
    let result = run(&stored, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [Call::List], "no second Start, no Describe needed");
    ads.assert_drained();
    let status = seen.requests[1].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-new"));
    assert_cond(&status, CONDITION_READY, "True", "Active");
    assert_cond(&status, CONDITION_SYNCED, "True", "Synced");
    assert_eq!(seen.requests[2].pending_value(), &Value::Null, "pending resolved: annotation removed");
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Recovered".into())]);
}

#[tokio::test]
async fn pending_start_ignores_exports_started_before_the_annotation() {
    // The annotation says a start began at 12:00; the only running export started at
    // 10:00 (more than the 5 min skew earlier), so it is someone else's, and it made
    // that start fail: no Start now either (it would conflict), annotation removed.
    let mut obj = object();
    obj.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), "2026-03-01T12:00:00.000Z".into())].into());
    let mut foreign = export("e-foreign", ads::ACTIVE);
    foreign.start_time = Some(ts("2026-03-01T10:00:00.000Z"));
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![foreign]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::merge_patch(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    result.expect("reconcile");
    assert_eq!(ads.take_calls(), [Call::List]);
    assert_eq!(seen.requests[1].pending_value(), &Value::Null);
    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_id, None, "the foreign export is not adopted");
    assert_cond(&status, CONDITION_SYNCED, "False", "Conflict");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("e-foreign"));
}

#[tokio::test]
async fn conflict_on_start_names_the_active_export() {
    // Nothing running at the first look; another export started just before Start.
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![]))
        .on_start(Err(ads_error(Operation::Start, Reason::Conflict, "Conflict with an active export")))
        .on_list(Ok(vec![export("e-old", ads::INACTIVE), export("e-active", ads::ACTIVE)]));
    let (client, server) = apiserver(vec![
        Expect::get(&obj),
        Expect::merge_patch(&obj),
        Expect::merge_patch(&obj),
        Expect::apply_status(&obj),
    ]);
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, Call::List]);
    assert_eq!(seen.requests[2].pending_value(), &Value::Null, "nothing started: annotation removed");
    let status = seen.requests[3].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "Conflict");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Conflict");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("export e-active is already ACTIVE in us-west-2"), "{msg}");
    assert!(msg.contains("spec.exportId: e-active"), "{msg}");
    assert!(!msg.contains("e-old"), "{msg}");
    assert_eq!(seen.event_reasons(), [("Warning".into(), "Conflict".into())]);
}

#[tokio::test]
async fn running_export_found_before_start_is_a_conflict_without_start() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![export("e-old", ads::INACTIVE), export("e-active", ads::ACTIVE)]));
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List], "no Start, no annotation");
    let status = seen.requests[1].applied_status();
    assert_cond(&status, CONDITION_SYNCED, "False", "Conflict");
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("export e-active is already ACTIVE in us-west-2"), "{msg}");
    assert!(msg.contains("spec.exportId: e-active") && msg.contains("not sent"), "{msg}");
    assert!(msg.matches("one active export per region").count() <= 1, "said once at most: {msg}");
    assert_eq!(seen.event_reasons(), [("Warning".into(), "Conflict".into())]);
}

#[tokio::test]
async fn start_then_describe_failure_still_records_the_export_id() {
    let obj = object();
    let ads = FakeAds::new();
    ads.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Err(ads_error(
        Operation::Describe,
        Reason::Throttled,
        "Rate exceeded",
    )));
    let (client, server) = apiserver(starting(&obj));
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    requeue_delay_between(&result.expect("reconcile"), Duration::from_secs(4), Duration::from_secs(5));
    assert_eq!(ads.take_calls(), [Call::List, Call::Start, describe("e-1")]);
    let status = seen.requests[2].applied_status();
    assert_eq!(status.export_id.as_deref(), Some("e-1"));
    assert_eq!(status.export_status.as_deref(), Some(ads::START_IN_PROGRESS));
    assert_eq!(status.start_time.as_deref(), Some(SAMPLE_START));
    assert_cond(&status, CONDITION_SYNCED, "False", "Throttled");
    assert_eq!(seen.requests[3].pending_value(), &Value::Null, "exportId stored: annotation removed");
    let reasons = seen.event_reasons();
    assert_eq!(reasons, [("Normal".into(), "Started".into()), ("Warning".into(), "Throttled".into())]);
}

#[tokio::test]
async fn fresh_read_with_an_export_id_prevents_a_second_start() {
    // The watch cache lags: our object has no status, the apiserver's copy does.
    let cached = object();
    let fresh = with_status(object(), managed("e-1", ads::ACTIVE));
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::get(&fresh), Expect::apply_status(&fresh)]);
    let ctx = context(client, &ads);
    let result = run(&cached, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Start");
    assert_eq!(seen.requests[1].applied_status().export_id.as_deref(), Some("e-1"));
}

#[tokio::test]
async fn stopped_new_object_starts_nothing() {
    let mut obj = object();
    obj.spec.stopped = true;
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::get(&obj), Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), []);
    let status = seen.requests[1].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "NotStarted");
    assert_eq!(status.export_id, None);
}

#[tokio::test]
async fn adopts_spec_export_id_without_a_fresh_read_or_start() {
    let mut obj = object();
    obj.spec.export_id = Some("e-adopt".into());
    obj.spec.region = Some("eu-west-1".into());
    let ads = FakeAds::new();
    ads.script().region = "eu-west-1".into(); // spec.region wins over --aws-region
    ads.on_describe(Ok(export("e-adopt", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    // an adoption is checked again shortly for a second adopter
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(2)));
    assert_eq!(ads.take_calls(), [describe("e-adopt")]);
    assert_eq!(seen.requests[0].applied_status().export_id.as_deref(), Some("e-adopt"));
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Adopted".into())]);
}

// ---------------------------------------------------------------------------
// Apply: stalled and steady
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stalled_on_current_generation_makes_no_calls() {
    // First pass: a terminal error (Stalled, reason InvalidParameter).
    let mut obj = object();
    obj.spec.export_id = Some("e-missing".into());
    let ads = FakeAds::new();
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::InvalidParameter, "bad export ID")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "True", "InvalidParameter");
    assert_cond(&status, CONDITION_RECONCILING, "False", "InvalidParameter");
    assert!(cond(&status, CONDITION_STALLED).message.contains(
        "no retries until the spec changes or the adsexport.io/reconcile-requested-at annotation is set to a new value"
    ));
    assert_eq!(ads.take_calls(), [describe("e-missing")]);
    assert_eq!(seen.event_reasons(), [("Warning".into(), "InvalidParameter".into())]);

    // Second pass on the same generation: nothing at all.
    obj.status = Some(status.clone());
    let (client, server) = apiserver(vec![]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(ads.take_calls(), [], "no AWS call while stalled");
    assert!(seen.requests.is_empty() && seen.events.is_empty());

    // A spec change (new generation) reconciles at once.
    obj.metadata.generation = Some(2);
    ads.on_describe(Ok(export("e-missing", ads::ACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(Duration::from_secs(2)), "adoption recheck");
    assert_eq!(ads.take_calls(), [describe("e-missing")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_eq!(status.observed_generation, Some(2));
}

#[tokio::test]
async fn steady_state_describes_once_and_writes_nothing() {
    // What a first pass writes is what the apiserver stores ...
    let stored = settled_status("e-1").await;
    assert_cond(&stored, CONDITION_READY, "True", "Active");

    // ... and the next pass, with ADS unchanged, writes nothing.
    let obj = with_status(object(), stored);
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(vec![]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(RESYNC));
    assert_eq!(ads.take_calls(), [describe("e-1")], "exactly one Describe");
    assert!(seen.requests.is_empty(), "no status write: {:?}", seen.requests);
    assert!(seen.events.is_empty());
}

#[tokio::test]
async fn no_region_retries_without_aws_calls() {
    // Recoverable: spec.region cannot be added later, but restarting the operator
    // with --aws-region fixes it, so the object must not be Stalled.
    let obj = object();
    let ads = FakeAds::new();
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = Arc::new(Context::new(client, ads.clone(), Settings { default_region: None, ..settings() }));
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    let action = result.expect("reconcile");
    assert_ne!(action, Action::await_change(), "retried with backoff");
    assert_eq!(ads.take_calls(), []);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "False", "NotStalled");
    assert_cond(&status, CONDITION_RECONCILING, "True", "UnknownError");
    assert!(cond(&status, CONDITION_SYNCED).message.contains("--aws-region"));
}

#[tokio::test]
async fn out_of_band_change_is_written() {
    let mut status = managed("e-1", ads::ACTIVE);
    status.status_detail = Some("ACTIVE detail".into());
    let obj = with_status(object(), status);
    let ads = FakeAds::new();
    let mut d = export("e-1", ads::INACTIVE);
    d.stop_time = Some(ts("2026-02-01T08:00:00.123Z"));
    ads.on_describe(Ok(d));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    // Stalled (needs a human), but still described every resync: ADS may move on.
    assert_eq!(result.expect("reconcile"), Action::requeue(ctx.settings.resync_period));
    let status = seen.requests[0].applied_status();
    assert_eq!(status.stop_time.as_deref(), Some("2026-02-01T08:00:00.123Z"));
    assert_cond(&status, CONDITION_STALLED, "True", "StoppedOutsideKubernetes");
    assert_cond(&status, CONDITION_READY, "False", "Inactive");
}

// ---------------------------------------------------------------------------
// Apply: stopping
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stop_without_times_in_the_answer_takes_them_from_describe() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    let mut after = export("e-1", ads::STOP_IN_PROGRESS);
    after.stop_time = Some(ts("2026-02-01T08:00:00.5Z"));
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(StopTimes::default())).on_describe(Ok(after));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);

    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(POLL_MIN), "poll the stop");
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1"), describe("e-1")]);
    ads.assert_drained();
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_eq!(status.stop_time.as_deref(), Some("2026-02-01T08:00:00.500Z"));
    assert_eq!(status.start_time.as_deref(), Some(SAMPLE_START));
    assert_eq!(status.observed_generation, Some(2));
    assert_cond(&status, CONDITION_READY, "False", "StopInProgress");
    assert_cond(&status, CONDITION_RECONCILING, "True", "Transitioning");
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Stopped".into())]);

    // Next poll: INACTIVE, Ready; no second Stop.
    let obj = with_status(stopping_object(), status);
    let mut done = export("e-1", ads::INACTIVE);
    done.stop_time = Some(ts("2026-02-01T08:00:00.5Z"));
    ads.on_describe(Ok(done));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = reuse(ctx, client);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change(), "INACTIVE is terminal: no resync");
    assert_eq!(ads.take_calls(), [describe("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_READY, "True", "Stopped");
    assert_cond(&status, CONDITION_RECONCILING, "False", "Settled");
}

#[tokio::test]
async fn stop_takes_the_times_of_its_answer_and_the_look_right_after() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    let times =
        StopTimes { start_time: Some(ts("2017-04-28T18:43:25.640Z")), stop_time: Some(ts("2026-02-01T08:00:01.001Z")) };
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(times));
    ads.on_describe(Ok(export("e-1", ads::STOP_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(POLL_MIN));
    assert_eq!(ads.take_calls(), [describe("e-1"), stop("e-1"), describe("e-1")]);
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_eq!(status.start_time.as_deref(), Some(SAMPLE_START), "the look's, where it has one");
    assert_eq!(status.stop_time.as_deref(), Some("2026-02-01T08:00:01.001Z"), "the answer's, the look has none");
}

#[tokio::test]
async fn a_stop_that_ends_at_once_is_written_inactive_in_the_same_pass() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    let times = StopTimes { start_time: Some(ts(SAMPLE_START)), stop_time: Some(ts("2026-02-01T08:00:01.001Z")) };
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(times));
    ads.on_describe(Ok(export("e-1", ads::INACTIVE)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::await_change(), "INACTIVE is terminal: no resync");
    assert_eq!(seen.requests.len(), 1, "one status write for the whole stop");
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::INACTIVE));
    assert!(status.stop_time.is_some());
    assert_cond(&status, CONDITION_READY, "True", "Stopped");
    assert_eq!(seen.event_reasons(), [("Normal".into(), "Stopped".into())]);
}

#[tokio::test]
async fn a_failed_look_after_a_timed_stop_keeps_stop_in_progress_without_an_error() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    let times = StopTimes { start_time: Some(ts(SAMPLE_START)), stop_time: Some(ts("2026-02-01T08:00:01.001Z")) };
    ads.on_describe(Ok(export("e-1", ads::ACTIVE))).on_stop(Ok(times));
    ads.on_describe(Err(ads_error(Operation::Describe, Reason::Throttled, "Rate exceeded")));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    let seen = server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(POLL_MIN), "the transition's poll, not a failure backoff");
    let status = seen.requests[0].applied_status();
    assert_eq!(status.export_status.as_deref(), Some(ads::STOP_IN_PROGRESS));
    assert_cond(&status, CONDITION_SYNCED, "True", "Synced");
}

#[tokio::test]
async fn stop_waits_for_a_starting_export() {
    let obj = stopping_object();
    let ads = FakeAds::new();
    ads.on_describe(Ok(export("e-1", ads::START_IN_PROGRESS)));
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let ctx = context(client, &ads);
    let result = run(&obj, &ctx).await;
    server.finish().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(POLL_MIN));
    assert_eq!(ads.take_calls(), [describe("e-1")], "no Stop before ACTIVE");
}
