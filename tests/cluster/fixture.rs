//! The cluster tests' world: the cluster of `hack/cluster.sh` (these tests run inside
//! its network and mount namespaces, `hack/cluster.sh exec`), its OCI registry, one
//! Helm release per test installed from that registry, an ADS emulator per test on
//! 127.0.0.1, and what the running containers show in `/proc`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ads_export_operator::api::{CONDITION_READY, ContinuousExport};
use ads_export_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::wait::delete::{Error as DeleteError, delete_and_finalize};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::support;

/// Home region of every emulator and `awsRegion` of every release.
pub const REGION: &str = "us-west-2";

/// Deadline for waits on pods (image pulls, probes, restarts on 2 busy cores).
pub const POD_DEADLINE: Duration = Duration::from_secs(180);

/// Deadline for waits on exports.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Lease duration the releases use (`leaderElection.leaseDuration`), in seconds.
pub const LEASE_SECONDS: u64 = 15;

/// The running cluster (`hack/cluster.sh env`).
pub struct Cluster {
    /// `host:port` of the registry (`CLUSTER_REGISTRY`).
    pub registry: String,
    /// Port of the apiserver on 127.0.0.1 (`CLUSTER_APISERVER_PORT`).
    pub apiserver_port: String,
}

/// The cluster these tests run in; panics with the fix when run outside it.
pub fn cluster() -> Cluster {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the cluster tests inside the cluster bed (hack/cluster.sh exec cargo test --features cluster-tests --test cluster)")
        })
    };
    Cluster { registry: var("CLUSTER_REGISTRY"), apiserver_port: var("CLUSTER_APISERVER_PORT") }
}

/// Runs `cmd`, panics with its output unless it succeeds; returns stdout.
pub fn run(what: &str, cmd: &mut Command) -> String {
    run_with_stderr(what, cmd).0
}

/// Runs `cmd`, panics with its output unless it succeeds; returns stdout and stderr.
pub fn run_with_stderr(what: &str, cmd: &mut Command) -> (String, String) {
    let out: Output = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}{stderr}", out.status);
    (stdout, stderr)
}

/// `hack/image.sh <args>` against the cluster's registry; the reference it pushed.
pub fn image_sh(args: &[&str]) -> String {
    let script = support::repo_root().join("hack/image.sh");
    let out = run(&format!("hack/image.sh {}", args.join(" ")), Command::new(script).args(args));
    out.lines().last().expect("image.sh prints the pushed reference").to_owned()
}

/// Pushes the chart and the operator image tagged `tag` (once per tag per test binary).
pub fn push_image(tag: &str, labels: &[&str]) -> String {
    let mut args = vec!["operator", "--tag", tag];
    for l in labels {
        args.extend(["--label", l]);
    }
    image_sh(&args)
}

/// A namespace `<prefix>-<random>` whose Pod Security admission `modes` (`enforce`,
/// `warn`, `audit`) apply the "restricted" profile.
pub async fn psa_namespace(client: &Client, prefix: &str, modes: &[&str]) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{prefix}-{}", &suffix[..8]);
    let mut labels: std::collections::BTreeMap<String, String> =
        [(support::TEST_NAMESPACE_LABEL.to_string(), "true".to_string())].into();
    for mode in modes {
        labels.insert(format!("pod-security.kubernetes.io/{mode}"), "restricted".to_string());
    }
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(name.clone()), labels: Some(labels), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
    name
}

/// The release namespace: "restricted" in `warn` and `audit` mode. Not `enforce`: the
/// pods use `hostNetwork: true` (the project's network rule), which every profile but
/// "privileged" forbids; install_from_oci... checks that hostNetwork is the only
/// control the pods miss and that without it the apiserver admits them under
/// `enforce: restricted`.
pub async fn release_namespace(client: &Client, prefix: &str) -> String {
    psa_namespace(client, prefix, &["warn", "audit"]).await
}

/// One test's release: the operator installed with `helm install oci://...` into a
/// namespace of its own, its emulator, and the one namespace it watches (`exports`).
///
/// Every test ends with [`Release::finish`]: it deletes the test's ContinuousExports
/// while the operator runs and this test's runtime keeps serving the emulator (the
/// operator's cleanup calls it), then uninstalls. Dropping a release that was not
/// uninstalled cleans up best-effort and, unless the test is already panicking, fails
/// the test (see the `Drop` impl).
pub struct Release {
    pub client: Client,
    pub name: String,
    pub ns: String,
    /// Where the test's ContinuousExports live.
    pub exports: String,
    pub emu: RunningEmulator,
    pub chart: String,
    /// Seconds from `helm install` to every replica Running and Ready.
    pub install_to_ready: f64,
    /// What `helm install` printed on stderr (the apiserver's warnings among it).
    pub install_stderr: String,
    /// How the pods get their AWS credentials, and other values of this release.
    pub setup: Setup,
    /// Namespaces [`Release::create_export`] wrote to, besides `exports`.
    export_namespaces: Mutex<BTreeSet<String>>,
    uninstalled: bool,
}

/// What a release adds to the values every release has: environment variables
/// (`extraEnv`), volumes and their mounts (`extraVolumes`, `extraVolumeMounts`, JSON
/// lists of Kubernetes `Volume` / `VolumeMount`) and `--set` values (`key=value`).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub env: Vec<(String, String)>,
    pub volumes: Vec<Value>,
    pub volume_mounts: Vec<Value>,
    pub sets: Vec<String>,
}

impl Setup {
    /// Static keys in the environment, accepted by the emulator outside strict mode.
    pub fn static_keys() -> Setup {
        let env = [("AWS_ACCESS_KEY_ID", "AKIDTEST"), ("AWS_SECRET_ACCESS_KEY", "test-secret")];
        Setup { env: env.map(|(k, v)| (k.to_owned(), v.to_owned())).into(), ..Setup::default() }
    }
}

/// An ADS emulator on 127.0.0.1 with home region [`REGION`].
pub async fn spawn_emulator() -> RunningEmulator {
    Emulator::new(EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() })
        .spawn("127.0.0.1:0")
        .await
        .expect("start the emulator")
}

impl Release {
    /// Installs release `name` (image tag `tag`, metrics on `port` on each node),
    /// watching a new namespace `<name>-cex-<random>`, and waits until its replicas are
    /// Running and Ready.
    pub async fn install(name: &str, tag: &str, port: u16) -> Release {
        let client = support::testbed().client().await;
        let exports = support::namespace(&client, &format!("{name}-cex")).await;
        Release::install_watching(name, tag, port, &exports).await
    }

    /// Like [`Release::install`], watching namespace `exports` (which must exist), or
    /// every namespace when `exports` is empty.
    pub async fn install_watching(name: &str, tag: &str, port: u16, exports: &str) -> Release {
        Release::install_with(name, tag, port, exports, spawn_emulator().await, Setup::static_keys()).await
    }

    /// Like [`Release::install_watching`], calling emulator `emu` with the AWS setup `setup`.
    pub async fn install_with(
        name: &str,
        tag: &str,
        port: u16,
        exports: &str,
        emu: RunningEmulator,
        setup: Setup,
    ) -> Release {
        let cluster = cluster();
        let client = support::testbed().client().await;
        let chart = image_sh(&["chart"]);
        let ns = release_namespace(&client, name).await;
        let exports = exports.to_owned();
        let mut release = Release {
            client,
            name: name.to_owned(),
            ns,
            exports,
            emu,
            chart,
            install_to_ready: 0.0,
            install_stderr: String::new(),
            setup,
            export_namespaces: Mutex::default(),
            uninstalled: false,
        };
        let started = Instant::now();
        let mut args: Vec<String> =
            ["install", name, &release.chart, "--plain-http", "-n", &release.ns].map(str::to_owned).into();
        args.extend(release.values(&cluster, tag, port));
        let bed = support::testbed();
        release.install_stderr = run_with_stderr("helm install", bed.command(bed.helm()).args(&args)).1;
        release.wait_replicas_ready(2, tag).await;
        release.install_to_ready = started.elapsed().as_secs_f64();
        eprintln!("{name}: helm install -> 2 replicas Running+Ready in {:.1}s", release.install_to_ready);
        release
    }

    /// The `--set` flags of every install and upgrade.
    fn values(&self, cluster: &Cluster, tag: &str, port: u16) -> Vec<String> {
        let sets = [
            format!("image.repository={}/ads-export-operator", cluster.registry),
            format!("image.tag={tag}"),
            "hostNetwork=true".into(),
            format!("metrics.port={port}"),
            format!("awsRegion={REGION}"),
            format!("awsEndpointUrl={}", self.emu.endpoint_url()),
            format!("watchNamespace={}", self.exports),
            format!("leaderElection.leaseDuration={LEASE_SECONDS}s"),
            "leaderElection.renewInterval=3s".into(),
            "backoff.base=500ms".into(),
            "backoff.max=5s".into(),
            "resyncPeriod=10m".into(),
        ];
        let env = [
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", cluster.apiserver_port.as_str()),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ];
        let env = env.iter().map(|(k, v)| (*k, *v)).chain(self.setup.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut out = Vec::new();
        for s in sets.into_iter().chain(self.setup.sets.iter().cloned()) {
            out.extend(["--set".to_owned(), s]);
        }
        let env: Vec<Value> = env.map(|(k, v)| json!({"name": k, "value": v})).collect();
        out.extend(["--set-json".to_owned(), format!("extraEnv={}", Value::from(env))]);
        if !self.setup.volumes.is_empty() {
            out.extend(["--set-json".to_owned(), format!("extraVolumes={}", Value::from(self.setup.volumes.clone()))]);
        }
        if !self.setup.volume_mounts.is_empty() {
            let mounts = Value::from(self.setup.volume_mounts.clone());
            out.extend(["--set-json".to_owned(), format!("extraVolumeMounts={mounts}")]);
        }
        out
    }

    /// Runs helm (the bed's binary, its dirs in the bed) with `args`; stdout.
    pub fn helm(&self, args: &[String]) -> String {
        let bed = support::testbed();
        run(&format!("helm {}", args.join(" ")), bed.command(bed.helm()).args(args))
    }

    /// Runs kubectl with `args`; stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let bed = support::testbed();
        run(&format!("kubectl {}", args.join(" ")), bed.command(bed.kubectl()).args(args))
    }

    /// `helm upgrade` to image `tag`, keeping every other value.
    pub fn upgrade(&self, tag: &str, port: u16) {
        let mut args: Vec<String> =
            ["upgrade", &self.name, &self.chart, "--plain-http", "-n", &self.ns].map(str::to_owned).into();
        args.extend(self.values(&cluster(), tag, port));
        self.helm(&args);
    }

    pub fn pods_api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn exports_api(&self) -> Api<ContinuousExport> {
        Api::namespaced(self.client.clone(), &self.exports)
    }

    /// The release's pods (not yet deleted).
    pub async fn pods(&self) -> Vec<Pod> {
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        let list = self.pods_api().list(&ListParams::default().labels(&selector)).await.expect("list pods");
        list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
    }

    /// Waits until exactly `n` pods run image tag `tag`, all Running and Ready; returns them.
    pub async fn wait_replicas_ready(&self, n: usize, tag: &str) -> Vec<Pod> {
        let what = format!("{}: {n} pods of tag {tag} Running and Ready", self.ns);
        support::wait_for_ok(&what, POD_DEADLINE, || async {
            let pods = self.pods().await;
            let ready = pods.iter().filter(|p| pod_ready(p) && pod_image(p).ends_with(&format!(":{tag}"))).count();
            if ready == n && pods.len() == n { Ok(pods) } else { Err(pods.iter().map(pod_summary).collect::<Vec<_>>()) }
        })
        .await
    }

    /// The Lease's holder identity, once it names a live pod of the release.
    pub async fn leader_identity(&self) -> (String, String) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.ns);
        let lease_name = format!("{}-ads-export-operator", self.name);
        support::wait_for_ok(&format!("lease {}/{lease_name} held by a pod", self.ns), POD_DEADLINE, || async {
            let lease = leases.get(&lease_name).await.map_err(|e| e.to_string())?;
            let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
            let pods: Vec<String> = self.pods().await.iter().filter_map(|p| p.metadata.name.clone()).collect();
            match pods.iter().find(|pod| identity_of_pod(&holder, pod)) {
                Some(pod) => Ok((pod.clone(), holder)),
                None => Err(format!("holder {holder:?}, pods {pods:?}")),
            }
        })
        .await
    }

    /// The pod holding the Lease.
    pub async fn leader(&self) -> String {
        self.leader_identity().await.0
    }

    /// Creates a ContinuousExport in the exports namespace (`ns`, or the release's).
    pub async fn create_export(&self, ns: &str, name: &str, spec: Value) {
        self.export_namespaces.lock().unwrap().insert(ns.to_owned());
        let api: Api<ContinuousExport> = Api::namespaced(self.client.clone(), ns);
        let obj: ContinuousExport = serde_json::from_value(json!({
            "apiVersion": "adsexport.io/v1alpha1", "kind": "ContinuousExport",
            "metadata": {"name": name, "namespace": ns}, "spec": spec,
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create {ns}/{name}: {e}"));
    }

    /// Creates ContinuousExport `name` with `spec` in namespace `ns` and waits until
    /// it is Ready and its export ACTIVE in the emulator; the export's ID.
    pub async fn active_export(&self, ns: &str, name: &str, spec: Value) -> String {
        self.create_export(ns, name, spec).await;
        let id = self.wait_export_ready(ns, name).await;
        assert_eq!(self.emulator_status(&id), "ACTIVE");
        id
    }

    /// Waits for Ready=True on the current generation; the export's ID.
    pub async fn wait_export_ready(&self, ns: &str, name: &str) -> String {
        let api: Api<ContinuousExport> = Api::namespaced(self.client.clone(), ns);
        support::wait_for_ok(&format!("{ns}/{name} Ready"), DEADLINE, || async {
            let o = api.get(name).await.map_err(|e| e.to_string())?;
            let st = o.status.clone().unwrap_or_default();
            match (st.condition(CONDITION_READY), st.export_id.clone()) {
                (Some(c), Some(id)) if c.status == "True" && c.observed_generation == o.metadata.generation => Ok(id),
                _ => Err(format!("{:#?}", o.status)),
            }
        })
        .await
    }

    /// The emulator's status of export `id` (ACTIVE, STOPPED, ...).
    pub fn emulator_status(&self, id: &str) -> String {
        let e = self.emu.emulator.exports().into_iter().find(|e| e.export_id == id).expect("export in emulator");
        e.status.as_str().to_owned()
    }

    /// Waits until the emulator reports export `id` in `status`.
    pub async fn wait_emulator_status(&self, id: &str, status: &str) {
        support::wait_for_ok(&format!("export {id} {status} in the emulator"), DEADLINE, || async {
            let now = self.emulator_status(id);
            if now == status { Ok(()) } else { Err(now) }
        })
        .await
    }

    /// The namespaces that may hold this test's ContinuousExports: `exports` (unless
    /// the release watches all namespaces) and every one [`Release::create_export`]
    /// wrote to.
    fn export_namespaces(&self) -> Vec<String> {
        let mut all = self.export_namespaces.lock().unwrap().clone();
        if !self.exports.is_empty() {
            all.insert(self.exports.clone());
        }
        all.into_iter().collect()
    }

    /// Deletes every ContinuousExport of the test and waits, on a watch of each
    /// (kube-runtime's `delete_and_finalize`), until it is gone: the operator released
    /// its finalizer after its cleanup calls to the emulator, which this runtime keeps
    /// serving meanwhile. So no object with a finalizer is left for a later test's
    /// operator (one watching all namespaces would adopt it and call its own
    /// emulator). Panics naming the objects still there after [`DEADLINE`].
    pub async fn delete_exports(&self) {
        let mut pending = Vec::new();
        for ns in self.export_namespaces() {
            let api: Api<ContinuousExport> = Api::namespaced(self.client.clone(), &ns);
            let list = api.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("list exports in {ns}: {e}"));
            for name in list.items.iter().map(ResourceExt::name_any) {
                let api = api.clone();
                let ns = ns.clone();
                pending.push(async move {
                    match delete_and_finalize(api, &name, &DeleteParams::default()).await {
                        Ok(()) => {}
                        Err(DeleteError::Delete(kube::Error::Api(s))) if s.code == 404 => {}
                        Err(e) => panic!("delete {ns}/{name}: {e}"),
                    }
                });
            }
        }
        if tokio::time::timeout(DEADLINE, futures::future::join_all(pending)).await.is_err() {
            panic!("ContinuousExports still there {DEADLINE:?} after their deletion: {}", self.exports_left().await);
        }
    }

    /// The test's ContinuousExports still in the cluster, with their finalizers and status.
    async fn exports_left(&self) -> String {
        let mut left = Vec::new();
        for ns in self.export_namespaces() {
            let api: Api<ContinuousExport> = Api::namespaced(self.client.clone(), &ns);
            for o in api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                left.push(format!("{ns}/{} (finalizers {:?}): {:?}", o.name_any(), o.metadata.finalizers, o.status));
            }
        }
        left.join("; ")
    }

    /// Deletes the test's ContinuousExports ([`Release::delete_exports`]), then
    /// `helm uninstall --wait` (on tokio's blocking pool, so the emulator is served
    /// meanwhile too).
    pub async fn uninstall(&mut self) {
        self.delete_exports().await;
        let args = ["uninstall".into(), self.name.clone(), "-n".into(), self.ns.clone(), "--wait".into()];
        let what = format!("helm {}", args.join(" "));
        tokio::task::spawn_blocking(move || {
            let bed = support::testbed();
            run(&what, bed.command(bed.helm()).args(args))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.uninstalled = true;
    }

    /// The end of every test that made a release: [`Release::uninstall`] unless the
    /// test already did.
    pub async fn finish(mut self) {
        if !self.uninstalled {
            self.uninstall().await;
        }
    }

    /// What a dropped release can still do without the emulator (a `Drop` cannot await,
    /// so the test's runtime, which serves the emulator, is blocked or already gone):
    /// `helm uninstall`, then delete the test's ContinuousExports and clear their
    /// finalizers. Clearing is safe here: the exports they guard live only in this
    /// test's emulator, which ends with the test, and with the operator uninstalled no
    /// one else would ever release them. Errors are ignored (best effort).
    fn remove_best_effort(&self) {
        let bed = support::testbed();
        let kubectl = |args: &[&str]| bed.command(bed.kubectl()).args(args).stdin(Stdio::null()).output();
        let _ = bed.command(bed.helm()).args(["uninstall", &self.name, "-n", &self.ns, "--wait"]).output();
        for ns in self.export_namespaces() {
            let _ = kubectl(&["delete", "cex", "--all", "-n", &ns, "--wait=false", "--ignore-not-found"]);
            let Ok(names) = kubectl(&["get", "cex", "-n", &ns, "-o", "name"]) else { continue };
            for name in String::from_utf8_lossy(&names.stdout).lines() {
                let _ =
                    kubectl(&["patch", name, "-n", &ns, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
            }
        }
    }
}

impl Drop for Release {
    /// Without [`Release::finish`] (or [`Release::uninstall`]): cleans up best-effort
    /// ([`Release::remove_best_effort`]), then panics so that the test fails and says
    /// why, unless the test is already panicking (its own failure is the one to see).
    fn drop(&mut self) {
        if self.uninstalled {
            return;
        }
        self.remove_best_effort();
        if !std::thread::panicking() {
            panic!(
                "release {} (namespace {}) dropped without `finish`: end the test with `release.finish().await`, \
                 which deletes its ContinuousExports while the emulator still answers the operator, then uninstalls",
                self.name, self.ns
            );
        }
    }
}

/// Whether Lease holder identity `holder` is pod `pod`'s: the pod name, `-`, and the
/// random suffix of that process (src/leader.rs).
pub fn identity_of_pod(holder: &str, pod: &str) -> bool {
    holder.strip_prefix(pod).and_then(|rest| rest.strip_prefix('-')).is_some_and(|s| !s.is_empty() && !s.contains('-'))
}

pub fn pod_ready(p: &Pod) -> bool {
    let st = p.status.as_ref();
    st.and_then(|s| s.phase.as_deref()) == Some("Running")
        && st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_image(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

/// The operator container's status.
pub fn container_status(p: &Pod) -> k8s_openapi::api::core::v1::ContainerStatus {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first().cloned())
        .unwrap_or_else(|| panic!("pod {:?} has no container status", p.metadata.name))
}

fn pod_summary(p: &Pod) -> String {
    let st = p.status.as_ref();
    format!(
        "{} on {:?}: phase {:?}, image {}, conditions {:?}, containers {:?}",
        p.metadata.name.as_deref().unwrap_or("?"),
        p.spec.as_ref().and_then(|s| s.node_name.clone()),
        st.and_then(|s| s.phase.clone()),
        pod_image(p),
        st.and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().map(|c| format!("{}={}", c.type_, c.status)).collect::<Vec<_>>()),
        st.and_then(|s| s.container_statuses.as_ref()).map(|cs| cs
            .iter()
            .map(|c| format!("restarts {} state {:?}", c.restart_count, c.state))
            .collect::<Vec<_>>()),
    )
}

/// A process of a running container, read from `/proc` (the test shares the nodes'
/// PID namespace: the bed creates no PID namespace).
pub struct ContainerProcess {
    pub pid: u32,
}

impl ContainerProcess {
    /// The `ads-export-operator` process whose environment holds `POD_NAME=<pod>`,
    /// once exactly one exists.
    pub async fn of_pod(pod: &str) -> ContainerProcess {
        let needle = format!("POD_NAME={pod}");
        support::wait_for_ok(&format!("the operator process of pod {pod}"), POD_DEADLINE, || async {
            let pids = operator_pids(|environ| environ.split('\0').any(|kv| kv == needle));
            match pids.as_slice() {
                [pid] => Ok(ContainerProcess { pid: *pid }),
                other => Err(format!("processes: {other:?}")),
            }
        })
        .await
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.pid))
            .unwrap_or_else(|e| panic!("/proc/{}/{name}: {e}", self.pid))
    }

    /// A `Key:` line of `/proc/<pid>/status`, its value fields.
    pub fn status_field(&self, key: &str) -> Vec<String> {
        let status = self.file("status");
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in {status}"));
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    }

    /// The mount options of the process's root filesystem (`/proc/<pid>/mountinfo`).
    pub fn root_mount_options(&self) -> Vec<String> {
        let info = self.file("mountinfo");
        // Fields: id parent major:minor root mountpoint options ...; the last "/" mount wins.
        let root = info.lines().rfind(|l| l.split_whitespace().nth(4) == Some("/")).expect("a / mount");
        root.split_whitespace().nth(5).unwrap().split(',').map(str::to_owned).collect()
    }

    /// Whether `path` exists in the container's root filesystem.
    pub fn has_path(&self, path: &str) -> bool {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid)).symlink_metadata().is_ok()
    }
}

/// PIDs of the `ads-export-operator` processes whose environment satisfies `pred`.
pub fn operator_pids(pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if argv0 != b"/usr/local/bin/ads-export-operator" {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if pred(&String::from_utf8_lossy(&environ)) {
            pids.push(pid);
        }
    }
    pids
}
