//! Operator benchmark on the real test bed: prints figures, asserts nothing about speed.
//!
//! `cargo bench --bench operator` (release build; starts its own kube-apiserver + etcd
//! through `hack/testbed.sh`, or attaches to `$ADS_TESTBED_DIR`). For each size in
//! `BENCH_SIZES` (default `1000,5000`; add `10000` for the RSS row), in a fresh
//! namespace and a fresh emulator region:
//!
//! 1. **Cold start.** N exports started and stopped through the SDK (INACTIVE), N
//!    objects adopting them (`stopped: true`) created while no operator runs; then the
//!    operator starts: seconds from its start to all `Ready=True`, its CPU seconds (user +
//!    system, `/proc/<pid>/stat`) per object, peak RSS (`VmHWM`), Describe calls, and
//!    apiserver writes per object (the apiserver's own `apiserver_request_total`, writes
//!    on `continuousexports` and `events`).
//! 2. **Steady state.** Two resync periods (`BENCH_RESYNC`, default 15 s, at least 10 s)
//!    with nothing to do: Describe calls per resync beside the ideal `ceil(exports/100)`,
//!    CPU seconds per resync, status writes (objects whose `resourceVersion` moved).
//!    Beside the operator's CPU, that of `kube-apiserver`, `etcd` and the bench itself
//!    (which watches every object and runs the ADS emulator) over the same window, and the apiserver's mean latency
//!    of the writes (`apiserver_request_duration_seconds`): where a cold start's time goes.
//! 3. **Cycles.** `BENCH_CYCLES` (default 10) times, with the N objects present: create
//!    an object, until `Ready=True` (ACTIVE); `spec.stopped: true`, until `Ready=True`
//!    (INACTIVE); delete, until gone. Milliseconds per phase from the API call to the
//!    watch event that shows the outcome, the ADS calls per cycle, and the Describe calls
//!    of the first create (the region then holds N exports). A cycle starts
//!    `BENCH_CYCLE_PERIOD` seconds (default 2) after the one before it: an interactive
//!    pace, at which a cycle's ~5 ADS calls stay within the default limit of 5 per second;
//!    `BENCH_CYCLE_PERIOD=0` runs them back to back, where every call waits for a token of
//!    the limit and the latencies measure the limit.
//!
//! Then a table of every figure beside its target (issue 10), with the ratio to the
//! ideal AWS call count where there is one. The idle RSS (and its anonymous part,
//! `RssAnon`: the rest is the binary mapped from the page cache) is read before the first size.
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

/// The kube-apiserver's Go soft memory limit in the bed the bench starts (unless
/// `TESTBED_APISERVER_GOMEMLIMIT` says otherwise): with 10,000-16,000 custom resources
/// its heap passes the tests' 768 MiB and it would spend most of its CPU in garbage
/// collection, which would be measured as the operator's cold start.
const APISERVER_GOMEMLIMIT: &str = "4GiB";

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, and figures from a debug build under a test run mean nothing: skip.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/operator.rs: a benchmark; run it with `cargo bench --bench operator`");
        return;
    }
    if std::env::var_os("TESTBED_APISERVER_GOMEMLIMIT").is_none() {
        // SAFETY: no other thread runs yet (the runtime is built below).
        unsafe { std::env::set_var("TESTBED_APISERVER_GOMEMLIMIT", APISERVER_GOMEMLIMIT) };
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(bench());
}

async fn bench() {
    ads_export_operator::install_crypto_provider();
    // Settings come from the environment (BENCH_*).
    let cycles: usize = env_or("BENCH_CYCLES", 10);
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap_or_else(|_| panic!("BENCH_SIZES: {n:?} is not a number")))
        .collect();
    let run = Run {
        concurrency: env_or("BENCH_CONCURRENCY", 4),
        resync: Duration::from_secs(env_or::<u64>("BENCH_RESYNC", 15).max(10)),
        cycle_period: Duration::from_secs_f64(env_or("BENCH_CYCLE_PERIOD", 2.0)),
    };

    let bed = tokio::task::spawn_blocking(support::testbed).await.unwrap();
    let client = bed.client().await;
    support::apply_crd(&client, &ads_export_operator::api::crd()).await;
    // The operator's start-up checks that the ExportAccount CRD is served too.
    support::apply_crd(&client, &ads_export_operator::api::account_crd()).await;
    println!(
        "# ads-export-operator bench: max-concurrent-reconciles {}, resync {:?}, a cycle every {:?}",
        run.concurrency, run.resync, run.cycle_period
    );

    let mut table = Vec::new();
    let (idle, idle_anon) = {
        let (emu, ns) = fresh(&client).await;
        let operator = Operator::start(&emu, &ns, bed.kubeconfig_path(), &run);
        operator.ready().await;
        (operator.peak_rss_mib(), operator.status_mib("RssAnon:"))
    };
    println!("idle RSS {idle:.1} MiB, of which anonymous (heap, stacks) {idle_anon:.1} MiB, the rest mapped files");
    table.push(Row::new("operator RSS, idle (MiB)", 0, idle, "<= 16", 16.0, None));
    for n in sizes {
        let (emu, ns) = fresh(&client).await;
        let api: Api<ContinuousExport> = Api::namespaced(client.clone(), &ns);
        let figures = scale(&client, &api, &emu, &ns, bed, &run, n, cycles).await;
        table.extend(figures);
    }
    print_table(&table);
}

/// How the operator runs, and the pace of the cycles.
struct Run {
    concurrency: u16,
    resync: Duration,
    /// The least time from one cycle's start to the next one's.
    cycle_period: Duration,
}

/// A fresh emulator (one region, no exports) and namespace.
async fn fresh(client: &kube::Client) -> (RunningEmulator, String) {
    let ns = support::namespace(client, "bench").await;
    let emu = Emulator::new(EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() })
        .spawn("127.0.0.1:0")
        .await
        .expect("start the emulator");
    (emu, ns)
}

/// One line of the final table: a figure at a size, beside its target.
struct Row {
    figure: &'static str,
    n: usize,
    value: f64,
    target: &'static str,
    /// The target as a number (`<=` it is met).
    limit: f64,
    /// The ideal AWS call count, for figures that count calls.
    ideal: Option<f64>,
}

impl Row {
    fn new(figure: &'static str, n: usize, value: f64, target: &'static str, limit: f64, ideal: Option<f64>) -> Self {
        Self { figure, n, value, target, limit, ideal }
    }
}

fn print_table(rows: &[Row]) {
    println!("\n## figures beside targets (issue 10)");
    println!("| figure | N | measured | target | met | ratio to ideal |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        let ratio = r.ideal.map_or("-".to_owned(), |i| format!("{:.2}x of {i:.0}", r.value / i.max(1.0)));
        let met = if r.value <= r.limit { "yes" } else { "no" };
        println!("| {} | {} | {:.2} | {} | {met} | {ratio} |", r.figure, r.n, r.value, r.target);
    }
}

/// The operator binary as a child process, SIGKILLed on drop.
struct Operator {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Operator {
    fn start(emu: &RunningEmulator, ns: &str, kubeconfig: &std::path::Path, run: &Run) -> Self {
        let (concurrency, resync) = (run.concurrency, run.resync);
        let log = support::repo_root().join(format!("target/bench-operator-{ns}.log"));
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
        cpu_seconds(self.child.id()).expect("read the operator's /proc/<pid>/stat")
    }

    /// Peak resident set size so far, in MiB (`VmHWM`).
    fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// A `/proc/<pid>/status` figure given in kB (e.g. `RssAnon:`), in MiB.
    fn status_mib(&self, field: &str) -> f64 {
        status_mib(self.child.id(), field).unwrap_or_else(|| panic!("{field} in the operator's /proc/<pid>/status"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `/proc/<pid>/status` figure of process `pid` given in kB (e.g. `VmRSS:`), in MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find_map(|l| l.strip_prefix(field))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) process `pid` has used so far; `None` once it is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

/// CPU seconds used so far by the processes a cold start loads beside the operator.
#[derive(Clone, Copy)]
struct OthersCpu {
    apiserver: f64,
    etcd: f64,
    bench: f64,
}

impl OthersCpu {
    fn read(bed: &support::TestBed) -> Self {
        let of = |name: &str| bed.daemon_pid(name).and_then(cpu_seconds).unwrap_or(f64::NAN);
        let bench = cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
        OthersCpu { apiserver: of("kube-apiserver"), etcd: of("etcd"), bench }
    }

    fn since(self, before: Self) -> Self {
        OthersCpu {
            apiserver: self.apiserver - before.apiserver,
            etcd: self.etcd - before.etcd,
            bench: self.bench - before.bench,
        }
    }
}

/// The CPUs this process may run on.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
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

/// `(p50, p95, p99, max)` of `samples` in milliseconds (nearest rank).
fn summary(samples: &mut [f64]) -> (f64, f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| samples[(((p * samples.len() as f64).ceil() as usize).max(1) - 1).min(samples.len() - 1)];
    (rank(0.50), rank(0.95), rank(0.99), samples[samples.len() - 1])
}

/// What the cycles measured that the table shows.
struct Cycles {
    /// `stopped: true` -> INACTIVE visible, p99 (ms).
    stop_p99: f64,
    /// `status.stopTime` minus the wall clock at the patch, p99 (ms).
    stop_time_p99: f64,
    /// Describe calls of the first cycle's create.
    first_create_describes: u64,
}

fn wall_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

async fn cycle_latency(api: &Api<ContinuousExport>, emu: &RunningEmulator, cycles: usize, period: Duration) -> Cycles {
    let (mut start, mut stop, mut delete, mut stop_time) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let calls_before = emu.emulator.counters();
    let mut first_create_describes = 0;
    let mut next = tokio::time::Instant::now();
    for i in 0..cycles {
        // The pace of the cycles (see the module docs), not a wait for an outcome.
        tokio::time::sleep_until(next).await;
        next = tokio::time::Instant::now() + period;
        let name = format!("cycle-{i}");
        let obj: ContinuousExport = serde_json::from_value(json!({
            "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
            "metadata": {"name": name}, "spec": {},
        }))
        .unwrap();
        let describes = emu.emulator.counters().total("DescribeContinuousExports");
        let t = Instant::now();
        api.create(&PostParams::default(), &obj).await.expect("create");
        watch_until(api, &name, |o| o.is_some_and(|o| is_ready(o) && export_status(o) == Some("ACTIVE"))).await;
        start.push(millis(t.elapsed()));
        if i == 0 {
            first_create_describes = emu.emulator.counters().total("DescribeContinuousExports") - describes;
        }

        let (t, wall) = (Instant::now(), wall_ms());
        api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"stopped": true}})))
            .await
            .expect("patch stopped");
        watch_until(api, &name, |o| o.is_some_and(|o| is_ready(o) && export_status(o) == Some("INACTIVE"))).await;
        stop.push(millis(t.elapsed()));
        let stopped = api.get(&name).await.expect("get").status.and_then(|s| s.stop_time);
        if let Some(at) = stopped.and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok()) {
            stop_time.push(at.as_millisecond() as f64 - wall);
        }

        let t = Instant::now();
        api.delete(&name, &DeleteParams::default()).await.expect("delete");
        watch_until(api, &name, |o| o.is_none()).await;
        delete.push(millis(t.elapsed()));
    }
    let calls = emu.emulator.counters();
    let per_cycle = |op: &str| (calls.total(op) - calls_before.total(op)) as f64 / cycles as f64;
    println!(
        "\n## cycle latency ({cycles} cycles, one every {period:?}: create -> ACTIVE, stopped -> INACTIVE, delete -> gone)"
    );
    println!("{:<36} {:>9} {:>9} {:>9} {:>9}", "phase (ms, API call to watch event)", "p50", "p95", "p99", "max");
    let stop_p99 = summary(&mut stop.clone()).2;
    let stop_time_p99 = if stop_time.is_empty() { f64::NAN } else { summary(&mut stop_time.clone()).2 };
    for (label, samples) in [("create -> Ready (ACTIVE)", &mut start), ("stop -> Ready (INACTIVE)", &mut stop)]
        .into_iter()
        .chain([("delete -> gone", &mut delete), ("stopTime - patch (ms)", &mut stop_time)])
    {
        if samples.is_empty() {
            continue;
        }
        let (p50, p95, p99, max) = summary(samples);
        println!("{label:<36} {p50:>9.1} {p95:>9.1} {p99:>9.1} {max:>9.1}");
    }
    println!(
        "ADS calls per cycle: Start {:.1}, Describe {:.1}, Stop {:.1}; first create: {first_create_describes} Describe",
        per_cycle("StartContinuousExport"),
        per_cycle("DescribeContinuousExports"),
        per_cycle("StopContinuousExport")
    );
    Cycles { stop_p99, stop_time_p99, first_create_describes }
}

/// Starts and stops `n` exports through the real SDK (16 at a time), returning their IDs.
async fn inactive_exports(emu: &RunningEmulator, n: usize) -> Vec<String> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(emu.endpoint_url())
        .credentials_provider(aws_credential_types::Credentials::new("AKIDBENCH", "bench-secret", None, None, "bench"))
        .load()
        .await;
    let sdk = ads::Client::new(&conf);
    // One export runs at a time in a region: start and stop one after the other.
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let out = sdk.start_continuous_export().send().await.expect("Start");
        let id = out.export_id().expect("exportId").to_owned();
        sdk.stop_continuous_export().export_id(&id).send().await.expect("Stop");
        ids.push(id);
    }
    ids
}

/// The apiserver's write requests (POST, PUT, PATCH, APPLY, DELETE) on
/// `continuousexports` and `events` so far, from its own metrics.
#[derive(Clone, Copy)]
struct Writes {
    /// How many (`apiserver_request_total`).
    count: f64,
    /// Seconds the apiserver spent on them (`apiserver_request_duration_seconds_sum`).
    seconds: f64,
}

impl Writes {
    async fn read(client: &kube::Client) -> Self {
        let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
        let text = match client.request_text(req).await {
            Ok(text) => text,
            Err(e) => {
                eprintln!("cannot read the apiserver's /metrics ({e}): writes not counted");
                return Writes { count: f64::NAN, seconds: f64::NAN };
            }
        };
        let writes = ["\"POST\"", "\"PUT\"", "\"PATCH\"", "\"APPLY\"", "\"DELETE\""];
        let sum_of = |metric: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(metric))
                .filter(|l| l.contains("resource=\"continuousexports\"") || l.contains("resource=\"events\""))
                .filter(|l| writes.iter().any(|v| l.contains(&format!("verb={v}"))))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Writes { count: sum_of("apiserver_request_total{"), seconds: sum_of("apiserver_request_duration_seconds_sum{") }
    }

    fn since(self, before: Self) -> Self {
        Writes { count: self.count - before.count, seconds: self.seconds - before.seconds }
    }
}

/// Creates `scale-0..n` adopting `ids` (16 at a time).
async fn create_adopters(api: &Api<ContinuousExport>, ids: &[String]) {
    let mut pending = futures::stream::iter(ids.iter().enumerate().map(|(i, id)| {
        let obj: ContinuousExport = serde_json::from_value(json!({
            "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
            "metadata": {"name": format!("scale-{i}")},
            "spec": {"exportId": id, "stopped": true},
        }))
        .unwrap();
        async move { api.create(&PostParams::default(), &obj).await.map(|_| ()) }
    }))
    .buffer_unordered(16);
    while let Some(r) = pending.next().await {
        r.expect("create");
    }
}

/// Waits on one watch until all `n` objects `scale-*` are Ready; (half, all) elapsed since `t`.
async fn all_ready(api: &Api<ContinuousExport>, n: usize, t: Instant) -> (Duration, Duration) {
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let mut ready: HashMap<String, bool> = HashMap::new();
    let mut half = None;
    let work = async {
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
    tokio::time::timeout(DEADLINE, work).await.unwrap_or_else(|_| panic!("{n} objects not all Ready in {DEADLINE:?}"))
}

#[allow(clippy::too_many_arguments)]
async fn scale(
    client: &kube::Client,
    api: &Api<ContinuousExport>,
    emu: &RunningEmulator,
    ns: &str,
    bed: &support::TestBed,
    run: &Run,
    n: usize,
    cycles: usize,
) -> Vec<Row> {
    let t = Instant::now();
    let ids = inactive_exports(emu, n).await;
    create_adopters(api, &ids).await;
    println!(
        "\n## N = {n}: {n} INACTIVE exports and {n} objects adopting them, made in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Cold start: from the operator's start to all Ready.
    let (describes0, writes0, others0) =
        (emu.emulator.counters().total("DescribeContinuousExports"), Writes::read(client).await, OthersCpu::read(bed));
    let t = Instant::now();
    let op = Operator::start(emu, ns, bed.kubeconfig_path(), run);
    let (half, all) = all_ready(api, n, t).await;
    let settle_cpu = op.cpu_seconds();
    let others = OthersCpu::read(bed).since(others0);
    let settle_rss = op.peak_rss_mib();
    let cold_describes = (emu.emulator.counters().total("DescribeContinuousExports") - describes0) as f64;
    let writes = Writes::read(client).await.since(writes0);
    let cold_writes = writes.count / n as f64;
    let pages = n.div_ceil(100) as f64;
    println!(
        "cold start: half Ready {:.2} s, all Ready {:.2} s ({:.0} objects/s)",
        half.as_secs_f64(),
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
    println!(
        "operator CPU until all Ready: {settle_cpu:.2} s ({:.2} ms per object), peak RSS {settle_rss:.1} MiB",
        settle_cpu * 1000.0 / n as f64
    );
    println!(
        "cold start: {cold_describes} Describe calls (ideal {pages}), {cold_writes:.2} apiserver writes per object, \
         {:.1} ms each on average in the apiserver",
        writes.seconds * 1000.0 / writes.count
    );
    println!(
        "cold start CPU beside the operator: kube-apiserver {:.1} s, etcd {:.1} s, the bench (its watch, the ADS emulator) {:.1} s; \
         with the operator's {settle_cpu:.1} s that is {:.2} of the {:.1} s the machine's {} cores had",
        others.apiserver,
        others.etcd,
        others.bench,
        (others.apiserver + others.etcd + others.bench + settle_cpu) / (all.as_secs_f64() * cores()),
        all.as_secs_f64() * cores(),
        cores()
    );
    if let Some(rss) = bed.daemon_pid("kube-apiserver").and_then(|pid| status_mib(pid, "VmRSS:")) {
        println!("kube-apiserver RSS {rss:.0} MiB (GOMEMLIMIT {:?})", std::env::var("TESTBED_APISERVER_GOMEMLIMIT"));
    }

    // Steady state: two resync periods with nothing to do.
    let versions = |list: Vec<ContinuousExport>| -> HashMap<String, String> {
        list.into_iter().map(|o| (o.metadata.name.unwrap(), o.metadata.resource_version.unwrap())).collect()
    };
    let before = versions(api.list(&ListParams::default()).await.unwrap().items);
    let describes0 = emu.emulator.counters().total("DescribeContinuousExports");
    let starts_stops0 =
        emu.emulator.counters().total("StartContinuousExport") + emu.emulator.counters().total("StopContinuousExport");
    let cpu1 = op.cpu_seconds();
    tokio::time::sleep(run.resync * 2).await; // the measured window itself, not a wait for an outcome
    let steady_cpu = (op.cpu_seconds() - cpu1) / 2.0;
    let steady_describes = (emu.emulator.counters().total("DescribeContinuousExports") - describes0) as f64 / 2.0;
    let starts_stops = emu.emulator.counters().total("StartContinuousExport")
        + emu.emulator.counters().total("StopContinuousExport")
        - starts_stops0;
    let after = versions(api.list(&ListParams::default()).await.unwrap().items);
    let writes = before.iter().filter(|(k, v)| after.get(*k) != Some(*v)).count();
    println!(
        "steady state, {} s (two resyncs): per resync CPU {steady_cpu:.2} s, Describe calls {steady_describes:.1} (ideal {pages}); status writes {writes}, Start/Stop {starts_stops}",
        (run.resync * 2).as_secs()
    );

    warm_up(api).await;
    let c = cycle_latency(api, emu, cycles, run.cycle_period).await;
    let mut rows = vec![
        Row::new(
            "Describe calls per steady resync",
            n,
            steady_describes,
            "<= 1.1x ceil(exports/100)",
            1.1 * pages,
            Some(pages),
        ),
        Row::new("operator CPU per steady resync (s)", n, steady_cpu, "<= 0.5 s", 0.5, None),
        Row::new(
            "status writes + Start/Stop in steady state",
            n,
            (writes as u64 + starts_stops) as f64,
            "0",
            0.0,
            None,
        ),
        Row::new(
            "cold start, operator start -> all Ready (s)",
            n,
            all.as_secs_f64(),
            "5,000 <= 20 s; 10,000 <= 40 s",
            20.0 * n as f64 / 5000.0,
            None,
        ),
        Row::new(
            "Describe calls at cold start",
            n,
            cold_describes,
            "<= ceil(exports/100) + small",
            pages + 5.0,
            Some(pages),
        ),
        Row::new(
            "operator CPU per adopted object (ms)",
            n,
            settle_cpu * 1000.0 / n as f64,
            "<= 2 ms, flat in N",
            2.0,
            None,
        ),
        Row::new("operator peak RSS (MiB)", n, settle_rss, "<= 64 MiB at 10,000", 64.0, None),
        Row::new("apiserver writes per adopted object", n, cold_writes, "<= 3", 3.0, None),
        Row::new(
            "Describe calls for one create",
            n,
            c.first_create_describes as f64,
            "<= 2 + pages of one listing",
            2.0 + pages,
            Some(2.0),
        ),
        Row::new("stop -> INACTIVE visible, p99 (ms)", n, c.stop_p99, "<= 300 ms", 300.0, None),
    ];
    if c.stop_time_p99.is_finite() {
        rows.push(Row::new("stopTime - stop request, p99 (ms)", n, c.stop_time_p99, "<= 100 ms", 100.0, None));
    }
    rows
}
