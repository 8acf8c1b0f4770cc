//! The emulated ADS state: exports per region, their state machine, faults and counters.
//!
//! Transitions are evaluated lazily: every read first [`State::settle`]s the exports, moving
//! `START_IN_PROGRESS` to `ACTIVE` once the *current* start delay has elapsed since the
//! start, and `STOP_IN_PROGRESS` to `INACTIVE` likewise with the stop delay. No timers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::fault::{Fault, FaultKind};
use super::migrationhub_config::HomeRegionControl;
use super::protocol::{AwsError, DescribeInput, StopInput};
use crate::ads::ExportStatus;

/// Athena database name ADS reports in `schemaStorageConfig`.
pub const DATABASE_NAME: &str = "application_discovery_service_database";
/// The only data source of continuous exports.
pub const DATA_SOURCE: &str = "AGENT";
/// Longest export ID ADS accepts.
pub const MAX_EXPORT_ID_LEN: usize = 200;

/// The `statusDetail` ADS shows for `status` when nothing more specific is known.
fn default_detail(status: ExportStatus) -> &'static str {
    match status {
        ExportStatus::StartInProgress => "Export is starting",
        ExportStatus::StartFailed => "Export failed to start",
        ExportStatus::Active => "Export is running",
        ExportStatus::Error => "Export encountered an error",
        ExportStatus::StopInProgress => "Export is stopping",
        ExportStatus::StopFailed => "Export failed to stop",
        ExportStatus::Inactive => "Export was stopped by the user",
    }
}

/// A snapshot of one export, as the control API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportView {
    /// Region the export lives in.
    pub region: String,
    /// Export ID.
    pub export_id: String,
    /// Current status.
    pub status: ExportStatus,
    /// Current `statusDetail`.
    pub status_detail: String,
    /// Bucket the export writes to.
    pub s3_bucket: String,
    /// Start time, milliseconds since the Unix epoch (UTC).
    pub start_time_ms: u64,
    /// Stop time (set when stopping starts), milliseconds since the Unix epoch (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time_ms: Option<u64>,
}

/// Calls per operation, then per outcome (`"ok"`, an error name such as
/// `"ConflictErrorException"`, `"ThrottlingException"`, or `"http503"`).
///
/// Serializes as `{"StartContinuousExport":{"ok":2,"ConflictErrorException":1}}`.
/// Calls whose operation is not known are counted under `"UnknownOperation"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<String, BTreeMap<String, u64>>);

impl Counters {
    /// Calls of `operation` that ended with `outcome`.
    pub fn get(&self, operation: &str, outcome: &str) -> u64 {
        self.0.get(operation).and_then(|outcomes| outcomes.get(outcome)).copied().unwrap_or(0)
    }

    /// All calls of `operation`, whatever the outcome.
    pub fn total(&self, operation: &str) -> u64 {
        self.0.get(operation).map_or(0, |o| o.values().sum())
    }

    pub(crate) fn record(&mut self, operation: &str, outcome: &str) {
        *self.0.entry(operation.to_owned()).or_default().entry(outcome.to_owned()).or_default() += 1;
    }
}

/// Why a control-API call on an export failed.
#[derive(Debug)]
pub(crate) enum ControlError {
    NotFound(String),
    Conflict(String),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotFound(m) | ControlError::Conflict(m) => f.write_str(m),
        }
    }
}

#[derive(Debug)]
struct Export {
    /// Creation order, unique across regions; pagination cursors point at it.
    seq: u64,
    id: String,
    s3_bucket: String,
    start_time_ms: u64,
    stop_time_ms: Option<u64>,
    status: ExportStatus,
    status_detail: String,
    /// When the current status was entered (drives the lazy transitions).
    since: Instant,
}

impl Export {
    fn set_status(&mut self, status: ExportStatus, detail: Option<&str>, now: Instant) {
        self.status = status;
        self.status_detail = detail.unwrap_or(default_detail(status)).to_owned();
        self.since = now;
    }

    fn description(&self) -> Value {
        let mut d = json!({
            "exportId": self.id,
            "status": self.status.as_str(),
            "statusDetail": self.status_detail,
            "s3Bucket": self.s3_bucket,
            "startTime": epoch_seconds(self.start_time_ms),
            "dataSource": DATA_SOURCE,
            "schemaStorageConfig": { "databaseName": DATABASE_NAME },
        });
        if let Some(stop) = self.stop_time_ms {
            d["stopTime"] = epoch_seconds(stop);
        }
        d
    }
}

#[derive(Debug)]
struct Region {
    /// One bucket per region and account, as ADS does.
    bucket: String,
    /// Oldest first.
    exports: Vec<Export>,
}

/// The emulator's rate-limit mode: a token bucket of `per_second` tokens per second.
#[derive(Debug, Clone)]
pub(crate) struct RateLimit {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(per_second: f64, now: Instant) -> Self {
        RateLimit { per_second, tokens: per_second.max(1.0), last: now }
    }

    /// Whether a call at `now` is within the rate (and takes its token).
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second.max(1.0));
        self.last = now;
        let admitted = self.tokens >= 1.0;
        if admitted {
            self.tokens -= 1.0;
        }
        admitted
    }
}

/// Everything the emulator remembers.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The Migration Hub home region (the region ADS answers in) and its control, as
    /// Migration Hub Config reports them; `None`: no home region set.
    pub home_region: Option<HomeRegionControl>,
    pub start_delay: Duration,
    pub stop_delay: Duration,
    pub stop_sample_response: bool,
    pub faults: Vec<Fault>,
    pub counters: Counters,
    /// Rate-limit mode: calls above this many per second (a token bucket with a burst
    /// of as many) answer `ThrottlingException`; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// The distinct client identities seen (`x-amz-user-agent`, else `User-Agent`).
    pub user_agents: std::collections::BTreeSet<String>,
    regions: BTreeMap<String, Region>,
    next_seq: u64,
}

impl State {
    pub fn new(home_region: Option<String>, start_delay: Duration, stop_delay: Duration) -> Self {
        State { home_region: home_region.map(HomeRegionControl::new), start_delay, stop_delay, ..State::default() }
    }

    /// Clears exports, faults and counters; keeps the configuration.
    pub fn reset(&mut self) {
        self.faults.clear();
        self.counters = Counters::default();
        self.user_agents.clear();
        self.regions.clear();
    }

    /// Applies due transitions, using the delays configured now.
    pub fn settle(&mut self, now: Instant) {
        let (start_delay, stop_delay) = (self.start_delay, self.stop_delay);
        for export in self.regions.values_mut().flat_map(|r| r.exports.iter_mut()) {
            let elapsed = now.saturating_duration_since(export.since);
            match export.status {
                ExportStatus::StartInProgress if elapsed >= start_delay => {
                    export.set_status(ExportStatus::Active, None, now);
                }
                ExportStatus::StopInProgress if elapsed >= stop_delay => {
                    export.set_status(ExportStatus::Inactive, None, now);
                }
                _ => {}
            }
        }
    }

    /// Picks the faults for one call of `operation`: the total added latency and the first
    /// matching non-latency fault (a copy, whose `after_effect` says whether the call is
    /// executed before the fault answers it). Consumes one use of every fault it applies.
    pub fn take_faults(&mut self, operation: &str) -> (Duration, Option<Fault>) {
        let mut latency = Duration::ZERO;
        let mut answer = None;
        for fault in self.faults.iter_mut().filter(|f| f.matches(operation)) {
            match &fault.kind {
                FaultKind::Latency { ms } => latency += Duration::from_millis(*ms),
                _ if answer.is_some() => continue,
                _ => answer = Some(fault.clone()),
            }
            if let Some(n) = &mut fault.remaining {
                *n = n.saturating_sub(1);
            }
        }
        self.faults.retain(|f| f.remaining != Some(0));
        (latency, answer)
    }

    /// `StartContinuousExport` in `region`.
    pub fn start(&mut self, region: &str, now: Instant) -> Result<Value, AwsError> {
        self.settle(now);
        let region_state = self.regions.entry(region.to_owned()).or_insert_with(|| Region {
            bucket: format!("aws-application-discovery-service-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
            exports: Vec::new(),
        });
        // Only a starting or running export blocks a new one. A START_FAILED export runs
        // nothing, and AWS documents the recovery as starting again ("START_FAILED - an
        // error occurred setting up continuous export. To recover, call
        // start-continuous-export again"), so it must not answer ConflictErrorException.
        let busy = region_state
            .exports
            .iter()
            .any(|e| matches!(e.status, ExportStatus::StartInProgress | ExportStatus::Active));
        if busy {
            return Err(AwsError::new(
                "ConflictErrorException",
                "A continuous export is already active for this account in this region. \
                 Stop it before starting a new one.",
            ));
        }
        let export = Export {
            seq: self.next_seq,
            id: format!("export-{}", uuid::Uuid::new_v4()),
            s3_bucket: region_state.bucket.clone(),
            start_time_ms: now_ms(),
            stop_time_ms: None,
            status: ExportStatus::StartInProgress,
            status_detail: default_detail(ExportStatus::StartInProgress).to_owned(),
            since: now,
        };
        self.next_seq += 1;
        let response = json!({
            "exportId": export.id,
            "s3Bucket": export.s3_bucket,
            "startTime": epoch_seconds(export.start_time_ms),
            "dataSource": DATA_SOURCE,
            "schemaStorageConfig": { "databaseName": DATABASE_NAME },
        });
        region_state.exports.push(export);
        self.settle(now);
        Ok(response)
    }

    /// `DescribeContinuousExports` in `region`: newest first, filtered, paginated.
    pub fn describe(&mut self, region: &str, input: DescribeInput, now: Instant) -> Result<Value, AwsError> {
        self.settle(now);
        let max_results = match input.max_results {
            None => 100,
            Some(n @ 1..=100) => n as usize,
            Some(n) => {
                return Err(AwsError::new(
                    "InvalidParameterValueException",
                    format!("maxResults must be between 1 and 100, got {n}"),
                ));
            }
        };
        let cursor = input
            .next_token
            .as_deref()
            .map(|t| {
                decode_token(t).ok_or_else(|| {
                    AwsError::new("InvalidParameterValueException", "The nextToken is invalid or expired")
                })
            })
            .transpose()?;
        let ids = input.export_ids.unwrap_or_default();
        for id in &ids {
            validate_export_id("exportIds", id)?;
        }
        let exports = self.regions.get(region).map_or(&[][..], |r| r.exports.as_slice());
        if let Some(missing) = ids.iter().find(|id| !exports.iter().any(|e| &e.id == *id)) {
            return Err(not_found(missing));
        }
        let mut selected = exports
            .iter()
            .rev()
            .filter(|e| ids.is_empty() || ids.contains(&e.id))
            .filter(|e| cursor.is_none_or(|c| e.seq <= c));
        let page: Vec<Value> = selected.by_ref().take(max_results).map(Export::description).collect();
        let mut response = json!({ "descriptions": page });
        if let Some(next) = selected.next() {
            response["nextToken"] = Value::String(encode_token(next.seq));
        }
        Ok(response)
    }

    /// `StopContinuousExport` in `region`.
    pub fn stop(&mut self, region: &str, input: StopInput, now: Instant) -> Result<Value, AwsError> {
        self.settle(now);
        let Some(id) = input.export_id else {
            return Err(AwsError::new(
                "InvalidParameterException",
                "1 validation error detected: Value null at 'exportId' failed to satisfy \
                 constraint: Member must not be null",
            ));
        };
        validate_export_id("exportId", &id)?;
        let export = self
            .regions
            .get_mut(region)
            .and_then(|r| r.exports.iter_mut().find(|e| e.id == id))
            .ok_or_else(|| not_found(&id))?;
        begin_stop(export, now).map_err(|status| match status {
            ExportStatus::StartInProgress => AwsError::new(
                "ResourceInUseException",
                format!("Export {id} is still starting (START_IN_PROGRESS); try again later"),
            ),
            other => AwsError::new(
                "OperationNotPermittedException",
                format!("Export {id} cannot be stopped because its status is {other}"),
            ),
        })?;
        let response = if self.stop_sample_response {
            json!({})
        } else {
            json!({
                "startTime": epoch_seconds(export.start_time_ms),
                "stopTime": export.stop_time_ms.map(epoch_seconds),
            })
        };
        self.settle(now);
        Ok(response)
    }

    /// All exports of all regions, oldest first.
    pub fn views(&mut self, now: Instant) -> Vec<ExportView> {
        self.settle(now);
        self.regions
            .iter()
            .flat_map(|(region, r)| {
                r.exports.iter().map(move |e| {
                    (
                        e.seq,
                        ExportView {
                            region: region.clone(),
                            export_id: e.id.clone(),
                            status: e.status,
                            status_detail: e.status_detail.clone(),
                            s3_bucket: e.s3_bucket.clone(),
                            start_time_ms: e.start_time_ms,
                            stop_time_ms: e.stop_time_ms,
                        },
                    )
                })
            })
            .collect::<BTreeMap<_, _>>()
            .into_values()
            .collect()
    }

    /// Stops an export as the console would (same rules as `StopContinuousExport`).
    pub fn stop_out_of_band(&mut self, id: &str, now: Instant) -> Result<(), ControlError> {
        self.settle(now);
        let export = self.find(id)?;
        begin_stop(export, now).map_err(|status| {
            ControlError::Conflict(format!("export {id} cannot be stopped: its status is {status}"))
        })?;
        self.settle(now);
        Ok(())
    }

    /// Forces a status (and `statusDetail`, or the status's default one).
    pub fn force_status(
        &mut self,
        id: &str,
        status: ExportStatus,
        detail: Option<&str>,
        now: Instant,
    ) -> Result<(), ControlError> {
        self.settle(now);
        let export = self.find(id)?;
        if matches!(status, ExportStatus::StopInProgress | ExportStatus::StopFailed | ExportStatus::Inactive) {
            export.stop_time_ms.get_or_insert_with(now_ms);
        }
        export.set_status(status, detail, now);
        Ok(())
    }

    fn find(&mut self, id: &str) -> Result<&mut Export, ControlError> {
        self.regions
            .values_mut()
            .flat_map(|r| r.exports.iter_mut())
            .find(|e| e.id == id)
            .ok_or_else(|| ControlError::NotFound(format!("export {id} not found")))
    }
}

/// Moves a stoppable export to `STOP_IN_PROGRESS` (stamping a new stop time);
/// otherwise returns its status.
///
/// Which statuses may be stopped follows the AWS API reference,
/// `ContinuousExportDescription.status`:
///
/// - `ACTIVE`: the normal case.
/// - `ERROR`: "an error occurred during export. To fix the issue, call
///   stop-continuous-export and start-continuous-export."
/// - `STOP_FAILED`: "an error occurred stopping the export. To recover, call
///   stop-continuous-export again."
///
/// Every other status is refused, and [`State::stop`] answers:
///
/// - `START_IN_PROGRESS`: `ResourceInUseException` (the export is busy starting; it can
///   be stopped once `ACTIVE`).
/// - `START_FAILED`: `OperationNotPermittedException`; nothing runs, and the
///   documented recovery is another start ("an error occurred setting up continuous
///   export. To recover, call start-continuous-export again").
/// - `STOP_IN_PROGRESS`, `INACTIVE`: `OperationNotPermittedException`; the export is
///   already stopping or stopped.
fn begin_stop(export: &mut Export, now: Instant) -> Result<(), ExportStatus> {
    match export.status {
        ExportStatus::Active | ExportStatus::Error | ExportStatus::StopFailed => {
            export.stop_time_ms = Some(now_ms());
            export.set_status(ExportStatus::StopInProgress, None, now);
            Ok(())
        }
        other => Err(other),
    }
}

fn validate_export_id(field: &str, id: &str) -> Result<(), AwsError> {
    let problem = if id.chars().count() > MAX_EXPORT_ID_LEN {
        Some(format!("must have length less than or equal to {MAX_EXPORT_ID_LEN}"))
    } else if id.chars().any(char::is_whitespace) {
        Some("must satisfy regular expression pattern: \\S*".to_owned())
    } else {
        None
    };
    match problem {
        Some(p) => Err(AwsError::new(
            "InvalidParameterValueException",
            format!("Value at '{field}' failed to satisfy constraint: Member {p}"),
        )),
        None => Ok(()),
    }
}

fn not_found(id: &str) -> AwsError {
    AwsError::new("ResourceNotFoundException", format!("Continuous export {id} was not found"))
}

/// Current wall-clock time, milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// ADS timestamps: epoch seconds as a JSON number with a millisecond fraction.
fn epoch_seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

const TOKEN_PREFIX: &str = "ads-emulator-cursor:";

/// Opaque pagination token pointing at the export with sequence number `seq`.
fn encode_token(seq: u64) -> String {
    format!("{TOKEN_PREFIX}{seq}").bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<u64> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()?.strip_prefix(TOKEN_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_garbage() {
        assert_eq!(decode_token(&encode_token(42)), Some(42));
        for bad in ["", "zz", "abc", "é", "61", &encode_token(1)[2..]] {
            assert_eq!(decode_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn timestamps_have_millisecond_fraction() {
        assert_eq!(epoch_seconds(1_493_405_005_639).to_string(), "1493405005.639");
    }
}
