//! Processes as `hack/lib/daemons.sh` tracks them: by PID and start time (never by command
//! line), and how one ended (exit status or signal) with the tail of its log.

use std::path::Path;
use std::process::ExitStatus;

/// A process as `hack/lib/daemons.sh` records it in `<dir>/<name>.pid`: PID (first line) and
/// start time (second line: field 22 of `/proc/PID/stat`, clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub pid: u32,
    pub start: u64,
}

impl Recorded {
    /// Reads `<dir>/<name>.pid`; `None` if it is missing or malformed.
    pub fn read(dir: &Path, name: &str) -> Option<Recorded> {
        let text = std::fs::read_to_string(dir.join(format!("{name}.pid"))).ok()?;
        let mut lines = text.lines();
        Some(Recorded { pid: lines.next()?.parse().ok()?, start: lines.next()?.parse().ok()? })
    }

    /// The same process (PID and start time) still runs; a zombie does not count.
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some(s) if s.start == self.start && s.state != "Z")
    }
}

/// The fields of `/proc/<pid>/stat` the helpers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z`, ... (field 3).
    pub state: String,
    /// Session ID (field 6).
    pub session: u32,
    /// Start time in clock ticks since boot (field 22).
    pub start: u64,
}

/// `/proc/<pid>/stat` of `pid`, or `None` if there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name in parentheses, may itself hold spaces and parentheses.
    let rest = &text[text.rfind(") ")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.to_string(),
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// PIDs of every process whose `/proc` entry `keep` accepts (given PID and command line,
/// NUL-separated arguments joined by spaces), this test process aside.
pub fn find(mut keep: impl FnMut(u32, &str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let me = std::process::id();
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            keep(pid, &String::from_utf8_lossy(&raw).replace('\0', " "))
        })
        .collect()
}

/// "exited with status N" or "killed by SIGTERM" (the wording of `hack/lib/daemons.sh`).
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by {}", signal_name(sig)),
        (None, None) => format!("ended: {status}"),
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of the file at `path` ("" if it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    tail(&std::fs::read_to_string(path).unwrap_or_default(), n)
}
