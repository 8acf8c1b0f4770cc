//! The scripts as a user runs them: `hack/demo.sh` detached and killed, `hack/testbed.sh up`
//! with a failing first etcd attempt, and `hack/lib/daemons.sh` reporting how a daemon died.
//!
//! Each test uses its own state dir under `target/testbed/` (`DEMO_DIR` / `TESTBED_DIR`), so
//! none of them touches the shared test bed or a demo a user runs in
//! `target/testbed/demo`. The demo tests run one at a time (each brings up a whole bed).

mod support;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::process::{Recorded, find, stat, tail};

/// One demo or bed at a time: each is a whole control plane on a 2-core machine.
static HEAVY: Mutex<()> = Mutex::new(());

/// How long a whole demo may take (it waits up to 60 s per step; builds are warm).
const DEMO_DEADLINE: Duration = Duration::from_secs(400);

/// How long the processes of a dead demo or a stopped bed may take to go away: the
/// watchdog polls each second and `daemon_stop` sends SIGKILL after a 20 s grace period.
const CLEANUP_DEADLINE: Duration = Duration::from_secs(40);

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh state dir `target/testbed/scripts-<label>-<pid>` (removed first if present).
fn state_dir(label: &str) -> PathBuf {
    let dir = support::repo_root().join("target/testbed").join(format!("scripts-{label}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Every process whose command line mentions `needle`, as (PID, command line).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    find(|pid, cmdline| {
        if cmdline.contains(needle) {
            found.push((pid, cmdline.to_owned()));
        }
        false
    });
    found
}

/// Every process in session `sid`.
fn session_members(sid: u32) -> Vec<u32> {
    find(|pid, _| stat(pid).is_some_and(|s| s.session == sid))
}

/// Polls `f` every 200 ms until it returns `Ok`; panics with `what` and the last `Err` after `limit`.
fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if start.elapsed() >= limit => {
                panic!("timed out after {:.1}s waiting for {what}; last: {last}", start.elapsed().as_secs_f64())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn read_text(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// The daemons of a demo or bed in `dir` are gone: every recorded process, and every process
/// whose command line names `dir` (etcd's data dir, the apiserver's cert dir, the watchdog).
fn assert_all_gone(dir: &Path, recorded: &[(String, Recorded)]) {
    let needle = format!("{}/", dir.display());
    wait_until(&format!("no process of {} left", dir.display()), CLEANUP_DEADLINE, || {
        let alive: Vec<_> = recorded.iter().filter(|(_, r)| r.alive()).collect();
        let named = processes_mentioning(&needle);
        if alive.is_empty() && named.is_empty() {
            Ok(())
        } else {
            Err(format!("recorded {alive:?}, by name {named:?}"))
        }
    });
}

/// Kills the process group of a test's demo and its bed if a test fails half-way.
struct Cleanup {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in ["ads-export-operator", "ads-emulator"] {
            if let Some(r) = Recorded::read(&self.dir, name).filter(Recorded::alive) {
                let _ = Command::new("kill").args(["-KILL", &r.pid.to_string()]).status();
            }
        }
        let _ = Command::new("bash")
            .arg(support::repo_root().join("hack/testbed.sh"))
            .args(["down", "--purge"])
            .env("TESTBED_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_file(self.dir.with_extension("lock"));
        let _ = fs::remove_file(self.dir.with_extension("out"));
        let _ = fs::remove_file(self.dir.with_extension("rc"));
    }
}

/// `hack/demo.sh` in its own session with stdin `/dev/null`, its output in `<dir>.out`.
fn start_demo(dir: &Path, env: &[(&str, &str)]) -> Child {
    let out = fs::File::create(dir.with_extension("out")).unwrap();
    let mut cmd = Command::new("setsid");
    cmd.arg(support::repo_root().join("hack/demo.sh"))
        .current_dir(support::repo_root())
        .env("DEMO_DIR", dir)
        .env_remove("TESTBED_DIR")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start hack/demo.sh")
}

fn wait_exit(child: &mut Child, limit: Duration, out: &Path) -> ExitStatus {
    wait_until("hack/demo.sh to exit", limit, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err(tail(&read_text(out), 30)),
    })
}

/// The recorded daemons of a running demo in `dir`, once all five are recorded and alive.
fn demo_daemons(dir: &Path, out: &Path) -> Vec<(String, Recorded)> {
    let names = ["etcd", "kube-apiserver", "watchdog", "ads-emulator", "ads-export-operator"];
    wait_until("the demo's daemons to run", DEMO_DEADLINE, || {
        let found: Vec<_> = names
            .iter()
            .filter_map(|n| Recorded::read(dir, n).filter(Recorded::alive).map(|r| (n.to_string(), r)))
            .collect();
        if found.len() == names.len() {
            Ok(found)
        } else {
            Err(format!("{found:?}; output:\n{}", tail(&read_text(out), 10)))
        }
    })
}

#[test]
fn detached_demo_succeeds() {
    let _heavy = heavy();
    let dir = state_dir("detached");
    let out = dir.with_extension("out");
    let rc = dir.with_extension("rc");
    let mut guard = Cleanup { dir: dir.clone(), child: None };
    // As a user would from a terminal or an SSH session that ends: the launching shell exits
    // at once; the demo has no terminal, no stdin, its own session.
    let script = format!(
        "setsid nohup sh -c 'hack/demo.sh >{out} 2>&1 </dev/null; echo $? >{rc}' </dev/null >/dev/null 2>&1 &",
        out = out.display(),
        rc = rc.display()
    );
    let launcher = Command::new("sh")
        .args(["-c", &script])
        .current_dir(support::repo_root())
        .env("DEMO_DIR", &dir)
        .env_remove("TESTBED_DIR")
        .stdin(Stdio::null())
        .status()
        .expect("run sh");
    assert!(launcher.success(), "the launching shell failed: {launcher}");

    let code = wait_until("the detached demo to finish", DEMO_DEADLINE, || {
        let code = read_text(&rc);
        if code.ends_with('\n') { Ok(code.trim().to_owned()) } else { Err(tail(&read_text(&out), 10)) }
    });
    let output = read_text(&out);
    assert_eq!(code, "0", "the demo failed:\n{output}");
    assert!(output.contains("INACTIVE"), "no INACTIVE status in the demo's output:\n{output}");
    assert!(output.contains("==> demo done in"), "{output}");
    assert_all_gone(&dir, &[]);
    guard.child = None;
}

#[test]
fn sigkill_of_the_demo_leaves_no_daemon() {
    let _heavy = heavy();
    let dir = state_dir("sigkill");
    let out = dir.with_extension("out");
    let mut guard = Cleanup { dir: dir.clone(), child: Some(start_demo(&dir, &[])) };
    let daemons = demo_daemons(&dir, &out);

    // No trap runs: the emulator and the operator go by their parent-death signal, the bed by
    // its watchdog.
    let child = guard.child.as_mut().unwrap();
    child.kill().expect("SIGKILL the demo");
    child.wait().expect("reap the demo");
    assert_all_gone(&dir, &daemons);
    assert!(!dir.join("kubeconfig").exists(), "the watchdog did not purge {}", dir.display());
    guard.child = None;
}

#[test]
fn demo_reports_a_daemon_killed_by_sigterm() {
    let _heavy = heavy();
    let dir = state_dir("sigterm");
    let out = dir.with_extension("out");
    // Longer than the test's deadline below: a demo that only noticed by timing out fails it.
    let mut guard = Cleanup { dir: dir.clone(), child: Some(start_demo(&dir, &[("DEMO_TIMEOUT", "300")])) };
    let daemons = demo_daemons(&dir, &out);
    let emulator = daemons.iter().find(|(n, _)| n == "ads-emulator").unwrap().1;
    wait_until("the demo to start an export", DEMO_DEADLINE, || {
        let text = read_text(&out);
        if text.contains("==> start an export") { Ok(()) } else { Err(tail(&text, 5)) }
    });

    signal(emulator.pid, "TERM");
    let status = wait_exit(guard.child.as_mut().unwrap(), Duration::from_secs(60), &out);
    let output = read_text(&out);
    assert_eq!(status.code(), Some(1), "{output}");
    // The emulator shuts down cleanly on SIGTERM (exit status 0): the report says no signal
    // came from the scripts, and the log tail in it names the signal.
    let report =
        format!("ads-emulator (pid {}) died: exited with status 0 (no signal from these scripts)", emulator.pid);
    assert!(output.contains(&report), "no {report:?} in the demo's output:\n{output}");
    assert!(output.contains("shutting down signal=\"SIGTERM\""), "no tail of the emulator's log:\n{output}");
    assert!(output.contains("a daemon died while waiting for"), "{output}");
    assert_all_gone(&dir, &daemons);
    guard.child = None;
}

#[test]
fn testbed_up_whose_first_etcd_attempt_fails_leaves_one_etcd() {
    let _heavy = heavy();
    let dir = state_dir("etcd-retry");
    let _guard = Cleanup { dir: dir.clone(), child: None };
    let script = support::repo_root().join("hack/testbed.sh");
    // The first attempt sleeps before it execs etcd: it misses the 10 s /health deadline while
    // its process is alive, as a slow exec on a busy machine does.
    let up = Command::new("bash")
        .arg(&script)
        .arg("up")
        .env("TESTBED_DIR", &dir)
        .env("TESTBED_TEST_ETCD_EXEC_DELAY", "120")
        .env("TESTBED_ETCD_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .expect("run hack/testbed.sh up");
    let output = format!("{}{}", String::from_utf8_lossy(&up.stdout), String::from_utf8_lossy(&up.stderr));
    assert!(up.status.success(), "hack/testbed.sh up failed:\n{output}");
    assert!(output.contains("etcd failed to start (attempt 1)"), "attempt 1 did not fail:\n{output}");

    // The first attempt was stopped: its PID is gone, and so is everything in its session
    // (the sleeping shell and its `sleep`), so it can never exec etcd later.
    let first: u32 = output
        .lines()
        .find_map(|l| l.strip_prefix("testbed: stopped etcd (pid ")?.split(')').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no 'stopped etcd (pid N)' line:\n{output}"));
    assert!(stat(first).is_none_or(|s| s.state == "Z"), "attempt 1 (pid {first}) still runs:\n{output}");
    assert_eq!(session_members(first), Vec::<u32>::new(), "processes of attempt 1's session are left");

    let data_dir = format!("--data-dir {}/etcd", dir.display());
    let etcds = processes_mentioning(&data_dir);
    let recorded = Recorded::read(&dir, "etcd").expect("etcd.pid");
    assert!(recorded.alive(), "the recorded etcd is not running");
    assert_eq!(etcds.iter().map(|(pid, _)| *pid).collect::<Vec<_>>(), vec![recorded.pid], "{etcds:?}");

    let down = Command::new("bash")
        .arg(&script)
        .args(["down", "--purge"])
        .env("TESTBED_DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .expect("run hack/testbed.sh down");
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_all_gone(&dir, &[("etcd".into(), recorded)]);
}

/// Runs `body` in bash with `hack/lib/daemons.sh` sourced and `daemons_init <dir>`.
fn daemons_script(dir: &Path, body: &str) -> Child {
    let lib = support::repo_root().join("hack/lib/daemons.sh");
    let script = format!(
        "set -euo pipefail\nsource {}\nDAEMONS_PREFIX=t\ndaemons_init {}\n{body}",
        lib.display(),
        dir.display()
    );
    Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash")
}

#[test]
fn a_daemon_killed_by_sigterm_is_reported_with_that_signal() {
    let dir = state_dir("lib-sigterm");
    let _ = fs::create_dir_all(&dir);
    let log = dir.join("sleeper.log");
    let mut child = daemons_script(
        &dir,
        &format!(
            "daemon_start sleeper {log} bash -c 'echo last words; exec sleep 300'\n\
             daemon_wait_until 120 'the end of the world' false",
            log = log.display()
        ),
    );
    let sleeper = wait_until("the sleeper to run", Duration::from_secs(30), || {
        Recorded::read(&dir, "sleeper").filter(Recorded::alive).ok_or("not yet".to_owned())
    });
    wait_until("the sleeper to exec sleep", Duration::from_secs(30), || {
        let exe = fs::read_link(format!("/proc/{}/exe", sleeper.pid)).map_err(|e| e.to_string())?;
        if exe.ends_with("sleep") { Ok(()) } else { Err(format!("{exe:?}")) }
    });
    signal(sleeper.pid, "TERM");
    let status = wait_until("the script to notice", Duration::from_secs(60), || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err("still running".to_owned()),
    });
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let report = format!("t: sleeper (pid {}) died: killed by SIGTERM (not sent by these scripts)", sleeper.pid);
    assert!(stderr.contains(&report), "no {report:?} in:\n{stderr}");
    assert!(stderr.contains("last words"), "no log tail in:\n{stderr}");
    assert!(stderr.contains("t: while waiting for the end of the world"), "{stderr}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn daemon_stop_says_it_sent_the_signal_and_spares_a_reused_pid() {
    let dir = state_dir("lib-stop");
    let _ = fs::create_dir_all(&dir);
    let log = dir.join("sleeper.log");
    // A pidfile naming a live process (this test) with the wrong start time: a stale pidfile
    // whose PID was reused. daemon_stop must leave it alone.
    let me = std::process::id();
    fs::write(dir.join("stale.pid"), format!("{me}\n1\n{}\n", log.display())).unwrap();
    let mut child = daemons_script(
        &dir,
        &format!(
            "daemon_start sleeper {log} sleep 300\n\
             daemon_stop stale sleeper\n\
             daemon_alive sleeper && exit 3\n\
             {{ daemon_start failing {log} sh -c 'sleep 0.5; exit 7' && daemon_wait_until 60 never false; }} || echo noticed",
            log = log.display()
        ),
    );
    let status = wait_until("the script to finish", Duration::from_secs(60), || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err("still running".to_owned()),
    });
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{status}: {stdout}{stderr}");
    assert!(stderr.contains("t: stale (pid"), "{stderr}");
    assert!(stderr.contains("was not running"), "{stderr}");
    assert!(
        stderr.contains("t: stopped sleeper (pid") && stderr.contains("killed by SIGTERM (we sent: TERM by"),
        "{stderr}"
    );
    assert!(stderr.contains("t: failing (pid") && stderr.contains("died: exited with status 7"), "{stderr}");
    assert_eq!(stdout.trim(), "noticed");
    assert!(!dir.join("sleeper.pid").exists() && !dir.join("stale.pid").exists());
    let _ = fs::remove_dir_all(&dir);
}
