//! AWS call counts at scale (docs/architecture.md, "Reads at scale"): reconciles read
//! their export from one shared listing per region, so Describe calls grow with the
//! region's pages, not with the object count. Counts, never timings.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ads_export_operator::ads::Operation;
use ads_export_operator::api::{CONDITION_READY, CONDITION_RECONCILING};
use ads_export_operator::controller::ReconcileObserver;
use ads_export_operator::emulator::{Fault, FaultKind};
use futures::StreamExt;
use kube::api::DeleteParams;
use serde_json::json;

use super::harness::*;
use super::support;

/// `n` exports started and stopped through the SDK (as the console would): INACTIVE.
async fn stopped_exports(t: &Test, n: usize) -> Vec<String> {
    let ads = t.out_of_band_client();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ads.start_continuous_export().send().await.unwrap().export_id().unwrap().to_owned();
        ads.stop_continuous_export().export_id(&id).send().await.unwrap();
        ids.push(id);
    }
    ids
}

fn describes(t: &Test) -> u64 {
    t.emu.emulator.calls(Operation::Describe.name())
}

/// Creates `inv-0..` adopting `ids` with `stopped: true` (8 at a time).
async fn create_adopters(t: &Test, ids: &[String]) {
    futures::stream::iter(ids.iter().enumerate())
        .for_each_concurrent(8, |(i, id)| async move {
            t.create(&format!("inv-{i}"), json!({"exportId": id, "stopped": true})).await;
        })
        .await;
}

/// Waits until every object `name-0..n` is Ready on its generation (8 at a time).
async fn wait_all_ready(t: &Test, prefix: &str, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(8, |i| async move {
            t.wait_ready(&format!("{prefix}-{i}")).await;
        })
        .await;
}

#[tokio::test]
async fn steady_resyncs_of_250_stopped_objects_cost_nothing_and_the_running_one_shares_one_listing() {
    const N: usize = 250;
    let t = Test::new("scale-steady", cfg()).await;
    let ids = stopped_exports(&t, N).await;
    let reconciles = Arc::new(Reconciles::default());
    let period = Duration::from_secs(3);
    let _op =
        t.operator_observed(|s| s.resync_period = period, Some(reconciles.clone() as Arc<dyn ReconcileObserver>)).await;
    create_adopters(&t, &ids).await;
    // One running export beside them (the region's one): it resyncs every period.
    t.create("run", json!({})).await;
    wait_all_ready(&t, "inv", N).await;
    t.wait_status("run", "ACTIVE and settled", |s| {
        s.is_true(CONDITION_READY) && !s.is_true(CONDITION_RECONCILING) && s.export_status.as_deref() == Some("ACTIVE")
    })
    .await;
    // Each adopter has its adoption pass and, 2 s later, its recheck for a second adopter.
    support::wait_for("each adopter's two passes", DEADLINE, || async {
        (reconciles.0.load(Ordering::SeqCst) >= 2 * N as u64).then_some(())
    })
    .await;

    // Steady state, three periods: the running object's resyncs read the region's
    // listing, ceil(251 / 100) = 3 pages, at most once per period; the INACTIVE objects
    // (terminal in ADS) are not resynced at all.
    let (d0, r0, t0) = (describes(&t), reconciles.0.load(Ordering::SeqCst), std::time::Instant::now());
    support::wait_for("three listings of the region", DEADLINE * 2, || async {
        (describes(&t) >= d0 + 9).then_some(())
    })
    .await;
    let (d1, r1) = (describes(&t), reconciles.0.load(Ordering::SeqCst));
    let rounds = t0.elapsed().as_secs_f64() / period.as_secs_f64();
    eprintln!("steady: {} Describe calls and {} passes in {rounds:.1} periods", d1 - d0, r1 - r0);
    assert!(
        r1 - r0 <= 50,
        "{} passes in {rounds:.1} periods: the {N} INACTIVE objects were resynced (one running object, 1 a period)",
        r1 - r0
    );
    let ceiling = 3 * (rounds.ceil() as u64 + 1);
    assert!(
        d1 - d0 <= ceiling,
        "{} Describe calls in {rounds:.1} periods: at most {ceiling} wanted (3 pages per period)",
        d1 - d0
    );
    let starts_stops = t.emu.emulator.calls(Operation::Start.name()) + t.emu.emulator.calls(Operation::Stop.name());
    assert_eq!(starts_stops, 2 * N as u64 + 1, "only the seeding and the running object's Start");
}

#[tokio::test]
async fn creates_in_a_region_of_1040_exports_share_its_listing() {
    const HISTORY: usize = 1040;
    let t = Test::new("scale-create", cfg()).await;
    stopped_exports(&t, HISTORY).await;
    let _op = t.operator(|_| {}).await;
    let pages = HISTORY.div_ceil(100) as u64;

    let d0 = describes(&t);
    t.create("first", json!({})).await;
    t.wait_ready("first").await;
    let first = describes(&t) - d0;
    assert!(first <= 2 + pages, "first create: {first} Describe calls, at most 2 + {pages} pages wanted");

    // Stop it, so the region is free for a second object's start.
    t.patch_spec("first", json!({"stopped": true})).await;
    t.wait_status("first", "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    let d1 = describes(&t);
    t.create("second", json!({})).await;
    t.wait_ready("second").await;
    let second = describes(&t) - d1;
    eprintln!("region of {HISTORY} exports: first create {first} Describe calls, second {second}");
    assert!(second <= 2, "second create: {second} Describe calls, at most 2 wanted (the listing is shared)");
}

#[tokio::test]
async fn a_stop_among_many_objects_is_watched_by_one_schedule() {
    const N: usize = 100;
    let t = Test::new("scale-stop", cfg()).await;
    let ids = stopped_exports(&t, N).await;
    let _op = t.operator(|_| {}).await; // resync 10 min: no listing in the measured window
    create_adopters(&t, &ids).await;
    t.create("live", json!({})).await;
    wait_all_ready(&t, "inv", N).await;
    t.wait_ready("live").await;

    // A stop that takes 2 s in ADS: the region's watch looks at the export at once,
    // then 250 ms doubling; the object's own reconciles read those looks.
    t.emu.emulator.set_delays(Duration::ZERO, Duration::from_secs(2));
    let d0 = describes(&t);
    let started = std::time::Instant::now();
    t.patch_spec("live", json!({"stopped": true})).await;
    t.wait_status("live", "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    let window = started.elapsed();
    let calls = describes(&t) - d0;
    // No Describe before Stop (the last look suffices), then the watch's looks (the
    // first at once) in the window.
    let looks = 1 + support::max_calls(Duration::from_millis(250), Duration::from_secs(30), window);
    eprintln!("stop among {N}: {calls} Describe calls in {window:?} ({looks} looks at most)");
    assert!(calls <= looks, "{calls} Describe calls for one stop in {window:?}: at most {looks} wanted");
    assert_eq!(t.emu.emulator.calls(Operation::Stop.name()), N as u64 + 1, "one Stop of the live export");
}

#[tokio::test]
async fn a_stop_of_an_active_export_sends_stop_without_describing_first() {
    let t = Test::new("scale-stop-calls", cfg()).await;
    let _op = t.operator(|_| {}).await;
    t.create("first", json!({})).await;
    t.wait_ready("first").await;
    let stops = || t.emu.emulator.calls(Operation::Stop.name());

    // Every Describe fails: the status says ACTIVE, so the Stop goes out all the same.
    t.emu.emulator.inject_fault(Fault::new(Some(Operation::Describe.name()), FaultKind::Http { status: 500 }));
    t.patch_spec("first", json!({"stopped": true})).await;
    support::wait_for("a Stop while Describe fails", DEADLINE, || async { (stops() == 1).then_some(()) }).await;
    t.emu.emulator.clear_faults();
    t.wait_status("first", "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE")).await;

    // A stop costs one Stop and, with ADS stopping at once, one look after it (and at
    // most one read of the reconcile that raced the look's answer). One running export
    // per region: the second object starts once the first export is stopped.
    t.create("second", json!({})).await;
    t.wait_ready("second").await;
    let d0 = describes(&t);
    t.patch_spec("second", json!({"stopped": true})).await;
    t.wait_status("second", "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    let calls = describes(&t) - d0;
    eprintln!("one stop: {calls} Describe calls");
    assert!(calls <= 2, "{calls} Describe calls for one stop: at most 2 wanted (the look after Stop, one read)");
    assert_eq!(stops(), 2, "one Stop per stop");

    // Deleting it reads the look that saw it INACTIVE (terminal): no call at all.
    let d1 = describes(&t);
    t.api.delete("second", &DeleteParams::default()).await.unwrap();
    t.wait_gone("second").await;
    assert_eq!(describes(&t) - d1, 0, "the deletion of a stopped export describes nothing");
    assert_eq!(stops(), 2, "and stops nothing");
}
