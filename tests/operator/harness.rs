//! Per-test fixture: a namespace on the bed, an ADS emulator, and the operator
//! (in-process or as its binary), plus waits with deadlines.

use std::process::Stdio;
use std::time::Duration;

use ads_export_operator::ads::aws::AwsExportService;
use ads_export_operator::api::{CONDITION_READY, ContinuousExport, ContinuousExportStatus};
use ads_export_operator::controller::{self, ReconcileObserver, Settings};
use ads_export_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use aws_config::{BehaviorVersion, Region, retry::RetryConfig};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{REGION, support};

/// The emulator settings most tests use: home region [`REGION`], no delays.
pub fn cfg() -> EmulatorConfig {
    EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() }
}

/// Deadline for ordinary waits (generous: 2 cores, many tests at once).
pub const DEADLINE: Duration = Duration::from_secs(45);

/// One test's world.
pub struct Test {
    pub client: Client,
    pub ns: String,
    pub api: Api<ContinuousExport>,
    pub emu: RunningEmulator,
}

/// The operator running in this process; stopped (aborted) on drop.
pub struct InProcess {
    _stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// The operator binary, a direct child of the test process (its PID is the operator's own);
/// SIGKILLed on drop. Its stdout and stderr go to `log`.
pub struct Process {
    /// Locked only briefly, to ask whether it has exited (which reaps it).
    child: std::sync::Mutex<tokio::process::Child>,
    /// The log file.
    pub log: std::path::PathBuf,
}

impl Process {
    fn child(&mut self) -> &mut tokio::process::Child {
        self.child.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// SIGKILL, as a node failure or OOM kill would: no clean-up code runs.
    pub async fn kill(&mut self) {
        self.child().kill().await.expect("kill the operator process");
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child().id().expect("running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        tokio::time::timeout(DEADLINE, self.child().wait()).await.expect("exit after SIGTERM").unwrap()
    }

    /// Waits up to `limit` for the process to exit on its own; its exit status, or
    /// `None` if it still runs.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child().wait()).await.ok().map(|r| r.expect("wait for the operator"))
    }

    /// `None` while the process runs; once it has exited, how it ended ("exited with status
    /// 1", "killed by SIGKILL") and the tail of its log.
    pub fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let status = child.try_wait().ok()??;
        Some(format!(
            "the operator process {}; last lines of {}:\n{}",
            support::process::describe(status),
            self.log.display(),
            tail(&self.log_text())
        ))
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The base URL of the metrics server, from its start-up log line. Panics at once, with
    /// its exit status and log tail, if the process exits first.
    pub async fn metrics_url(&self) -> String {
        support::wait_for_ok(&format!("metrics address in {}", self.log.display()), DEADLINE, || async {
            if let Some(how) = self.exited() {
                panic!("{how}");
            }
            let text = self.log_text();
            let line = text.lines().find(|l| l.contains("serving /metrics")).ok_or_else(|| tail(&text))?;
            let addr = line
                .split(['=', ' ', '"', ','])
                .skip_while(|w| !w.ends_with("addr") && *w != "addr")
                .find(|w| w.starts_with("127.0.0.1:"))
                .ok_or_else(|| line.to_owned())?;
            Ok::<_, String>(format!("http://{addr}"))
        })
        .await
    }
}

impl Drop for Process {
    /// A test that fails because the operator died says how it died (kill_on_drop then
    /// SIGKILLs one that still runs).
    fn drop(&mut self) {
        if let Some(how) = self.exited() {
            eprintln!("{how}");
        }
    }
}

fn tail(text: &str) -> String {
    support::process::tail(text, 20)
}

impl Test {
    /// A fresh namespace (prefix `prefix`) and an emulator configured by `cfg`.
    pub async fn new(prefix: &str, cfg: EmulatorConfig) -> Test {
        let bed = support::testbed();
        let client = bed.client().await;
        support::apply_crd(&client, &ads_export_operator::api::crd()).await;
        support::apply_crd(&client, &ads_export_operator::api::account_crd()).await;
        let ns = support::namespace(&client, prefix).await;
        let emu = Emulator::new(cfg).spawn("127.0.0.1:0").await.expect("start the emulator");
        let api = Api::namespaced(client.clone(), &ns);
        Test { client, ns, api, emu }
    }

    /// Starts the controller in-process for this namespace; `tweak` adjusts settings
    /// (defaults here: region [`REGION`], resync 10 min, backoff 500 ms to 5 s).
    pub async fn operator(&self, tweak: impl FnOnce(&mut Settings)) -> InProcess {
        self.operator_observed(tweak, None).await
    }

    /// [`operator`](Self::operator) with a metrics hook (e.g. to count reconciles).
    pub async fn operator_observed(
        &self,
        tweak: impl FnOnce(&mut Settings),
        observer: Option<std::sync::Arc<dyn ReconcileObserver>>,
    ) -> InProcess {
        self.operator_with_client(self.client.clone(), tweak, observer).await
    }

    /// [`operator_observed`](Self::operator_observed) with its own Kubernetes `client`
    /// (e.g. one from [`counting_client`]).
    pub async fn operator_with_client(
        &self,
        client: Client,
        tweak: impl FnOnce(&mut Settings),
        observer: Option<std::sync::Arc<dyn ReconcileObserver>>,
    ) -> InProcess {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.emu.endpoint_url())
            .credentials_provider(aws_credential_types::Credentials::new("AKIDTEST", "test-secret", None, None, "test"))
            // one attempt per call, so emulator call counters count reconciles
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        let mut settings = Settings {
            default_region: Some(REGION.into()),
            namespace: Some(self.ns.clone()),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            ..Settings::default()
        };
        tweak(&mut settings);
        let (tx, rx) = oneshot::channel::<()>();
        let ads = AwsExportService::from_sdk_config(sdk);
        let handle = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = controller::run(client, ads, settings, observer, shutdown).await {
                panic!("controller failed: {e:#}");
            }
        });
        InProcess { _stop: tx, handle }
    }

    /// Starts the operator binary for this namespace (logs to `target/test-logs/`).
    pub async fn operator_process(&self) -> Process {
        self.spawn_operator("operator", &self.operator_args(), &[], support::testbed().kubeconfig_path()).await
    }

    /// The `run` flags [`operator_process`](Self::operator_process) uses: this namespace,
    /// the emulator, fast backoff, metrics on a free port.
    pub fn operator_args(&self) -> Vec<String> {
        let url = self.emu.endpoint_url();
        ["run", "--namespace", &self.ns, "--aws-region", REGION, "--aws-endpoint-url", &url]
            .into_iter()
            .chain(["--backoff-base", "500ms", "--backoff-max", "5s", "--metrics-addr", "127.0.0.1:0"])
            .map(str::to_owned)
            .collect()
    }

    /// Starts the operator binary with `args` and extra `env`, as `kubeconfig`'s user,
    /// with dummy AWS credentials; logs to `target/test-logs/<ns>-<label>.log`.
    pub async fn spawn_operator(
        &self,
        label: &str,
        args: &[String],
        env: &[(&str, &str)],
        kubeconfig: &std::path::Path,
    ) -> Process {
        let keys = [("AWS_ACCESS_KEY_ID", "AKIDTEST"), ("AWS_SECRET_ACCESS_KEY", "test-secret")];
        self.spawn_operator_with_env(label, args, &[&keys, env].concat(), kubeconfig).await
    }

    /// Starts the operator binary with `args` and only `env` for AWS (no static keys,
    /// no profile, no IMDS): it finds credentials through the SDK's default chain as
    /// EKS's injected variables direct it. Logs like [`Self::spawn_operator`].
    pub async fn spawn_operator_with_env(
        &self,
        label: &str,
        args: &[String],
        env: &[(&str, &str)],
        kubeconfig: &std::path::Path,
    ) -> Process {
        let logs = support::repo_root().join("target/test-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let path = logs.join(format!("{}-{label}.log", self.ns));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ads-export-operator"));
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .env("POD_NAME", label)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the operator binary");
        Process { child: std::sync::Mutex::new(child), log: path }
    }

    /// Creates an object from raw JSON (so even values our types reject reach the
    /// apiserver); the apiserver's error message on rejection.
    pub async fn try_create(&self, name: &str, spec: Value) -> Result<ContinuousExport, String> {
        let body = json!({
            "apiVersion": "adsexport.io/v1alpha1",
            "kind": "ContinuousExport",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        });
        let req = kube::core::Request::new(self.api.resource_url())
            .create(&PostParams::default(), serde_json::to_vec(&body).unwrap())
            .map_err(|e| e.to_string())?;
        self.client.request::<ContinuousExport>(req).await.map_err(|e| e.to_string())
    }

    /// Creates an object or panics.
    pub async fn create(&self, name: &str, spec: Value) -> ContinuousExport {
        self.try_create(name, spec).await.unwrap_or_else(|e| panic!("create {name}: {e}"))
    }

    /// Merge-patches the spec; the apiserver's error message on rejection.
    pub async fn try_patch_spec(&self, name: &str, spec: Value) -> Result<ContinuousExport, String> {
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
            .await
            .map_err(|e| e.to_string())
    }

    /// Merge-patches the spec or panics.
    pub async fn patch_spec(&self, name: &str, spec: Value) -> ContinuousExport {
        self.try_patch_spec(name, spec).await.unwrap_or_else(|e| panic!("patch {name}: {e}"))
    }

    /// Reads an object or panics.
    pub async fn get(&self, name: &str) -> ContinuousExport {
        self.api.get(name).await.unwrap_or_else(|e| panic!("get {name}: {e}"))
    }

    /// Waits until the status satisfies `pred`; panics with the last status on timeout.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        pred: impl Fn(&ContinuousExportStatus) -> bool,
    ) -> ContinuousExport {
        support::wait_for_ok(&format!("{}/{name}: {what}", self.ns), DEADLINE, || async {
            let o = self.api.get(name).await.map_err(|e| e.to_string())?;
            match o.status.as_ref() {
                Some(s) if pred(s) => Ok(o),
                s => Err(format!("{s:#?}")),
            }
        })
        .await
    }

    /// Waits for `Ready=True` observed on the current generation.
    pub async fn wait_ready(&self, name: &str) -> ContinuousExport {
        support::wait_for_ok(&format!("{}/{name}: Ready=True on the current generation", self.ns), DEADLINE, || async {
            let o = self.api.get(name).await.map_err(|e| e.to_string())?;
            let ready = o.status.as_ref().and_then(|s| s.condition(CONDITION_READY)).cloned();
            match ready {
                Some(c) if c.status == "True" && c.observed_generation == o.metadata.generation => Ok(o),
                _ => Err(format!("generation {:?}, status {:#?}", o.metadata.generation, o.status)),
            }
        })
        .await
    }

    /// Waits until the object no longer carries annotation `key`; panics with the
    /// annotations it still has on timeout.
    pub async fn wait_annotation_gone(&self, name: &str, key: &str) {
        support::wait_for_ok(&format!("{}/{name}: annotation {key} removed", self.ns), DEADLINE, || async {
            let o = self.api.get(name).await.map_err(|e| e.to_string())?;
            match o.metadata.annotations {
                Some(a) if a.contains_key(key) => Err(format!("annotations {a:?}")),
                _ => Ok(()),
            }
        })
        .await;
    }

    /// Waits until the object no longer exists.
    pub async fn wait_gone(&self, name: &str) {
        support::wait_for_ok(&format!("{}/{name} to be deleted", self.ns), DEADLINE, || async {
            match self.api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(o)) => Err(format!("still there: {:#?}", o.status)),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }

    /// Waits for an event with `reason` about object `name`.
    pub async fn expect_event(&self, name: &str, reason: &str) {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        support::wait_for_ok(&format!("event {reason} on {name}"), DEADLINE, || async {
            let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let seen: Vec<_> = list
                .items
                .iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .map(|e| e.reason.clone().unwrap_or_default())
                .collect();
            if seen.iter().any(|r| r == reason) { Ok(()) } else { Err(format!("events: {seen:?}")) }
        })
        .await;
    }

    /// `kubectl apply`s `examples/<file>` into this namespace, after `tweak` edits it
    /// (and renames it when `rename` is not empty). Returns the object's name.
    pub async fn apply_example(&self, file: &str, rename: &str, tweak: impl FnOnce(&mut Value)) -> String {
        let path = support::repo_root().join("examples").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if !rename.is_empty() {
            doc["metadata"]["name"] = json!(rename);
        }
        tweak(&mut doc);
        let name = doc["metadata"]["name"].as_str().expect("example has a name").to_owned();
        let bed = support::testbed();
        let mut cmd = bed.command(bed.kubectl());
        cmd.args(["apply", "-n", &self.ns, "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("kubectl");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(serde_yaml::to_string(&doc).unwrap().as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl apply {file}: {}", String::from_utf8_lossy(&out.stderr));
        name
    }

    /// The emulator's status of export `id`.
    pub fn export_status(&self, id: &str) -> String {
        let e = self.emu.emulator.exports().into_iter().find(|e| e.export_id == id).expect("export in emulator");
        serde_json::to_value(e.status).unwrap().as_str().unwrap().to_owned()
    }

    /// An SDK client of this test's emulator (as the console or CLI would call ADS).
    pub fn out_of_band_client(&self) -> aws_sdk_applicationdiscovery::Client {
        let conf = aws_sdk_applicationdiscovery::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.emu.endpoint_url())
            .credentials_provider(aws_credential_types::Credentials::new("AKIDTEST", "s", None, None, "test"))
            .build();
        aws_sdk_applicationdiscovery::Client::from_conf(conf)
    }

    /// Starts an export directly through the SDK (as the console would) and waits
    /// until it is ACTIVE. Returns its ID.
    pub async fn start_export_out_of_band(&self) -> String {
        let out = self.out_of_band_client().start_continuous_export().send().await.unwrap();
        let id = out.export_id().unwrap().to_owned();
        support::wait_for("out-of-band export ACTIVE", DEADLINE, || async {
            (self.export_status(&id) == "ACTIVE").then_some(())
        })
        .await;
        id
    }
}

/// A [`ReconcileObserver`] that counts finished reconciles.
#[derive(Default)]
pub struct Reconciles(pub std::sync::atomic::AtomicU64);

impl ReconcileObserver for Reconciles {
    fn reconciled(&self, _: &'static str, _: Duration) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn export_status(&self, _: &str, _: Option<&str>) {}
    fn deleted(&self, _: &str) {}
}

/// An admin client of the bed that counts the requests `counted(method, path)` selects,
/// and the count: what an operator given this client sends to the apiserver.
pub async fn counting_client(
    counted: impl Fn(&http::Method, &str) -> bool + Clone + Send + Sync + 'static,
) -> (Client, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = count.clone();
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        if counted(req.method(), req.uri().path()) {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        req
    });
    let config = support::config_from(support::testbed().kubeconfig_path()).await;
    let builder = kube::client::ClientBuilder::try_from(config).expect("a client builder");
    (builder.with_layer(&layer).build(), count)
}

/// Milliseconds since the epoch as `status` formats times (RFC 3339, UTC, ms).
pub fn format_ms(ms: u64) -> String {
    let t = k8s_openapi::jiff::Timestamp::from_millisecond(ms as i64).unwrap();
    ads_export_operator::ads::format_time(t)
}

/// Asserts `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn assert_rfc3339_ms(s: &str) {
    let ok = s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && s.parse::<k8s_openapi::jiff::Timestamp>().is_ok();
    assert!(ok, "{s:?} is not RFC 3339 UTC with milliseconds");
}
