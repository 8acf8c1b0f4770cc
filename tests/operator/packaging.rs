//! Production packaging on the real bed: the chart's ServiceAccount runs the
//! operator (and may do nothing more), leader election between two processes and
//! on lease loss, `/metrics` and health endpoints, JSON logs without credentials.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ads_export_operator::ads::Operation;
use ads_export_operator::emulator::{Fault, FaultKind};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use kube::{Api, Client, Config};
use serde_json::{Value, json};

use super::harness::*;
use super::info::{wait_config_map, wait_config_map_gone};
use super::support;

/// The value of one sample of `name` with exactly `labels` in Prometheus/OpenMetrics
/// text, or `None`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let got: BTreeMap<&str, &str> = rest
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('=').map(|(k, v)| (k, v.trim_matches('"'))))
            .collect();
        let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
        (got == want).then(|| value.parse().ok()).flatten()
    })
}

/// Sum of every sample of `name`, whatever its labels.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Checks every line is a comment or `series value` and that the families exist.
fn assert_parses(text: &str) {
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(series.chars().next().is_some_and(|c| c.is_ascii_alphabetic()), "bad series {line}");
    }
    for family in ["reconciles", "aws_calls", "leader", "objects", "reconcile_duration_seconds"] {
        assert!(text.contains(&format!("# TYPE ads_export_operator_{family} ")), "no family {family}:\n{text}");
    }
}

async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.expect("GET /metrics");
    assert!(r.status().is_success());
    let text = r.text().await.unwrap();
    assert_parses(&text);
    text
}

async fn status_of(base: &str, path: &str) -> u16 {
    reqwest::get(format!("{base}{path}")).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// The test's `run` flags with leader election on a Lease in the test's namespace:
/// 4 s lease, renewed every second.
fn leader_args(t: &Test) -> Vec<String> {
    let mut args = t.operator_args();
    args.extend(
        ["--leader-elect", "--lease-namespace", &t.ns, "--lease-duration", "4s", "--lease-renew-interval", "1s"]
            .map(str::to_owned),
    );
    args
}

#[tokio::test]
async fn leader_election_one_reconciles_and_the_standby_takes_over() {
    let t = Test::new("leader", cfg()).await;
    let args = leader_args(&t);
    let kubeconfig = support::testbed().kubeconfig_path().to_owned();
    let mut ops = [
        t.spawn_operator("replica-a", &args, &[], &kubeconfig).await,
        t.spawn_operator("replica-b", &args, &[], &kubeconfig).await,
    ];
    let urls = [ops[0].metrics_url().await, ops[1].metrics_url().await];
    // both report ready: the leader once synced, the standby while waiting
    for u in &urls {
        support::wait_for("readyz 200", DEADLINE, || async { (status_of(u, "/readyz").await == 200).then_some(()) })
            .await;
    }

    t.create("inv", json!({})).await;
    t.wait_ready("inv").await;
    assert_eq!(t.emu.emulator.calls(Operation::Start.name()), 1);
    let leader_flags = [scrape(&urls[0]).await, scrape(&urls[1]).await]
        .map(|m| (sample(&m, "ads_export_operator_leader", &[]), total(&m, "ads_export_operator_reconciles_total")));
    let leader = match leader_flags {
        [(Some(1.0), a), (Some(0.0), 0.0)] if a > 0.0 => 0,
        [(Some(0.0), 0.0), (Some(1.0), b)] if b > 0.0 => 1,
        other => panic!("exactly one replica must lead and reconcile: {other:?}"),
    };
    let standby = 1 - leader;

    // The leader is killed while the stop cannot succeed yet; the standby finishes it.
    t.emu.emulator.inject_fault(Fault::new(
        Some(Operation::Stop.name()),
        FaultKind::Error { name: "ServerInternalErrorException".into(), message: None },
    ));
    t.patch_spec("inv", json!({"stopped": true})).await;
    support::wait_for("the leader to try Stop", DEADLINE, || async {
        (t.emu.emulator.calls(Operation::Stop.name()) > 0).then_some(())
    })
    .await;
    ops[leader].kill().await;
    t.emu.emulator.clear_faults();
    let killed = Instant::now();
    t.wait_status("inv", "INACTIVE after fail-over", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    eprintln!("fail-over: stop finished {:.1}s after the leader was killed (lease 4s)", killed.elapsed().as_secs_f64());
    let m = scrape(&urls[standby]).await;
    assert_eq!(sample(&m, "ads_export_operator_leader", &[]), Some(1.0));
    assert!(total(&m, "ads_export_operator_reconciles_total") > 0.0);
    assert_eq!(t.emu.emulator.exports().len(), 1);

    // SIGTERM: the new leader exits cleanly and releases the Lease.
    let status = ops[standby].terminate().await;
    assert!(status.success(), "exit status {status}");
    assert!(ops[standby].log_text().contains("released the leader lease"), "{}", ops[standby].log_text());
}

#[tokio::test]
async fn lease_loss_stops_reconciling_at_once_and_exits_non_zero() {
    let t = Test::new("leaselost", cfg()).await;
    let args = leader_args(&t);
    let mut op = t.spawn_operator("leader", &args, &[], support::testbed().kubeconfig_path()).await;
    support::wait_for("the leader lease", DEADLINE, || async {
        op.log_text().contains("acquired the leader lease").then_some(())
    })
    .await;

    // A reconcile in flight: ADS takes 60 s to answer Start (the SDK gives up after
    // 20 s). A graceful stop would wait for it.
    t.emu.emulator.inject_fault(Fault::new(Some(Operation::Start.name()), FaultKind::Latency { ms: 60_000 }));
    t.create("inv", json!({})).await;
    support::wait_for("Start in flight", DEADLINE, || async {
        (t.emu.emulator.calls(Operation::Start.name()) == 1).then_some(())
    })
    .await;

    // Another replica takes the Lease (as after a network partition).
    let leases: Api<Lease> = Api::namespaced(t.client.clone(), &t.ns);
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let steal =
        json!({"spec": {"holderIdentity": "thief", "acquireTime": now, "renewTime": now, "leaseDurationSeconds": 60}});
    leases.patch("ads-export-operator", &PatchParams::default(), &Patch::Merge(&steal)).await.expect("steal the Lease");
    let stolen = Instant::now();

    // Renewal (every 1 s) finds the new holder; the process stops at once, without
    // waiting for the Start in flight, and fails.
    let status = op.wait_exit(Duration::from_secs(10)).await;
    let log = op.log_text();
    let status = status.unwrap_or_else(|| panic!("still running 10 s after losing the lease:\n{log}"));
    eprintln!("lease loss: exited {:.1}s after the Lease was taken", stolen.elapsed().as_secs_f64());
    assert!(!status.success(), "exit status {status} after losing the lease:\n{log}");
    assert!(log.contains("leader election lost"), "{log}");
    assert!(!log.contains("released the leader lease"), "{log}");
    // the loser left the Lease to its new holder
    let lease = leases.get("ads-export-operator").await.unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity).as_deref(), Some("thief"));
}

#[tokio::test]
async fn a_leader_that_cannot_renew_stops_before_the_lease_expires() {
    let t = Test::new("renew", cfg()).await;
    let bed = support::testbed();
    // A ServiceAccount with every right, through one binding we can take away.
    let sa = "operator";
    run(bed.command(bed.kubectl()).args(["create", "serviceaccount", sa, "-n", &t.ns]));
    let binding = format!("{}-all", t.ns);
    run(bed.command(bed.kubectl()).args([
        "create",
        "clusterrolebinding",
        &binding,
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount={}:{sa}", t.ns),
    ]));
    let token = run(bed.command(bed.kubectl()).args(["create", "token", sa, "-n", &t.ns]));
    let kubeconfig = bed.dir.join(format!("kubeconfig-sa-{}", t.ns));
    kubeconfig_with_token(token.trim(), &kubeconfig);
    let args = leader_args(&t);
    let mut op = t.spawn_operator("leader", &args, &[], &kubeconfig).await;
    support::wait_for("the leader lease", DEADLINE, || async {
        op.log_text().contains("acquired the leader lease").then_some(())
    })
    .await;

    // Renewals now fail (403), as with the apiserver out of reach; the lease manager
    // keeps retrying and would keep calling itself the leader.
    run(bed.command(bed.kubectl()).args(["delete", "clusterrolebinding", &binding]));
    let revoked = Instant::now();
    let status = op.wait_exit(Duration::from_secs(20)).await;
    let log = op.log_text();
    let status = status.unwrap_or_else(|| panic!("still leading 20 s after renewals began to fail:\n{log}"));
    let after = revoked.elapsed();
    eprintln!("renew deadline: exited {:.1}s after renewals began to fail (lease 4s)", after.as_secs_f64());
    assert!(!status.success(), "exit status {status}:\n{log}");
    assert!(log.contains("leader election lost") && log.contains("not renewed for"), "{log}");
    // Before a standby could take over: the Lease still names this replica and was
    // last renewed less than its duration before the exit.
    let leases: Api<Lease> = Api::namespaced(t.client.clone(), &t.ns);
    let spec = leases.get("ads-export-operator").await.unwrap().spec.unwrap();
    let renewed = spec.renew_time.expect("renewTime").0;
    let exited_at = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::try_from(revoked.elapsed() - after).unwrap();
    let held_for = exited_at.duration_since(renewed).as_secs_f64();
    assert!(held_for < 4.0, "exited {held_for:.1}s after the last renewal, lease 4s:\n{log}");
}

/// A kubeconfig for `token` against the bed's apiserver.
fn kubeconfig_with_token(token: &str, path: &std::path::Path) {
    let mut kc = Kubeconfig::read_from(support::testbed().kubeconfig_path()).unwrap();
    for a in &mut kc.auth_infos {
        if let Some(info) = a.auth_info.as_mut() {
            info.token = Some(token.to_owned().into());
        }
    }
    std::fs::write(path, serde_yaml::to_string(&kc).unwrap()).unwrap();
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn chart_service_account_runs_the_operator_and_nothing_more() {
    let t = Test::new("watched", cfg()).await;
    let bed = support::testbed();
    let release_ns = support::namespace(&t.client, "release").await;
    let chart = support::repo_root().join("charts/ads-export-operator");
    run(bed.command(bed.helm()).args(["install", "ads", chart.to_str().unwrap(), "-n", &release_ns]).args([
        "--set",
        &format!("watchNamespace={}", t.ns),
        "--set",
        "awsRegion=us-west-2",
        "--set",
        &format!("awsEndpointUrl={}", t.emu.endpoint_url()),
        "--set",
        "logFormat=text",
    ]));

    // The operator runs with the Deployment's own args, as its ServiceAccount.
    let deploy: Api<Deployment> = Api::namespaced(t.client.clone(), &release_ns);
    let d = deploy.list(&ListParams::default()).await.unwrap().items.pop().expect("the chart's Deployment");
    let pod = d.spec.unwrap().template.spec.unwrap();
    let sa = pod.service_account_name.clone().expect("serviceAccountName");
    let args: Vec<String> = pod.containers[0]
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| a.replace("$(POD_NAMESPACE)", &release_ns))
        .map(|a| if a.starts_with("--metrics-addr=") { "--metrics-addr=127.0.0.1:0".into() } else { a })
        .collect();
    assert!(args.contains(&"--leader-elect".to_string()), "chart default: leader election on: {args:?}");
    let token = run(bed.command(bed.kubectl()).args(["create", "token", &sa, "-n", &release_ns]));
    let kubeconfig = bed.dir.join(format!("kubeconfig-sa-{release_ns}"));
    kubeconfig_with_token(token.trim(), &kubeconfig);
    let op = t.spawn_operator("chart-sa", &args, &[], &kubeconfig).await;
    let url = op.metrics_url().await;

    t.create("inv", json!({"writeInfoTo": {"configMapName": "inv-info"}})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    // configmaps: watched, read, created by server-side apply
    wait_config_map(&t, "inv-info", "written", |d| d.get("exportId") == Some(&id)).await;
    let m = scrape(&url).await;
    assert_eq!(
        sample(&m, "ads_export_operator_aws_calls_total", &[("operation", Operation::Start.name()), ("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(sample(&m, "ads_export_operator_objects", &[("export_status", "ACTIVE")]), Some(1.0));
    t.patch_spec("inv", json!({"stopped": true})).await;
    t.wait_status("inv", "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    assert_eq!(t.export_status(&id), "INACTIVE");
    t.expect_event("inv", "Stopped").await;
    // ... patched, and deleted once spec.writeInfoTo no longer names it
    wait_config_map(&t, "inv-info", "INACTIVE", |d| d.get("exportStatus").is_some_and(|s| s == "INACTIVE")).await;
    t.patch_spec("inv", json!({"writeInfoTo": null})).await;
    wait_config_map_gone(&t, "inv-info").await;
    let m = scrape(&url).await;
    assert_eq!(
        sample(&m, "ads_export_operator_aws_calls_total", &[("operation", Operation::Stop.name()), ("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(sample(&m, "ads_export_operator_objects", &[("export_status", "INACTIVE")]), Some(1.0));
    assert_eq!(sample(&m, "ads_export_operator_objects", &[("export_status", "ACTIVE")]), Some(0.0));
    assert!(sample(&m, "ads_export_operator_reconciles_total", &[("result", "ok")]).unwrap_or(0.0) >= 2.0);
    assert_eq!(status_of(&url, "/healthz").await, 200);
    assert_eq!(status_of(&url, "/readyz").await, 200);

    // The same token is denied what the chart does not grant.
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let sa_client = Client::try_from(config).unwrap();
    let secrets: Api<Secret> = Api::namespaced(sa_client.clone(), &release_ns);
    let denied = secrets.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(&denied, kube::Error::Api(s) if s.code == 403), "{denied}");
    let elsewhere: Api<ads_export_operator::api::ContinuousExport> = Api::namespaced(sa_client, &release_ns);
    let denied = elsewhere.list(&ListParams::default()).await.unwrap_err();
    assert!(matches!(&denied, kube::Error::Api(s) if s.code == 403), "outside watchNamespace: {denied}");
    assert!(!op.log_text().contains("forbidden"), "the operator hit a permission error:\n{}", op.log_text());
}

#[tokio::test]
async fn json_logs_carry_the_object_and_never_credentials() {
    let t = Test::new("logs", cfg()).await;
    let mut args = t.operator_args();
    args.extend(["--log-format", "json"].map(str::to_owned));
    const SECRET: &str = "wJalrXUtnFEMI-test-secret-never-logged";
    const SESSION: &str = "FwoGZXIvYXdz-test-session-never-logged";
    let env = [("AWS_SECRET_ACCESS_KEY", SECRET), ("AWS_SESSION_TOKEN", SESSION), ("RUST_LOG", "debug")];
    let mut op = t.spawn_operator("json", &args, &env, support::testbed().kubeconfig_path()).await;
    let url = op.metrics_url().await;
    // without leader election, ready once the watch cache is synced
    support::wait_for("readyz 200", DEADLINE, || async { (status_of(&url, "/readyz").await == 200).then_some(()) })
        .await;
    t.create("inv", json!({})).await;
    let id = t.wait_ready("inv").await.status.unwrap().export_id.unwrap();
    t.patch_spec("inv", json!({"stopped": true})).await;
    t.wait_status("inv", "INACTIVE", |s| s.export_status.as_deref() == Some("INACTIVE")).await;
    assert!(op.terminate().await.success());

    let text = op.log_text();
    for needle in [SECRET, SESSION, "Signature=", "AWS4-HMAC-SHA256", "x-amz-security-token"] {
        assert!(!text.contains(needle), "the log contains {needle:?}");
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let in_reconcile: Vec<&Value> = lines.iter().filter(|l| l["span"]["name"] == "reconcile").collect();
    assert!(!in_reconcile.is_empty(), "no reconcile span in the log");
    for l in &in_reconcile {
        for field in ["namespace", "object"] {
            assert!(l["span"].get(field).is_some(), "reconcile span without {field}: {l}");
        }
        // absent until the export is known, never empty
        assert_ne!(l["span"].get("export_id"), Some(&json!("")), "an empty export_id: {l}");
        assert_eq!(l["span"]["namespace"], t.ns.as_str());
        assert_eq!(l["span"]["object"], "inv");
    }
    assert!(in_reconcile.iter().any(|l| l["span"]["export_id"] == id.as_str()), "no reconcile line names export {id}");
    assert!(lines.iter().all(|l| l.get("level").is_some() && l.get("timestamp").is_some()));
}

#[tokio::test]
async fn sigterm_during_start_up_exits_at_once() {
    let t = Test::new("startup", cfg()).await;
    // An "apiserver" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let (reached, mut reached_rx) = tokio::sync::watch::channel(false);
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
            let _ = reached.send(true);
        }
    });
    let mut kc = Kubeconfig::read_from(support::testbed().kubeconfig_path()).unwrap();
    for c in &mut kc.clusters {
        if let Some(cluster) = c.cluster.as_mut() {
            cluster.server = Some(format!("https://127.0.0.1:{port}"));
        }
    }
    let path = support::testbed().dir.join(format!("kubeconfig-silent-{}", t.ns));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    let mut op = t.spawn_operator("silent", &t.operator_args(), &[], &path).await;
    // connected: it is in start-up (preflight), waiting for an answer
    tokio::time::timeout(DEADLINE, reached_rx.wait_for(|r| *r)).await.expect("a connection").unwrap();
    let status = op.terminate().await;
    assert!(status.success(), "exit status {status}: {}", op.log_text());
    assert!(op.log_text().contains("stopped during start-up"), "{}", op.log_text());
}
