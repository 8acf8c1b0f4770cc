//! Fault injection: what can go wrong, for which operation, how many times.
//!
//! See the module docs of [`crate::emulator`] for the JSON shape.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::migrationhub_config as mhc;
use super::protocol::AwsError;
use crate::ads::Operation;

/// Every error the ADS API documents for the continuous-export operations.
///
/// `ServerInternalErrorException` is answered with HTTP 500, all others with HTTP 400.
/// Not every error is modelled by the SDK for every operation (for example the SDK's
/// `StartContinuousExportError` has no `ResourceNotFoundException` variant); injecting
/// such a pair still works and surfaces in the SDK as an unhandled error with that code.
pub const DOCUMENTED_ERRORS: [&str; 9] = [
    "AuthorizationErrorException",
    "ConflictErrorException",
    "HomeRegionNotSetException",
    "InvalidParameterException",
    "InvalidParameterValueException",
    "OperationNotPermittedException",
    "ResourceInUseException",
    "ResourceNotFoundException",
    "ServerInternalErrorException",
];

/// One injected fault.
///
/// (De)serializes as a flat JSON object, e.g.
/// `{"operation":"StartContinuousExport","error":"AuthorizationErrorException","count":3}`,
/// `{"http":503}`, `{"throttling":true}`, `{"latencyMs":2000}` or
/// `{"operation":"StartContinuousExport","http":500,"afterEffect":true,"count":1}`; any of
/// them may add `"accountId":"111111111111"` to apply only to calls in that account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FaultSpec", into = "FaultSpec")]
pub struct Fault {
    /// Operation name (e.g. `"StopContinuousExport"`) the fault applies to; `None` = every operation.
    pub operation: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// How many matching calls the fault affects before it disappears; `None` = until cleared.
    pub remaining: Option<u32>,
    /// JSON `afterEffect`: when `true`, the call is executed normally first (its state
    /// change is kept, e.g. a Start creates an export) and only its answer is replaced
    /// by this fault's error, as when AWS acts on a request but the answer is lost or
    /// turned into a 5xx on the way back. Only meaningful for [`FaultKind::Error`],
    /// [`FaultKind::Http`] and [`FaultKind::Throttling`] (a latency fault always lets
    /// the call take effect); [`Fault::validate`] rejects it otherwise. Default `false`:
    /// the fault answers *instead of* the call, which then has no effect.
    pub after_effect: bool,
    /// JSON `accountId`: the account (12 digits) whose calls the fault applies to (the
    /// account of each call's credentials, see [`crate::emulator`]); `None` = every account.
    pub account_id: Option<String>,
}

/// What an injected fault does to a matching call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with a documented ADS error (one of [`DOCUMENTED_ERRORS`]).
    Error {
        /// Error name, sent as `__type`.
        name: String,
        /// Error message; a generic one when `None`.
        message: Option<String>,
    },
    /// Answer with this HTTP status (400..=599) and an AWS-shaped JSON body.
    Http {
        /// HTTP status code.
        status: u16,
    },
    /// Answer HTTP 400 `ThrottlingException` ("Rate exceeded"), which the SDK treats as retryable.
    Throttling,
    /// Handle the call (other faults still apply), then wait this many milliseconds
    /// before answering: the effect happens even if the client gives up meanwhile.
    Latency {
        /// Added delay in milliseconds.
        ms: u64,
    },
}

impl FaultKind {
    /// The error answer this fault gives instead of (or after) the call; `None` for a
    /// latency fault, which only delays the call's own answer.
    pub(crate) fn answer(self) -> Option<AwsError> {
        match self {
            FaultKind::Error { name, message } => {
                let message = message.unwrap_or_else(|| format!("Injected {name}"));
                Some(AwsError::new(&name, message))
            }
            FaultKind::Http { status } => Some(AwsError::http(status)),
            FaultKind::Throttling => Some(AwsError::new("ThrottlingException", "Rate exceeded")),
            FaultKind::Latency { .. } => None,
        }
    }
}

impl Fault {
    /// A fault that affects every matching call until cleared.
    pub fn new(operation: Option<&str>, kind: FaultKind) -> Self {
        Fault { operation: operation.map(str::to_owned), kind, remaining: None, after_effect: false, account_id: None }
    }

    /// Lets the call take effect before the fault's error answers it (JSON
    /// `"afterEffect": true`; see the `after_effect` field). Only valid for error, HTTP
    /// and throttling faults: [`Fault::validate`] rejects it on a latency fault.
    pub fn after_effect(mut self) -> Self {
        self.after_effect = true;
        self
    }

    /// Limits the fault to the next `count` matching calls.
    pub fn times(mut self, count: u32) -> Self {
        self.remaining = Some(count);
        self
    }

    /// Limits the fault to calls in `account` (12 digits).
    pub fn in_account(mut self, account: &str) -> Self {
        self.account_id = Some(account.to_owned());
        self
    }

    /// Whether this fault applies to a call of `operation` in `account`.
    pub(crate) fn matches(&self, operation: &str, account: &str) -> bool {
        self.operation.as_deref().is_none_or(|op| op == operation)
            && self.account_id.as_deref().is_none_or(|a| a == account)
    }

    /// Checks the fault is meaningful; the error names the offending JSON field.
    ///
    /// `operation` is an ADS operation or a Migration Hub Config one
    /// ([`mhc::OPERATIONS`]); `error` is documented for that operation's API
    /// ([`DOCUMENTED_ERRORS`] or [`mhc::DOCUMENTED_ERRORS`]), or for either API when
    /// the fault names no operation.
    pub fn validate(&self) -> Result<(), String> {
        let api = match self.operation.as_deref() {
            None => Api::Any,
            Some(op) if Operation::from_name(op).is_some() => Api::Ads,
            Some(op) if mhc::OPERATIONS.contains(&op) => Api::MigrationHubConfig,
            Some(op) => {
                return Err(format!(
                    "field `operation`: unknown operation {op:?}, expected one of {}, {}",
                    Operation::ALL.map(Operation::name).join(", "),
                    mhc::OPERATIONS.join(", ")
                ));
            }
        };
        if let Some(account) = &self.account_id {
            super::identity::check_account_id("accountId", account)?;
        }
        if self.remaining == Some(0) {
            return Err("field `count`: must be at least 1 (omit it for no limit)".into());
        }
        if self.after_effect && matches!(self.kind, FaultKind::Latency { .. }) {
            return Err(AFTER_EFFECT_ONLY_WITH.into());
        }
        match &self.kind {
            FaultKind::Error { name, .. } if !api.documents(name) => Err(format!(
                "field `error`: {name:?} is not a documented {} error, expected one of {}",
                api.title(),
                api.errors().join(", ")
            )),
            FaultKind::Http { status } if !(400..=599).contains(status) => {
                Err(format!("field `http`: status {status} is not an error status (400..=599)"))
            }
            _ => Ok(()),
        }
    }
}

/// Which API a fault's `operation` belongs to.
#[derive(Clone, Copy)]
enum Api {
    Ads,
    MigrationHubConfig,
    /// No `operation`: every call of both.
    Any,
}

impl Api {
    fn errors(self) -> Vec<&'static str> {
        match self {
            Api::Ads => DOCUMENTED_ERRORS.to_vec(),
            Api::MigrationHubConfig => mhc::DOCUMENTED_ERRORS.to_vec(),
            Api::Any => DOCUMENTED_ERRORS.iter().chain(&mhc::DOCUMENTED_ERRORS).copied().collect(),
        }
    }

    fn documents(self, name: &str) -> bool {
        self.errors().contains(&name)
    }

    fn title(self) -> &'static str {
        match self {
            Api::Ads => "ADS",
            Api::MigrationHubConfig => "Migration Hub Config",
            Api::Any => "ADS or Migration Hub Config",
        }
    }
}

const AFTER_EFFECT_ONLY_WITH: &str = "field `afterEffect`: only allowed together with `error`, `http` or \
     `throttling` (a `latencyMs` fault always lets the call take effect)";

/// Reads a JSON array of faults from `path`; the error names the file and the problem.
pub fn load_faults(path: &Path) -> Result<Vec<Fault>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("faults file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "faults file {}: {e} (expected a JSON array of faults such as \
             [{{\"operation\":\"StartContinuousExport\",\"error\":\"AuthorizationErrorException\",\"count\":1}}])",
            path.display()
        )
    })
}

/// The flat wire shape of a [`Fault`].
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    throttling: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_effect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
}

impl TryFrom<FaultSpec> for Fault {
    type Error = String;

    fn try_from(spec: FaultSpec) -> Result<Self, String> {
        if spec.message.is_some() && spec.error.is_none() {
            return Err("field `message`: only allowed together with `error`".into());
        }
        if spec.throttling == Some(false) {
            return Err("field `throttling`: must be true (omit it otherwise)".into());
        }
        let after_effect = spec.after_effect == Some(true);
        if after_effect && spec.error.is_none() && spec.http.is_none() && spec.throttling.is_none() {
            return Err(AFTER_EFFECT_ONLY_WITH.into());
        }
        let mut kinds = Vec::new();
        if let Some(name) = spec.error {
            let message = spec.message;
            kinds.push(FaultKind::Error { name, message });
        }
        if let Some(status) = spec.http {
            kinds.push(FaultKind::Http { status });
        }
        if spec.throttling == Some(true) {
            kinds.push(FaultKind::Throttling);
        }
        if let Some(ms) = spec.latency_ms {
            kinds.push(FaultKind::Latency { ms });
        }
        let kind = match kinds.len() {
            1 => kinds.remove(0),
            n => {
                return Err(format!(
                    "exactly one of the fields `error`, `http`, `throttling`, `latencyMs` is required, got {n}"
                ));
            }
        };
        let fault =
            Fault { operation: spec.operation, kind, remaining: spec.count, after_effect, account_id: spec.account_id };
        fault.validate()?;
        Ok(fault)
    }
}

impl From<Fault> for FaultSpec {
    fn from(fault: Fault) -> Self {
        let mut spec = FaultSpec {
            operation: fault.operation,
            count: fault.remaining,
            after_effect: fault.after_effect.then_some(true),
            account_id: fault.account_id,
            ..FaultSpec::default()
        };
        match fault.kind {
            FaultKind::Error { name, message } => {
                spec.error = Some(name);
                spec.message = message;
            }
            FaultKind::Http { status } => spec.http = Some(status),
            FaultKind::Throttling => spec.throttling = Some(true),
            FaultKind::Latency { ms } => spec.latency_ms = Some(ms),
        }
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Fault, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn shapes_round_trip() {
        for json in [
            r#"{"operation":"StartContinuousExport","error":"AuthorizationErrorException","count":3}"#,
            r#"{"error":"ConflictErrorException","message":"nope"}"#,
            r#"{"http":503}"#,
            r#"{"throttling":true}"#,
            r#"{"operation":"StopContinuousExport","latencyMs":2000}"#,
            r#"{"operation":"StartContinuousExport","http":500,"afterEffect":true,"count":1}"#,
            r#"{"error":"ServerInternalErrorException","afterEffect":true}"#,
            r#"{"throttling":true,"afterEffect":true}"#,
            r#"{"operation":"GetHomeRegion","error":"AccessDeniedException","count":1}"#,
            r#"{"operation":"CreateHomeRegionControl","error":"DryRunOperation"}"#,
            r#"{"error":"InternalServerError"}"#,
            r#"{"operation":"StartContinuousExport","http":503,"count":1,"accountId":"111111111111"}"#,
        ] {
            let fault = parse(json).expect(json);
            assert_eq!(serde_json::to_string(&fault).expect("serialize"), json);
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        for (json, field) in [
            (r#"{"operation":"Nope","http":500}"#, "operation"),
            (r#"{"error":"NopeException"}"#, "error"),
            (r#"{"operation":"GetHomeRegion","error":"ConflictErrorException"}"#, "Migration Hub Config error"),
            (r#"{"operation":"StartContinuousExport","error":"AccessDeniedException"}"#, "ADS error"),
            (r#"{"http":200}"#, "http"),
            (r#"{"throttling":false}"#, "throttling"),
            (r#"{"http":503,"count":0}"#, "count"),
            (r#"{"message":"x"}"#, "message"),
            (r#"{"latency":5}"#, "latency"),
            (r#"{"http":503,"throttling":true}"#, "exactly one"),
            (r#"{}"#, "exactly one"),
            (r#"{"latencyMs":100,"afterEffect":true}"#, "`afterEffect`"),
            (r#"{"operation":"StartContinuousExport","afterEffect":true}"#, "`afterEffect`"),
            (r#"{"http":500,"afterEffect":"yes"}"#, "expected a boolean"),
            (r#"{"http":500,"accountId":"1234"}"#, "field `accountId`"),
            (r#"{"http":500,"accountId":12}"#, "expected a string"),
        ] {
            let err = parse(json).expect_err(json);
            assert!(err.contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn account_scoped_faults_match_only_their_account() {
        let fault = parse(r#"{"http":503,"accountId":"111111111111"}"#).unwrap();
        assert_eq!(fault, Fault::new(None, FaultKind::Http { status: 503 }).in_account("111111111111"));
        assert!(fault.matches("StartContinuousExport", "111111111111"));
        assert!(!fault.matches("StartContinuousExport", "222222222222"));
        let any = parse(r#"{"operation":"GetHomeRegion","http":503}"#).unwrap();
        assert!(any.matches("GetHomeRegion", "222222222222") && !any.matches("StopContinuousExport", "222222222222"));
    }

    #[test]
    fn after_effect() {
        let fault = parse(r#"{"operation":"StartContinuousExport","http":500,"afterEffect":true,"count":1}"#).unwrap();
        assert_eq!(
            fault,
            Fault::new(Some("StartContinuousExport"), FaultKind::Http { status: 500 }).times(1).after_effect()
        );
        // `false` is the default: accepted, and not written back.
        let fault = parse(r#"{"http":503,"afterEffect":false}"#).unwrap();
        assert!(!fault.after_effect);
        assert_eq!(serde_json::to_string(&fault).unwrap(), r#"{"http":503}"#);
        assert!(parse(r#"{"latencyMs":5,"afterEffect":false}"#).is_ok());
        // The builder is validated like the JSON.
        let err = Fault::new(None, FaultKind::Latency { ms: 5 }).after_effect().validate().unwrap_err();
        assert!(err.contains("`afterEffect`") && err.contains("`error`, `http` or `throttling`"), "{err}");
    }
}
