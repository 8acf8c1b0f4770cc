//! Shared support for integration tests: a real kube-apiserver + etcd test bed
//! (see `hack/testbed.sh`) and small helpers around it.
//!
//! Include with `mod support;` from a file in `tests/`.
//!
//! - With `ADS_TESTBED_DIR` set (as `hack/test.sh` does), every test binary
//!   attaches to that running bed.
//! - Otherwise the first call to [`testbed()`] in a test binary starts a private
//!   bed under `target/testbed/run-<pid>` (building the binaries if needed); a
//!   watchdog tears it down and deletes it when the test binary exits.
//!
//! Each `#[tokio::test]` has its own runtime, so get a fresh [`kube::Client`]
//! per test from [`TestBed::client`] and never share one across tests.
#![allow(dead_code)]

pub mod process;

use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Field manager used by test helpers for server-side apply.
pub const FIELD_MANAGER: &str = "ads-export-tests";

/// Label put on every namespace created by [`namespace`].
pub const TEST_NAMESPACE_LABEL: &str = "ads-export-tests/namespace";

/// How often [`wait_for`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// A running test bed.
#[derive(Debug)]
pub struct TestBed {
    /// State dir of the bed (`$TESTBED_DIR` of `hack/testbed.sh`).
    pub dir: PathBuf,
    /// Admin kubeconfig (user `admin` in `system:masters`).
    pub kubeconfig: PathBuf,
    /// Directory with `kubectl`, `helm`, `kube-apiserver`, `etcd`.
    pub bin_dir: PathBuf,
}

static BED: OnceLock<Result<TestBed, String>> = OnceLock::new();

/// The test bed for this test binary: attaches to `$ADS_TESTBED_DIR` if set,
/// otherwise starts one (once per test binary). Blocking; safe to call from
/// any test, sync or async.
pub fn testbed() -> &'static TestBed {
    match BED.get_or_init(attach_or_start) {
        Ok(bed) => bed,
        Err(e) => panic!("{e}"),
    }
}

/// Root of this crate (where `hack/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn attach_or_start() -> Result<TestBed, String> {
    if let Some(dir) = std::env::var_os("ADS_TESTBED_DIR").filter(|d| !d.is_empty()) {
        let dir = std::path::absolute(PathBuf::from(dir)).map_err(|e| e.to_string())?;
        let bed = TestBed::at(dir);
        if !bed.kubeconfig.is_file() {
            return Err(format!(
                "ADS_TESTBED_DIR={} has no kubeconfig: is the bed up? (hack/testbed.sh up)",
                bed.dir.display()
            ));
        }
        return Ok(bed);
    }

    let pid = std::process::id();
    let dir = repo_root().join("target").join("testbed").join(format!("run-{pid}"));
    let script = repo_root().join("hack").join("testbed.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .args(["up", "--watch-pid", &pid.to_string()])
        .env("TESTBED_DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`hack/testbed.sh up` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    eprintln!("test bed up in {:.1}s at {}", started.elapsed().as_secs_f64(), dir.display());
    Ok(TestBed::at(dir))
}

impl TestBed {
    fn at(dir: PathBuf) -> Self {
        // `hack/testbed.sh up` links <dir>/bin to the binaries it used.
        let bin_dir = std::fs::canonicalize(dir.join("bin"))
            .unwrap_or_else(|_| repo_root().join("target").join("testbed").join("bin"));
        TestBed { kubeconfig: dir.join("kubeconfig"), dir, bin_dir }
    }

    /// A new admin client (a new one per call: clients must not outlive the
    /// tokio runtime of the test that made them).
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig).await
    }

    /// A new client authenticated as `user`: `"admin"` or `"nobody"` (an
    /// authenticated user without any RBAC rights).
    pub async fn client_for(&self, user: &str) -> Client {
        let path = self.dir.join(format!("kubeconfig-{user}"));
        assert!(path.is_file(), "the test bed has no user {user:?} ({} missing)", path.display());
        client_from(&path).await
    }

    /// Empty if the bed's `etcd` and `kube-apiserver` (as `hack/testbed.sh` recorded them:
    /// PID and start time) run; otherwise, for each one that does not, a line saying so and
    /// the tail of its log. A wait that times out appends it (see [`wait_for_ok`]).
    pub fn daemons_report(&self) -> String {
        let mut report = String::new();
        for name in ["etcd", "kube-apiserver"] {
            let log = self.dir.join("logs").join(format!("{name}.log"));
            match process::Recorded::read(&self.dir, name) {
                Some(r) if r.alive() => continue,
                Some(r) => report += &format!("\ntest bed: {name} (pid {}) is not running", r.pid),
                None => report += &format!("\ntest bed: {name} is not running (no {name}.pid)"),
            }
            report += &format!("; last lines of {}:\n{}", log.display(), process::log_tail(&log, 15));
        }
        report
    }

    /// The PID of the bed's daemon `name` (`"etcd"`, `"kube-apiserver"`) while it runs.
    pub fn daemon_pid(&self, name: &str) -> Option<u32> {
        process::Recorded::read(&self.dir, name).filter(process::Recorded::alive).map(|r| r.pid)
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn helm(&self) -> PathBuf {
        self.bin_dir.join("helm")
    }

    pub fn kubectl(&self) -> PathBuf {
        self.bin_dir.join("kubectl")
    }

    /// A command for `program` (e.g. [`Self::helm`], [`Self::kubectl`]) wired to
    /// this bed: `KUBECONFIG` is the admin kubeconfig and helm's cache/config/data
    /// dirs live in the bed's state dir, not in `$HOME`.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        let helm = self.dir.join("helm");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", helm.join("cache"))
            .env("HELM_CONFIG_HOME", helm.join("config"))
            .env("HELM_DATA_HOME", helm.join("data"))
            .stdin(Stdio::null());
        cmd
    }
}

async fn client_from(path: &Path) -> Client {
    Client::try_from(config_from(path).await).unwrap_or_else(|e| panic!("cannot build a client: {e}"))
}

/// The client configuration of kubeconfig `path` (for a client with extra layers).
pub async fn config_from(path: &Path) -> Config {
    ads_export_operator::install_crypto_provider();
    let kubeconfig =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("bad kubeconfig {}: {e}", path.display()))
}

/// Creates a fresh namespace `<prefix>-<random>` and returns its name.
/// (The bed runs no controller-manager, so deleted namespaces never finish
/// terminating; tests simply leave theirs behind.)
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{prefix}-{}", &suffix[..8]);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(TEST_NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    name
}

/// The [`ApiResource`] of a CRD's storage version (for `Api<DynamicObject>`).
pub fn api_resource(crd: &CustomResourceDefinition) -> ApiResource {
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .or_else(|| crd.spec.versions.first())
        .expect("CRD without versions");
    api_resource_for(crd, &version.name)
}

fn api_resource_for(crd: &CustomResourceDefinition, version: &str) -> ApiResource {
    let group = &crd.spec.group;
    ApiResource {
        group: group.clone(),
        version: version.to_string(),
        api_version: format!("{group}/{version}"),
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    }
}

/// Server-side applies `crd` (field manager [`FIELD_MANAGER`], forced), waits
/// until it is `Established` and every served version answers a list request.
pub async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) {
    let name = crd.metadata.name.clone().expect("CRD needs metadata.name");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(crd))
        .await
        .unwrap_or_else(|e| panic!("cannot apply CRD {name}: {e}"));

    wait_for_ok(&format!("CRD {name} to be Established"), Duration::from_secs(30), || async {
        let current = crds.get(&name).await.map_err(|e| e.to_string())?;
        let conditions = current.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
            Ok(())
        } else {
            Err(format!("conditions: {conditions:?}"))
        }
    })
    .await;

    for version in crd.spec.versions.iter().filter(|v| v.served) {
        let ar = api_resource_for(crd, &version.name);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        wait_for_ok(&format!("{}/{} to be served", ar.api_version, ar.plural), Duration::from_secs(30), || async {
            api.list(&ListParams::default().limit(1)).await.map(|_| ())
        })
        .await;
    }
}

/// Polls `f` every ~150ms until it returns `Some`, and returns that value.
/// Panics naming `what` if `deadline` passes first.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_ok(what, deadline, || {
        let fut = f();
        async move { fut.await.ok_or("not yet (None)") }
    })
    .await
}

/// Like [`wait_for`], for checks that explain themselves: polls until `f`
/// returns `Ok`; on timeout panics with `what` and the last `Err`.
pub async fn wait_for_ok<T, E, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    E: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // A single attempt may not hang past the deadline either.
        let remaining = deadline.saturating_sub(start.elapsed()).max(Duration::from_millis(100));
        let last = match tokio::time::timeout(remaining, f()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(e)) => format!("{e:?}"),
            Err(_) => format!("attempt still running after {remaining:?}"),
        };
        if start.elapsed() >= deadline {
            // The bed may be why: say so if one of its daemons is gone.
            let bed = match BED.get() {
                Some(Ok(bed)) => bed.daemons_report(),
                _ => String::new(),
            };
            panic!(
                "timed out after {:.1}s ({attempts} attempts) waiting for {what}; last observation: {last}{bed}",
                start.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The most calls an exponential backoff (`base` doubling to `max`, jitter shortening
/// each delay by at most 20 %) can make in `window`, counting the first call.
pub fn max_calls(base: Duration, max: Duration, window: Duration) -> u64 {
    let mut at = Duration::ZERO;
    let mut calls = 1;
    for attempt in 0.. {
        let delay = ads_export_operator::controller::backoff::exponential(base, max, attempt, 1.0);
        at += delay;
        if at > window {
            break;
        }
        calls += 1;
    }
    calls
}

/// Checks that each issued credential set was replaced before it expired and none was
/// used within 2 s of its expiry (the SDK's buffer is at least 5 s; 2 s of it are left
/// for delivery on a loaded machine), printing each set's lead.
pub fn assert_refreshed_before_expiry(issued: &[ads_export_operator::emulator::identity::IssuedView]) {
    for pair in issued.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let lead_ms = old.expires_at_ms as i64 - new.issued_at_ms as i64;
        eprintln!(
            "refresh: {} (lifetime {} ms, {} calls) last used {} ms before its expiry; successor issued {lead_ms} ms before it",
            old.access_key_id,
            old.expires_at_ms - old.issued_at_ms,
            old.calls,
            old.min_remaining_ms.unwrap_or_default(),
        );
        assert!(lead_ms > 0, "{} was replaced {} ms after it expired", old.access_key_id, -lead_ms);
    }
    for i in issued.iter().filter(|i| i.calls > 0) {
        assert!(i.min_remaining_ms.is_some_and(|ms| ms >= 2_000), "used too close to expiry: {i:?}");
    }
}
