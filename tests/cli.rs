//! The `ads-export-operator` binary refuses bad `run` flags before it does anything
//! else: one line on stderr naming the flag and the value, exit status 2.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with `args` (and `env`), without AWS or Kubernetes settings from
/// the environment; returns its exit code and stderr. Fails the test if it is still
/// running after 20 s (it must exit before touching Kubernetes).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ads-export-operator"));
    cmd.args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("AWS_REGION")
        .env_remove("WATCH_NAMESPACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the operator binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll the operator").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("kill the operator");
            panic!("{args:?} still running after 20 s: the flags were accepted");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("operator output");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_aws_region_exits_2_naming_flag_and_value() {
    for (args, env, value) in [
        (&["run", "--aws-region", "us west"][..], &[][..], r#""us west""#),
        (&["run", "--aws-region", ""], &[], r#""""#),
        (&["run", "--aws-region=US-WEST-2"], &[], r#""US-WEST-2""#),
        (&["run"], &[("AWS_REGION", "us west")], r#""us west""#),
    ] {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(
            stderr,
            format!("error: --aws-region: {value} is not an AWS region name such as us-west-2\n"),
            "{args:?} {env:?}"
        );
    }
}

#[test]
fn bad_namespace_exits_2_naming_flag_and_value() {
    for (args, env) in [(&["run", "--namespace", "BAD_NS"][..], &[][..]), (&["run"], &[("WATCH_NAMESPACE", "BAD_NS")])]
    {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.starts_with(r#"error: --namespace: "BAD_NS" is not a namespace name"#), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn too_short_timing_flags_exit_2_naming_flag_value_and_minimum() {
    for (args, env, expected) in [
        (&["run", "--resync-period", "1ms"][..], &[][..], "--resync-period: 1ms is shorter than the minimum, 10s"),
        (&["run"], &[("RESYNC_PERIOD", "5s")], "--resync-period: 5s is shorter than the minimum, 10s"),
        (&["run", "--backoff-base=50ms"], &[], "--backoff-base: 50ms is shorter than the minimum, 100ms"),
        (&["run"], &[("BACKOFF_BASE", "1ms")], "--backoff-base: 1ms is shorter than the minimum, 100ms"),
        (
            &["run", "--backoff-base", "1m", "--backoff-max", "30s"],
            &[],
            "--backoff-max: 30s is shorter than the minimum, --backoff-base (1m)",
        ),
    ] {
        let (code, stderr) = run(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr, format!("error: {expected}\n"), "{args:?} {env:?}");
    }
}
