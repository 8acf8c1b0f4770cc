//! The emulated ADS state: per account, the Migration Hub home region and the exports
//! per region, with their state machine; faults, rate limits and counters.
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
use super::identity::ACCOUNT_ID;
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
    /// Account the export lives in (12 digits).
    #[serde(default = "default_account")]
    pub account_id: String,
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

fn default_account() -> String {
    ACCOUNT_ID.to_owned()
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

/// One account's state, as ADS and Migration Hub Config keep it per account.
#[derive(Debug, Default)]
struct Account {
    /// The Migration Hub home region (the region ADS answers in) and its control;
    /// `None`: no home region set.
    home_region: Option<HomeRegionControl>,
    regions: BTreeMap<String, Region>,
}

/// What the admin API reports of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    /// Account ID (12 digits).
    pub account_id: String,
    /// Its Migration Hub home region, `null` when not set.
    pub home_region: Option<String>,
    /// Its exports, all regions and statuses.
    pub exports: usize,
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
    pub start_delay: Duration,
    pub stop_delay: Duration,
    pub stop_sample_response: bool,
    pub faults: Vec<Fault>,
    /// Calls of all accounts.
    pub counters: Counters,
    /// Calls per account (the account of each call's credentials).
    pub by_account: BTreeMap<String, Counters>,
    /// Rate-limit mode: calls above this many per second (a token bucket with a burst
    /// of as many) answer `ThrottlingException`; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// Rate-limit mode of single accounts, on top of [`Self::rate_limit`].
    pub account_rate_limits: BTreeMap<String, RateLimit>,
    /// The distinct client identities seen (`x-amz-user-agent`, else `User-Agent`).
    pub user_agents: std::collections::BTreeSet<String>,
    accounts: BTreeMap<String, Account>,
    next_seq: u64,
}

impl State {
    pub fn new(home_region: Option<String>, start_delay: Duration, stop_delay: Duration) -> Self {
        let mut state = State { start_delay, stop_delay, ..State::default() };
        state.set_home_region(ACCOUNT_ID, home_region);
        state
    }

    /// Clears exports, faults and counters; keeps the configuration (accounts and their
    /// home regions included).
    pub fn reset(&mut self) {
        self.faults.clear();
        self.counters = Counters::default();
        self.by_account.clear();
        self.user_agents.clear();
        for account in self.accounts.values_mut() {
            account.regions.clear();
        }
    }

    /// The home region control of `account`, if it has a home region.
    pub fn home_region(&self, account: &str) -> Option<&HomeRegionControl> {
        self.accounts.get(account).and_then(|a| a.home_region.as_ref())
    }

    /// Where `account`'s home region control is kept (creating the account).
    pub fn home_region_mut(&mut self, account: &str) -> &mut Option<HomeRegionControl> {
        &mut self.account_mut(account).home_region
    }

    /// Sets or clears `account`'s home region: a new region gets a new control (a new
    /// `ControlId` and `RequestedTime`); the region it already has keeps its control.
    pub fn set_home_region(&mut self, account: &str, region: Option<String>) {
        let slot = self.home_region_mut(account);
        if slot.as_ref().map(|c| &c.home_region) != region.as_ref() {
            *slot = region.map(HomeRegionControl::new);
        }
    }

    /// Makes `account` known (listed by [`Self::accounts`]) without changing it.
    pub fn create_account(&mut self, account: &str) {
        self.account_mut(account);
    }

    fn account_mut(&mut self, account: &str) -> &mut Account {
        self.accounts.entry(account.to_owned()).or_default()
    }

    /// The accounts with state, plus `also` (e.g. those named by roles), sorted.
    pub fn accounts(&mut self, also: impl IntoIterator<Item = String>) -> Vec<AccountView> {
        for id in also {
            self.create_account(&id);
        }
        self.accounts
            .iter()
            .map(|(id, a)| AccountView {
                account_id: id.clone(),
                home_region: a.home_region.as_ref().map(|c| c.home_region.clone()),
                exports: a.regions.values().map(|r| r.exports.len()).sum(),
            })
            .collect()
    }

    /// Counts one call of `operation` in `account` with `outcome`, in the totals and
    /// in the account's counters.
    pub fn record(&mut self, account: &str, operation: &str, outcome: &str) {
        self.counters.record(operation, outcome);
        self.by_account.entry(account.to_owned()).or_default().record(operation, outcome);
    }

    /// Whether a call in `account` at `now` is within the account's rate limit and the
    /// global one (taking a token of each it passes; a refused call takes no global token).
    pub fn admit(&mut self, account: &str, now: Instant) -> bool {
        self.account_rate_limits.get_mut(account).is_none_or(|l| l.admit(now))
            && self.rate_limit.as_mut().is_none_or(|l| l.admit(now))
    }

    /// Applies due transitions, using the delays configured now.
    pub fn settle(&mut self, now: Instant) {
        let (start_delay, stop_delay) = (self.start_delay, self.stop_delay);
        let regions = self.accounts.values_mut().flat_map(|a| a.regions.values_mut());
        for export in regions.flat_map(|r| r.exports.iter_mut()) {
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

    /// Picks the faults for one call of `operation` in `account`: the total added
    /// latency and the first matching non-latency fault (a copy, whose `after_effect`
    /// says whether the call is executed before the fault answers it). Consumes one use
    /// of every fault it applies.
    pub fn take_faults(&mut self, operation: &str, account: &str) -> (Duration, Option<Fault>) {
        let mut latency = Duration::ZERO;
        let mut answer = None;
        for fault in self.faults.iter_mut().filter(|f| f.matches(operation, account)) {
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

    /// `StartContinuousExport` in `account` and `region`.
    pub fn start(&mut self, account: &str, region: &str, now: Instant) -> Result<Value, AwsError> {
        self.settle(now);
        let seq = self.next_seq;
        let regions = &mut self.accounts.entry(account.to_owned()).or_default().regions;
        let region_state = regions.entry(region.to_owned()).or_insert_with(|| Region {
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
            seq,
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

    /// `DescribeContinuousExports` in `account` and `region`: newest first, filtered,
    /// paginated; another account's export IDs are `ResourceNotFoundException`.
    pub fn describe(
        &mut self,
        account: &str,
        region: &str,
        input: DescribeInput,
        now: Instant,
    ) -> Result<Value, AwsError> {
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
        let exports = self.region(account, region).map_or(&[][..], |r| r.exports.as_slice());
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

    /// `StopContinuousExport` in `account` and `region`.
    pub fn stop(&mut self, account: &str, region: &str, input: StopInput, now: Instant) -> Result<Value, AwsError> {
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
            .accounts
            .get_mut(account)
            .and_then(|a| a.regions.get_mut(region))
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

    fn region(&self, account: &str, region: &str) -> Option<&Region> {
        self.accounts.get(account).and_then(|a| a.regions.get(region))
    }

    /// All exports of all accounts and regions, oldest first.
    pub fn views(&mut self, now: Instant) -> Vec<ExportView> {
        self.settle(now);
        self.accounts
            .iter()
            .flat_map(|(account, a)| a.regions.iter().map(move |(region, r)| (account, region, r)))
            .flat_map(|(account, region, r)| {
                r.exports.iter().map(move |e| {
                    (
                        e.seq,
                        ExportView {
                            account_id: account.clone(),
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
        self.accounts
            .values_mut()
            .flat_map(|a| a.regions.values_mut())
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
    fn accounts_keep_their_own_exports_and_home_regions() {
        let (a, b, region) = ("111111111111", "222222222222", "us-west-2");
        let mut s = State::new(None, Duration::ZERO, Duration::ZERO);
        let now = Instant::now();
        let in_a = s.start(a, region, now).expect("start in A");
        s.start(b, region, now).expect("A's running export does not block B");
        let conflict = s.start(a, region, now).unwrap_err();
        assert_eq!(conflict.outcome, "ConflictErrorException");
        let id = in_a["exportId"].as_str().unwrap().to_owned();
        let only = |ids: &str| DescribeInput { export_ids: Some(vec![ids.to_owned()]), ..DescribeInput::default() };
        assert!(s.describe(a, region, only(&id), now).is_ok());
        assert_eq!(s.describe(b, region, only(&id), now).unwrap_err().outcome, "ResourceNotFoundException");
        let stop = s.stop(b, region, StopInput { export_id: Some(id.clone()) }, now).unwrap_err();
        assert_eq!(stop.outcome, "ResourceNotFoundException");
        s.set_home_region(a, Some(region.into()));
        assert_eq!(s.home_region(a).map(|c| c.home_region.as_str()), Some(region));
        assert!(s.home_region(b).is_none() && s.home_region(ACCOUNT_ID).is_none());
        let views = s.views(now);
        assert_eq!(views.iter().filter(|v| v.account_id == a).count(), 1);
        assert_eq!(views.iter().filter(|v| v.account_id == b).count(), 1);
        let listed = s.accounts(["333333333333".to_owned()]);
        let ids: Vec<&str> = listed.iter().map(|v| v.account_id.as_str()).collect();
        assert_eq!(ids, [a, ACCOUNT_ID, b, "333333333333"], "the default account always exists");
        assert_eq!((listed[0].home_region.as_deref(), listed[0].exports), (Some(region), 1));
        s.reset();
        assert!(s.views(now).is_empty());
        assert!(s.home_region(a).is_some(), "reset keeps home regions");
    }

    #[test]
    fn account_rate_limits_leave_other_accounts_alone() {
        let now = Instant::now();
        let mut s = State::default();
        s.account_rate_limits.insert("111111111111".into(), RateLimit::new(1.0, now));
        assert!(s.admit("111111111111", now));
        assert!(!s.admit("111111111111", now), "the burst of one is used up");
        assert!((0..20).all(|_| s.admit("222222222222", now)));
        s.record("111111111111", "StartContinuousExport", "ok");
        s.record("222222222222", "StartContinuousExport", "ThrottlingException");
        assert_eq!(s.counters.total("StartContinuousExport"), 2);
        assert_eq!(s.by_account["111111111111"].get("StartContinuousExport", "ok"), 1);
        assert_eq!(s.by_account["222222222222"].get("StartContinuousExport", "ok"), 0);
    }

    #[test]
    fn timestamps_have_millisecond_fraction() {
        assert_eq!(epoch_seconds(1_493_405_005_639).to_string(), "1493405005.639");
    }
}
