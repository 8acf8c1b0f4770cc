//! Operator benchmark on the real test bed: prints figures, asserts nothing about speed.
//!
//! `cargo bench --bench operator` (release build; starts its own kube-apiserver + etcd
//! through `hack/testbed.sh`, or attaches to `$ADS_TESTBED_DIR`). Two parts:
//!
//! 1. **Cycle latency.** `BENCH_CYCLES` (default 10) times in one region: create an
//!    object, until `Ready=True` (ACTIVE); set `spec.stopped: true`, until `Ready=True`
//!    (INACTIVE); delete, until the object is gone. Wall-clock milliseconds per phase,
//!    measured from the API call to the watch event that shows the outcome, and the ADS
//!    calls per cycle (emulator counters).
//! 2. **Scale.** `BENCH_OBJECTS` (default 500) objects, each adopting its own INACTIVE
//!    export with `stopped: true` (ADS allows one active export per region, but any
//!    number of stopped ones). Seconds until all are `Ready=True`; the operator's CPU
//!    seconds (user + system, from `/proc/<pid>/stat`) and peak RSS (`VmHWM`) for that;
//!    then two resync periods (`BENCH_RESYNC`, default 15 s, at least 10 s) of steady state: CPU seconds,
//!    Describe calls and status writes (objects whose `resourceVersion` moved; should
//!    be 0).
//!
//! The operator is the release binary, run as a separate process with
//! `--max-concurrent-reconciles` `BENCH_CONCURRENCY` (default 4, the flag's default).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ads_export_operator::api::{CONDITION_READY, ContinuousExport};
use ads_export_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use aws_sdk_applicationdiscovery as ads;
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

const REGION: &str = "us-west-2";
const DEADLINE: Duration = Duration::from_secs(300);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, and figures from a debug build under a test run mean nothing: skip.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/operator.rs: a benchmark; run it with `cargo bench --bench operator`");
        return;
    }
    ads_export_operator::install_crypto_provider();
    // Settings come from the environment (BENCH_*).
    let cycles: usize = env_or("BENCH_CYCLES", 10);
    let objects: usize = env_or("BENCH_OBJECTS", 500);
    let concurrency: u16 = env_or("BENCH_CONCURRENCY", 4);
    let resync = Duration::from_secs(env_or("BENCH_RESYNC", 15));

    let bed = tokio::task::spawn_blocking(support::testbed).await.unwrap();
    let client = bed.client().await;
    support::apply_crd(&client, &ads_export_operator::api::crd()).await;
    let ns = support::namespace(&client, "bench").await;
    let emu = Emulator::new(EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() })
        .spawn("127.0.0.1:0")
        .await
        .expect("start the emulator");
    let api: Api<ContinuousExport> = Api::namespaced(client.clone(), &ns);
    let operator = Operator::start(&emu, &ns, bed.kubeconfig_path(), concurrency, resync);
    operator.ready().await;
    println!("# ads-export-operator bench: namespace {ns}, max-concurrent-reconciles {concurrency}");

    warm_up(&api).await;
    cycle_latency(&api, &emu, cycles).await;
    scale(&api, &emu, &operator, objects, resync).await;
}

/// The operator binary as a child process, SIGKILLed on drop.
struct Operator {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Operator {
    fn start(
        emu: &RunningEmulator,
        ns: &str,
        kubeconfig: &std::path::Path,
        concurrency: u16,
        resync: Duration,
    ) -> Self {
        let log = support::repo_root().join("target/bench-operator.log");
        let file = std::fs::File::create(&log).expect("create the operator log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ads-export-operator"))
            .args(["run", "--namespace", ns, "--aws-region", REGION, "--aws-endpoint-url", &emu.endpoint_url()])
            .args(["--metrics-addr", "127.0.0.1:0", "--max-concurrent-reconciles", &concurrency.to_string()])
            .args(["--resync-period", &format!("{}s", resync.as_secs())])
            .args(["--backoff-base", "500ms", "--backoff-max", "5s"])
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
            .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start the operator binary");
        println!("# operator log: {}", log.display());
        Operator { child, log }
    }

    /// Waits until the operator's watch cache has synced (its start-up is not measured).
    async fn ready(&self) {
        support::wait_for("the operator's watch cache", DEADLINE, || async {
            std::fs::read_to_string(&self.log).unwrap_or_default().contains("watch cache synced").then_some(())
        })
        .await;
    }

    /// CPU seconds (user + system) the process has used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("read /proc/<pid>/stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / clock_ticks_per_second()
    }

    /// Peak resident set size so far, in MiB (`VmHWM`).
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib / 1024.0
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("run getconf CLK_TCK");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("CLK_TCK")
}

fn is_ready(o: &ContinuousExport) -> bool {
    o.status
        .as_ref()
        .and_then(|s| s.condition(CONDITION_READY))
        .is_some_and(|c| c.status == "True" && c.observed_generation == o.metadata.generation)
}

fn export_status(o: &ContinuousExport) -> Option<&str> {
    o.status.as_ref()?.export_status.as_deref()
}

/// Waits, on a watch, until object `name` satisfies `pred` (`None`: the object is gone).
async fn watch_until(api: &Api<ContinuousExport>, name: &str, pred: impl Fn(Option<&ContinuousExport>) -> bool) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api.clone(), cfg).boxed();
    let mut current: Option<ContinuousExport> = None;
    let mut init: Option<ContinuousExport> = None;
    let work = async {
        while let Some(event) = stream.try_next().await.expect("watch") {
            match event {
                Event::Apply(o) => current = Some(o),
                Event::Delete(_) => current = None,
                Event::Init => init = None,
                Event::InitApply(o) => init = Some(o),
                Event::InitDone => current = init.take(),
            }
            if pred(current.as_ref()) {
                return;
            }
        }
    };
    tokio::time::timeout(DEADLINE, work).await.unwrap_or_else(|_| panic!("{name}: no outcome in {DEADLINE:?}"));
}

/// One object through the operator before measuring: the first watch event after
/// the operator's start-up can take ~2 s to arrive, which is start-up, not latency.
async fn warm_up(api: &Api<ContinuousExport>) {
    let obj: ContinuousExport = serde_json::from_value(json!({
        "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
        "metadata": {"name": "warm-up"}, "spec": {"stopped": true},
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.expect("create warm-up");
    watch_until(api, "warm-up", |o| o.is_some_and(is_ready)).await;
    api.delete("warm-up", &DeleteParams::default()).await.expect("delete warm-up");
    watch_until(api, "warm-up", |o| o.is_none()).await;
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `(p50, p95, max)` of `samples` in milliseconds (nearest rank).
fn summary(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| samples[(((p * samples.len() as f64).ceil() as usize).max(1) - 1).min(samples.len() - 1)];
    (rank(0.50), rank(0.95), samples[samples.len() - 1])
}

async fn cycle_latency(api: &Api<ContinuousExport>, emu: &RunningEmulator, cycles: usize) {
    let (mut start, mut stop, mut delete) = (Vec::new(), Vec::new(), Vec::new());
    let calls_before = emu.emulator.counters();
    for i in 0..cycles {
        let name = format!("cycle-{i}");
        let obj: ContinuousExport = serde_json::from_value(json!({
            "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
            "metadata": {"name": name}, "spec": {},
        }))
        .unwrap();
        let t = Instant::now();
        api.create(&PostParams::default(), &obj).await.expect("create");
        watch_until(api, &name, |o| o.is_some_and(|o| is_ready(o) && export_status(o) == Some("ACTIVE"))).await;
        start.push(millis(t.elapsed()));

        let t = Instant::now();
        api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"stopped": true}})))
            .await
            .expect("patch stopped");
        watch_until(api, &name, |o| o.is_some_and(|o| is_ready(o) && export_status(o) == Some("INACTIVE"))).await;
        stop.push(millis(t.elapsed()));

        let t = Instant::now();
        api.delete(&name, &DeleteParams::default()).await.expect("delete");
        watch_until(api, &name, |o| o.is_none()).await;
        delete.push(millis(t.elapsed()));
    }
    let calls = emu.emulator.counters();
    let per_cycle = |op: &str| (calls.total(op) - calls_before.total(op)) as f64 / cycles as f64;
    println!("\n## cycle latency ({cycles} cycles: create -> ACTIVE, stopped -> INACTIVE, delete -> gone)");
    println!("{:<28} {:>9} {:>9} {:>9}", "phase (ms, API call to watch event)", "p50", "p95", "max");
    for (label, samples) in [("create -> Ready (ACTIVE)", &mut start), ("stop -> Ready (INACTIVE)", &mut stop)]
        .into_iter()
        .chain([("delete -> gone", &mut delete)])
    {
        let (p50, p95, max) = summary(samples);
        println!("{label:<36} {p50:>9.1} {p95:>9.1} {max:>9.1}");
    }
    println!(
        "ADS calls per cycle: Start {:.1}, Describe {:.1}, Stop {:.1}",
        per_cycle("StartContinuousExport"),
        per_cycle("DescribeContinuousExports"),
        per_cycle("StopContinuousExport")
    );
}

/// Starts and stops `n` exports through the real SDK, returning their IDs.
async fn inactive_exports(emu: &RunningEmulator, n: usize) -> Vec<String> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(emu.endpoint_url())
        .credentials_provider(aws_credential_types::Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench"))
        .load()
        .await;
    let sdk = ads::Client::new(&conf);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let out = sdk.start_continuous_export().send().await.expect("Start");
        let id = out.export_id().expect("exportId").to_owned();
        sdk.stop_continuous_export().export_id(&id).send().await.expect("Stop");
        ids.push(id);
    }
    ids
}

async fn scale(api: &Api<ContinuousExport>, emu: &RunningEmulator, op: &Operator, n: usize, resync: Duration) {
    let ids = inactive_exports(emu, n).await;
    // Follow every object in the namespace on one watch: name -> Ready.
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let cpu0 = op.cpu_seconds();
    let t = Instant::now();
    let create = async {
        let mut pending = futures::stream::iter(ids.iter().enumerate().map(|(i, id)| {
            let obj: ContinuousExport = serde_json::from_value(json!({
                "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
                "metadata": {"name": format!("scale-{i}")},
                "spec": {"exportId": id, "stopped": true},
            }))
            .unwrap();
            async move { api.create(&PostParams::default(), &obj).await.map(|_| ()) }
        }))
        .buffer_unordered(8);
        while let Some(r) = pending.next().await {
            r.expect("create");
        }
        t.elapsed()
    };
    let settle = async {
        let mut ready: HashMap<String, bool> = HashMap::new();
        let mut half = None;
        while let Some(event) = stream.try_next().await.expect("watch") {
            if let Event::Apply(o) | Event::InitApply(o) = event {
                let name = o.metadata.name.clone().unwrap();
                if name.starts_with("scale-") {
                    ready.insert(name, is_ready(&o));
                }
            }
            let count = ready.values().filter(|r| **r).count();
            if half.is_none() && count * 2 >= n {
                half = Some(t.elapsed());
            }
            if count == n {
                return (half.unwrap(), t.elapsed());
            }
        }
        panic!("watch ended");
    };
    let (created, (half, all)) = tokio::time::timeout(DEADLINE, async { tokio::join!(create, settle) })
        .await
        .unwrap_or_else(|_| panic!("{n} objects not all Ready in {DEADLINE:?}"));
    let settle_cpu = op.cpu_seconds() - cpu0;
    let settle_rss = op.peak_rss_mib();

    // Steady state: two resync periods with nothing to do.
    let versions = |list: Vec<ContinuousExport>| -> HashMap<String, String> {
        list.into_iter().map(|o| (o.metadata.name.unwrap(), o.metadata.resource_version.unwrap())).collect()
    };
    let before = versions(api.list(&ListParams::default()).await.unwrap().items);
    let describes0 = emu.emulator.counters().total("DescribeContinuousExports");
    let cpu1 = op.cpu_seconds();
    tokio::time::sleep(resync * 2).await; // the measured window itself, not a wait for an outcome
    let steady_cpu = op.cpu_seconds() - cpu1;
    let describes = emu.emulator.counters().total("DescribeContinuousExports") - describes0;
    let after = versions(api.list(&ListParams::default()).await.unwrap().items);
    let writes = before.iter().filter(|(k, v)| after.get(*k) != Some(*v)).count();

    println!("\n## scale ({n} objects, each adopting its own INACTIVE export with stopped: true)");
    println!("created all {n} (8 at a time):          {:>8.2} s", created.as_secs_f64());
    println!("half Ready:                             {:>8.2} s", half.as_secs_f64());
    println!(
        "all Ready:                              {:>8.2} s ({:.0} objects/s)",
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
    println!(
        "operator CPU until all Ready:           {settle_cpu:>8.2} s ({:.2} ms per object)",
        settle_cpu * 1000.0 / n as f64
    );
    println!("operator peak RSS:                      {settle_rss:>8.1} MiB");
    println!(
        "steady state, {:>3} s (two resyncs):     CPU {steady_cpu:.2} s, Describe calls {describes} ({:.2} per object per resync), status writes {writes}",
        (resync * 2).as_secs(),
        describes as f64 / n as f64 / 2.0
    );
}
