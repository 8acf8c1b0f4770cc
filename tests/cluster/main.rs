//! End-to-end tests on a real cluster (`hack/cluster.sh`: kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler, two nodes of containerd + kubelet, a CNCF
//! Distribution registry), run inside the cluster's network and mount namespaces:
//! the operator image built by `hack/image.sh` and the chart, both pulled from the
//! registry, run as pods; the ADS emulator runs in this process on 127.0.0.1.
//!
//! Built only with `--features cluster-tests` (hack/test.sh's cluster step): outside
//! the cluster bed these tests cannot run. Run them one at a time (`--test-threads 1`):
//! each release's replicas take the metrics host port on both nodes. Every test that
//! installs a `Release` ends with `release.finish().await` (fixture.rs says why);
//! dropping one without it fails the test.

#[path = "../support/mod.rs"]
mod support;

mod credentials;
mod fixture;

use std::time::{Duration, Instant};

use ads_export_operator::ads::Operation;
use fixture::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

/// The tag of the image every release starts from (pushed once per test binary).
fn base_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        push_image("cluster-base", &[]);
        "cluster-base".to_owned()
    })
}

#[tokio::test]
async fn helm_install_from_oci_runs_two_ready_replicas_with_one_leader() {
    let mut r = Release::install("install", base_tag(), 18081).await;
    let pods = r.wait_replicas_ready(2, base_tag()).await;

    // One replica per node (hostNetwork: the metrics port is a host port).
    let mut nodes: Vec<_> = pods.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2"]);
    // The kubelet pulled the image from the bed's registry.
    let registry = cluster().registry;
    for p in &pods {
        let image_id = container_status(p).image_id;
        assert!(image_id.starts_with(&format!("{registry}/ads-export-operator@sha256:")), "{image_id}");
    }
    let (leader, identity) = r.leader_identity().await;
    let names: Vec<_> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert!(names.contains(&leader), "leader {leader} ({identity}) among {names:?}");

    // Pod Security "restricted": the apiserver finds one violation in the chart's pods,
    // hostNetwork (which the project's network rule requires) ...
    // (helm logs the warning klog-quoted: `"Warning: would violate PodSecurity \"restricted:latest\": ..."`)
    let violations: Vec<&str> = r
        .install_stderr
        .lines()
        .filter(|l| l.contains("would violate PodSecurity"))
        .filter_map(|l| l.split_once("restricted:latest").map(|(_, v)| v))
        .map(|v| v.trim_start_matches(['\\', '"', ':', ' ']).trim_end_matches(['\\', '"', ' ']))
        .collect();
    assert_eq!(violations, ["host namespaces (hostNetwork=true)"], "helm install said: {}", r.install_stderr);
    // ... and, enforcing it, admits the same pod off the host network and refuses it on it.
    let enforcing = psa_namespace(&r.client, "enforce", &["enforce"]).await;
    let pod = &pods[0];
    let template = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "dry-run", "namespace": enforcing}, "spec": pod.spec});
    let dry = kube::api::PostParams { dry_run: true, ..Default::default() };
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(r.client.clone(), &enforcing);
    let mut on_host = template.clone();
    on_host["spec"]["nodeName"] = json!(null);
    // (the release's ServiceAccount is not in that namespace; its own default one is)
    on_host["spec"]["serviceAccountName"] = json!("default");
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(r.client.clone(), &enforcing);
    support::wait_for("the default ServiceAccount", POD_DEADLINE, || async {
        accounts.get_opt("default").await.ok().flatten().map(|_| ())
    })
    .await;
    let refused = api.create(&dry, &serde_json::from_value(on_host.clone()).unwrap()).await;
    let err = refused.expect_err("enforce: restricted refuses hostNetwork").to_string();
    assert!(err.contains("violates PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true)"), "{err}");
    let mut off_host = on_host;
    off_host["spec"]["hostNetwork"] = json!(false);
    for c in off_host["spec"]["containers"].as_array_mut().unwrap() {
        for port in c["ports"].as_array_mut().into_iter().flatten() {
            port.as_object_mut().unwrap().remove("hostPort");
        }
    }
    api.create(&dry, &serde_json::from_value(off_host).unwrap())
        .await
        .expect("enforce: restricted admits the chart's pod off the host network");

    // `helm uninstall` leaves what the README says: the CRD and the Lease stay,
    // the release's own objects go.
    r.uninstall().await;
    r.kubectl(&["get", "crd", "continuousexports.adsexport.io"]);
    r.kubectl(&["get", "lease", "-n", &r.ns, "install-ads-export-operator"]);
    support::wait_for_ok("the release's namespaced objects to be gone", POD_DEADLINE, || async {
        let left = r.kubectl(&["get", "deploy,rs,sa,role,rolebinding,service,pdb", "-n", &r.ns, "-o", "name"]);
        // The namespace's own default ServiceAccount is not the release's.
        let left: Vec<_> = left.lines().filter(|l| *l != "serviceaccount/default").map(str::to_owned).collect();
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await;
    let cluster_wide = r.kubectl(&["get", "clusterrole,clusterrolebinding", "-o", "name"]);
    assert!(!cluster_wide.contains(&format!("{}-", r.name)), "{cluster_wide}");
    support::wait_for("the release's pods to be gone", POD_DEADLINE, || async {
        r.pods().await.is_empty().then_some(())
    })
    .await;
    r.finish().await;
}

#[tokio::test]
async fn the_running_container_is_read_only_non_root_without_capabilities() {
    let r = Release::install("hardened", base_tag(), 18082).await;
    for pod in r.wait_replicas_ready(2, base_tag()).await {
        let name = pod.metadata.name.clone().unwrap();
        let p = ContainerProcess::of_pod(&name).await;
        // Real, effective, saved and filesystem IDs.
        assert_eq!(p.status_field("Uid"), ["65532"; 4], "{name}");
        assert_eq!(p.status_field("Gid"), ["65532"; 4], "{name}");
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(p.status_field(set), ["0000000000000000"], "{name}: {set}");
        }
        assert_eq!(p.status_field("NoNewPrivs"), ["1"], "{name}");
        assert_eq!(p.status_field("Seccomp"), ["2"], "{name}: seccomp filter mode (RuntimeDefault)");
        let options = p.root_mount_options();
        assert!(options.iter().any(|o| o == "ro"), "{name}: root mounted {options:?}");
        // The image's layout: no shell, CA certificates, both binaries.
        assert!(!p.has_path("/bin/sh") && !p.has_path("/usr/bin/sh"), "{name}: a shell in the image");
        assert!(p.has_path("/etc/ssl/certs/ca-certificates.crt"), "{name}: no CA certificates");
        for path in dockerfile_runtime().copied {
            assert!(p.has_path(&path), "{name}: {path} (copied by the Dockerfile) missing");
        }
    }
    r.finish().await;
}

#[tokio::test]
async fn an_export_is_started_stopped_and_deleted_by_the_in_cluster_operator() {
    let r = Release::install("lifecycle", base_tag(), 18083).await;
    let ns = r.exports.clone();
    let spec = json!({"deletionPolicy": "Delete", "writeInfoTo": {"configMapName": "inv-info"}});
    let id = r.active_export(&ns, "inv", spec).await;
    // The connection info, written by the in-cluster operator with the chart's RBAC.
    let config_maps: Api<ConfigMap> = Api::namespaced(r.client.clone(), &ns);
    let info_has = |key: &'static str, value: String| {
        let config_maps = config_maps.clone();
        async move {
            let cm = config_maps.get_opt("inv-info").await.map_err(|e| e.to_string())?;
            let data = cm.and_then(|cm| cm.data).unwrap_or_default();
            if data.get(key) == Some(&value) { Ok(()) } else { Err(format!("{data:?}")) }
        }
    };
    support::wait_for_ok("ConfigMap inv-info with the export's ID", DEADLINE, || info_has("exportId", id.clone()))
        .await;

    r.exports_api()
        .patch("inv", &PatchParams::default(), &Patch::Merge(json!({"spec": {"stopped": true}})))
        .await
        .expect("stop");
    r.wait_emulator_status(&id, "INACTIVE").await;
    support::wait_for_ok("ConfigMap inv-info INACTIVE", DEADLINE, || info_has("exportStatus", "INACTIVE".into())).await;
    r.exports_api().delete("inv", &DeleteParams::default()).await.expect("delete");
    support::wait_for_ok("inv to be gone", DEADLINE, || async {
        match r.exports_api().get_opt("inv").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // The garbage collector (kube-controller-manager) deletes the ConfigMap it owned.
    support::wait_for_ok("ConfigMap inv-info garbage-collected", DEADLINE, || async {
        match config_maps.get_opt("inv-info").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(r.emu.emulator.calls(Operation::Start.name()), 1);
    assert_eq!(r.emu.emulator.calls(Operation::Stop.name()), 1);
    r.finish().await;
}

#[tokio::test]
async fn deleting_the_leader_pod_fails_over_within_the_lease_duration() {
    let r = Release::install("failover", base_tag(), 18084).await;
    let ns = r.exports.clone();
    let id = r.active_export(&ns, "inv", json!({})).await;
    let leader = r.leader().await;

    let deleted = Instant::now();
    r.pods_api().delete(&leader, &DeleteParams::default()).await.expect("delete the leader pod");
    // A stop requested while the leader is going away.
    r.exports_api()
        .patch("inv", &PatchParams::default(), &Patch::Merge(json!({"spec": {"stopped": true}})))
        .await
        .expect("stop");
    let new_leader = support::wait_for_ok("a new leader", Duration::from_secs(LEASE_SECONDS + 30), || async {
        let now = r.leader().await;
        if now != leader { Ok(now) } else { Err(now) }
    })
    .await;
    let took = deleted.elapsed();
    eprintln!("failover: {leader} -> {new_leader} in {:.1}s (lease {LEASE_SECONDS}s)", took.as_secs_f64());
    assert!(took <= Duration::from_secs(LEASE_SECONDS + 5), "took {took:?}");
    r.wait_emulator_status(&id, "INACTIVE").await;
    assert_eq!(r.emu.emulator.calls(Operation::Start.name()), 1, "no Start sent twice");
    r.finish().await;
}

#[tokio::test]
async fn helm_upgrade_rolls_the_pods_without_touching_the_export() {
    let r = Release::install("upgrade", base_tag(), 18085).await;
    let ns = r.exports.clone();
    let id = r.active_export(&ns, "inv", json!({})).await;
    let old_pods = r.pods().await;
    let before: Vec<_> = old_pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    let old_image = container_status(&old_pods[0]).image_id;

    push_image("cluster-next", &["org.opencontainers.image.ref.name=cluster-next"]);
    let rolled = Instant::now();
    r.upgrade("cluster-next", 18085);
    let after = r.wait_replicas_ready(2, "cluster-next").await;
    eprintln!("upgrade: helm upgrade -> 2 new pods Ready in {:.1}s", rolled.elapsed().as_secs_f64());
    assert!(after.iter().all(|p| !before.contains(p.metadata.uid.as_ref().unwrap())), "every pod replaced");
    for p in &after {
        let image = container_status(p).image_id;
        assert_ne!(image, old_image, "the new pods run the second build (another digest)");
    }
    r.leader().await;
    assert_eq!(r.emulator_status(&id), "ACTIVE");
    r.wait_export_ready(&ns, "inv").await;
    assert_eq!(r.emu.emulator.calls(Operation::Start.name()), 1, "no Start caused by the roll");
    assert_eq!(r.emu.emulator.calls(Operation::Stop.name()), 0, "no Stop caused by the roll");
    r.finish().await;
}

#[tokio::test]
async fn deleting_a_namespace_stops_delete_exports_and_keeps_retain_ones() {
    // All namespaces watched (a ClusterRole): with `watchNamespace` the namespace's
    // deletion removes the operator's Role too (README, `watchNamespace`).
    let r = Release::install_watching("nsdelete", base_tag(), 18086, "").await;
    // One after the other: ADS allows one active export per region.
    let stopped = namespace_with_export_deleted(&r, "Delete").await;
    assert_eq!(r.emulator_status(&stopped), "INACTIVE", "Delete stops the export");
    assert_eq!(r.emu.emulator.calls(Operation::Stop.name()), 1);
    let kept = namespace_with_export_deleted(&r, "Retain").await;
    assert_eq!(r.emulator_status(&kept), "ACTIVE", "Retain keeps the export running");
    assert_eq!(r.emu.emulator.calls(Operation::Stop.name()), 1, "no Stop for the Retain export");
    r.finish().await;
}

/// Creates a namespace holding an ACTIVE export with `policy`, deletes the namespace
/// and waits until the namespace controller has removed it (and with it the object);
/// returns the export's ID.
async fn namespace_with_export_deleted(r: &Release, policy: &str) -> String {
    let ns = support::namespace(&r.client, &format!("doomed-{}", policy.to_lowercase())).await;
    let id = r.active_export(&ns, "inv", json!({"deletionPolicy": policy})).await;
    let deleted = Instant::now();
    r.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(r.client.clone());
    support::wait_for_ok(&format!("namespace {ns} gone"), POD_DEADLINE, || async {
        match namespaces.get_opt(&ns).await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|n| n.and_then(|n| n.status)))),
        }
    })
    .await;
    eprintln!("namespace with a {policy} export deleted in {:.1}s", deleted.elapsed().as_secs_f64());
    id
}

#[tokio::test]
async fn sigkill_of_the_container_is_restarted_by_the_kubelet() {
    let r = Release::install("sigkill", base_tag(), 18087).await;
    let ns = r.exports.clone();
    let id = r.active_export(&ns, "inv", json!({})).await;
    let leader = r.leader().await;
    let victim = ContainerProcess::of_pod(&leader).await;

    let killed_at = Instant::now();
    let killed = std::process::Command::new("kill").args(["-KILL", &victim.pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let pod = support::wait_for_ok(&format!("{leader} restarted and Ready"), POD_DEADLINE, || async {
        let p = r.pods_api().get(&leader).await.map_err(|e| e.to_string())?;
        let cs = container_status(&p);
        if cs.restart_count == 1 && pod_ready(&p) { Ok(p) } else { Err(format!("{cs:?}")) }
    })
    .await;
    eprintln!("sigkill: container restarted and Ready in {:.1}s", killed_at.elapsed().as_secs_f64());
    let last = container_status(&pod).last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!(last.exit_code, 137, "{last:?}");
    // The killed container's log, through the apiserver and the kubelet (`kubectl logs`).
    let previous = r.kubectl(&["logs", "-n", &r.ns, &leader, "--previous"]);
    assert!(previous.contains("acquired the leader lease"), "previous log: {previous}");
    // Nothing leaked: one operator process per pod, the export untouched.
    let all = operator_pids(|env| env.contains(&format!("POD_NAMESPACE={}", r.ns)));
    assert_eq!(all.len(), 2, "operator processes {all:?}");
    assert_eq!(r.emulator_status(&id), "ACTIVE");
    r.leader().await;
    assert_eq!(r.emu.emulator.calls(Operation::Start.name()), 1);
    assert_eq!(r.emu.emulator.calls(Operation::Stop.name()), 0);
    r.finish().await;
}

#[tokio::test]
async fn a_release_dropped_without_finish_fails_the_test_and_leaves_no_object() {
    let r = Release::install("forgot", base_tag(), 18088).await;
    let (name, ns, exports) = (r.name.clone(), r.ns.clone(), r.exports_api());
    r.active_export(&r.exports.clone(), "inv", json!({})).await;

    // What a test that forgot `finish` does at its end (the panic message below is
    // expected in the output).
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(r)));
    let payload = dropped.expect_err("dropping a release without finish panics");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("dropped without `finish`"), "panic message: {message:?}");
    // The best-effort cleanup still removed the release and the export object.
    let left = exports.list(&Default::default()).await.expect("list exports");
    assert!(left.items.is_empty(), "exports left: {:?}", left.items.iter().map(|o| &o.metadata).collect::<Vec<_>>());
    let bed = support::testbed();
    let releases = run("helm list", bed.command(bed.helm()).args(["list", "-q", "-n", &ns]));
    assert!(!releases.lines().any(|l| l == name), "helm still lists {name}: {releases}");
}

#[tokio::test]
async fn no_bed_component_can_send_a_packet_off_the_loopback() {
    let own = std::fs::read_link("/proc/self/ns/net").expect("own network namespace");
    // The namespace holds `lo` only, and nothing routes elsewhere (checked on
    // documentation addresses, RFC 5737, and only once `lo` is known to be alone).
    // (/proc/net/dev lists this network namespace's interfaces; /sys/class/net is the
    // host's sysfs, mounted in the host's namespace.)
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("/proc/self/net/dev");
    let links: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(links, ["lo"], "network interfaces in the cluster's namespace");
    for addr in ["192.0.2.200:80", "198.51.100.1:80", "203.0.113.1:443"] {
        let err = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
            .expect_err("no route off the loopback");
        assert_eq!(err.raw_os_error(), Some(libc_enetunreach()), "{addr}: {err}");
    }
    // Every process of the bed (its command line or environment names the cluster's
    // state dir, or it is a container of it) is inside this namespace.
    let dir = std::env::var("ADS_CLUSTER_DIR").expect("ADS_CLUSTER_DIR");
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let container = cmdline.starts_with("/usr/local/bin/ads-export-operator") || cmdline.starts_with("/pause");
        if !cmdline.contains(&dir) && !container {
            continue;
        }
        let Ok(netns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) else { continue };
        let exe = cmdline.split_whitespace().next().unwrap_or_default().rsplit('/').next().unwrap().to_owned();
        if container && netns != own {
            continue; // another bed's container on this machine
        }
        assert_eq!(netns, own, "pid {pid} ({cmdline}) runs outside the cluster's network namespace");
        *seen.entry(exe).or_default() += 1;
    }
    for component in
        ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd", "registry"]
    {
        assert!(seen.contains_key(component), "{component} not found among {seen:?}");
    }
}

/// `ENETUNREACH` on Linux (errno 101).
fn libc_enetunreach() -> i32 {
    101
}

/// The final stage of the `Dockerfile`: its USER, EXPOSE, ENTRYPOINT, CMD and COPY
/// destinations, as written.
struct DockerfileRuntime {
    user: String,
    expose: Vec<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    copied: Vec<String>,
}

fn dockerfile_runtime() -> DockerfileRuntime {
    let text = std::fs::read_to_string(support::repo_root().join("Dockerfile")).expect("Dockerfile");
    let last_stage = text.rsplit_once("\nFROM ").expect("a multi-stage Dockerfile").1;
    let mut rt =
        DockerfileRuntime { user: String::new(), expose: vec![], entrypoint: vec![], cmd: vec![], copied: vec![] };
    let json_list = |s: &str| serde_json::from_str::<Vec<String>>(s.trim()).expect("exec-form JSON list");
    for line in last_stage.lines() {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "USER" => rt.user = rest.trim().to_owned(),
            "EXPOSE" => rt.expose.extend(rest.split_whitespace().map(str::to_owned)),
            "ENTRYPOINT" => rt.entrypoint = json_list(rest),
            "CMD" => rt.cmd = json_list(rest),
            "COPY" => rt.copied.push(rest.split_whitespace().last().unwrap().to_owned()),
            _ => {}
        }
    }
    rt
}

/// The OCI image config of `repo:tag` in the cluster's registry (Distribution API v2).
async fn registry_image_config(repo: &str, tag: &str) -> serde_json::Value {
    let base = format!("http://{}/v2/{repo}", cluster().registry);
    let http = reqwest::Client::new();
    let manifest: serde_json::Value = http
        .get(format!("{base}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("manifest")
        .json()
        .await
        .expect("manifest JSON");
    let digest = manifest["config"]["digest"].as_str().expect("config digest");
    http.get(format!("{base}/blobs/{digest}")).send().await.expect("config blob").json().await.expect("config JSON")
}

#[tokio::test]
async fn the_image_built_here_agrees_with_the_dockerfile() {
    let docker = dockerfile_runtime();
    let image = registry_image_config("ads-export-operator", base_tag()).await;
    let config = &image["config"];
    assert_eq!(config["User"], docker.user.as_str());
    assert_eq!(config["Entrypoint"], json!(docker.entrypoint));
    assert_eq!(config["Cmd"], json!(docker.cmd));
    let ports: Vec<String> = config["ExposedPorts"].as_object().expect("ExposedPorts").keys().cloned().collect();
    let want: Vec<String> =
        docker.expose.iter().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") }).collect();
    assert_eq!(ports, want);
    for label in ["title", "description", "version", "licenses", "revision"] {
        let key = format!("org.opencontainers.image.{label}");
        assert!(config["Labels"][&key].as_str().is_some_and(|v| !v.is_empty()), "label {key}: {}", config["Labels"]);
    }
    // (the_running_container_is_read_only_non_root_without_capabilities finds them
    // in the running container)
    assert_eq!(docker.copied, ["/usr/local/bin/ads-export-operator", "/usr/local/bin/ads-emulator"]);
}
