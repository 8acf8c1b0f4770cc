//! AWS Migration Hub Config (the "home region" API) in the awsJson1.1 protocol:
//! `POST /` with `X-Amz-Target: AWSMigrationHubMultiAccountService.<Operation>`, bodies
//! `application/x-amz-json-1.1`, SigV4 signing name `mgh`.
//!
//! Implemented, with the shapes `aws-sdk-migrationhubconfig`'s deserializers read
//! (members in PascalCase, as the service model names them):
//!
//! - `GetHomeRegion`: `{}` -> `{"HomeRegion":"us-west-2"}`, or `{}` when no home region
//!   is set.
//! - `CreateHomeRegionControl`: `{"HomeRegion","Target":{"Type":"ACCOUNT","Id"?},"DryRun"?}`
//!   -> `{"HomeRegionControl":{"ControlId":"hrc-<12 lower-case letters and digits>",
//!   "HomeRegion","Target":{"Type":"ACCOUNT","Id"},"RequestedTime":<epoch seconds>}}`.
//!   `DryRun: true` answers `DryRunOperation` (the documented "authorization of an action
//!   was successful") without effect; a second control, a malformed region, a target type
//!   other than `ACCOUNT` or another account's ID answer `InvalidInputException`.
//! - `DescribeHomeRegionControls`: optional filters `ControlId`, `HomeRegion`, `Target`,
//!   `MaxResults` (1..=100), `NextToken` -> `{"HomeRegionControls":[HomeRegionControl]}`
//!   (at most one control, so never a `NextToken`).
//!
//! Every call answers for the caller's account (the account of its credentials, see
//! [`crate::emulator`]): its home region is the region ADS accepts that account's calls
//! in, set by [`super::EmulatorConfig::home_region`] (the default account),
//! `POST /_emulator/home-region`, `POST /_emulator/accounts` or `CreateHomeRegionControl`,
//! so both APIs always agree. `Target.Id` must be the caller's account. The API itself
//! answers in any signing region (AWS serves it in the Migration Hub home-region
//! regions, e.g. us-west-2).
//!
//! Errors are `{"__type":"<Name>","Message":"..."}`: `InternalServerError` with HTTP 500,
//! `ServiceUnavailableException` with 503, the others ([`DOCUMENTED_ERRORS`]) with 400.
//! Injected faults ([`super::Fault`] with `"operation":"GetHomeRegion"` and the like, or
//! without `operation`) apply as they do to ADS; the rate-limit mode is ADS's only.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Emulator;
use super::fault::FaultKind;
use super::protocol::AwsError;

/// `X-Amz-Target` prefix of every Migration Hub Config operation.
pub const TARGET_PREFIX: &str = "AWSMigrationHubMultiAccountService.";

/// The Migration Hub Config operations the emulator serves (their `X-Amz-Target` suffixes).
pub const OPERATIONS: [&str; 3] = ["GetHomeRegion", "CreateHomeRegionControl", "DescribeHomeRegionControls"];

/// Every error the Migration Hub Config API reference documents for [`OPERATIONS`]
/// (`DryRunOperation` only for `CreateHomeRegionControl`).
pub const DOCUMENTED_ERRORS: [&str; 6] = [
    "AccessDeniedException",
    "DryRunOperation",
    "InternalServerError",
    "InvalidInputException",
    "ServiceUnavailableException",
    "ThrottlingException",
];

/// The account's home region control: what `CreateHomeRegionControl` creates and
/// `DescribeHomeRegionControls` lists.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HomeRegionControl {
    /// `hrc-` and 12 lower-case letters and digits.
    pub control_id: String,
    /// The home region, e.g. `us-west-2`.
    pub home_region: String,
    /// When it was set, UTC seconds since the epoch with a millisecond fraction.
    pub requested_time: f64,
}

impl HomeRegionControl {
    /// A new control for `home_region`, set now.
    pub fn new(home_region: String) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis();
        HomeRegionControl {
            control_id: format!("hrc-{}", &id[..12]),
            home_region,
            requested_time: millis as f64 / 1000.0,
        }
    }

    /// The API's `HomeRegionControl` shape; `account` is the target's `Id`.
    fn to_json(&self, account: &str) -> Value {
        json!({
            "ControlId": self.control_id,
            "HomeRegion": self.home_region,
            "Target": {"Type": "ACCOUNT", "Id": account},
            "RequestedTime": self.requested_time,
        })
    }
}

/// Whether `headers` name a Migration Hub Config operation (any, known or not).
pub(crate) fn is_request(headers: &HeaderMap) -> bool {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// The operation named by `target`, if it is one of [`OPERATIONS`].
pub(crate) fn operation(target: &str) -> Option<&'static str> {
    let name = target.strip_prefix(TARGET_PREFIX)?;
    OPERATIONS.into_iter().find(|op| *op == name)
}

/// The HTTP status Migration Hub Config answers `code` with.
pub(crate) fn status_of(code: &str) -> StatusCode {
    match code {
        "InternalServerError" => StatusCode::INTERNAL_SERVER_ERROR,
        "ServiceUnavailableException" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An error answer of this API.
fn error(code: &str, message: impl Into<String>) -> AwsError {
    AwsError::new(code, message).with_status(status_of(code))
}

/// Executes one call of `operation` (one of [`OPERATIONS`]) on `account`'s home
/// region: the answer a fault-free Migration Hub Config would give.
pub(crate) fn execute(emulator: &Emulator, account: &str, operation: &str, input: &Value) -> Result<Value, AwsError> {
    match operation {
        "GetHomeRegion" => Ok(emulator.with_state(|s| match s.home_region(account) {
            Some(c) => json!({ "HomeRegion": c.home_region }),
            None => json!({}),
        })),
        "CreateHomeRegionControl" => create(emulator, account, parse(input)?),
        "DescribeHomeRegionControls" => describe(emulator, account, parse(input)?),
        other => Err(AwsError::new("UnknownOperationException", format!("Unknown operation {other:?}"))),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(input: &Value) -> Result<T, AwsError> {
    serde_json::from_value(input.clone()).map_err(|e| error("InvalidInputException", format!("Invalid input: {e}")))
}

/// `Target`: `{"Type":"ACCOUNT","Id":"123456789012"}`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Target {
    r#type: String,
    id: Option<String>,
}

impl Target {
    /// Checks the target is `account`, the caller's.
    fn check(&self, account: &str) -> Result<(), AwsError> {
        if self.r#type != "ACCOUNT" {
            return Err(error(
                "InvalidInputException",
                format!("Target.Type {:?} is not valid: the only target type is ACCOUNT", self.r#type),
            ));
        }
        match self.id.as_deref() {
            Some(id) if id != account => {
                Err(error("InvalidInputException", format!("Target.Id {id} is not the calling account ({account})")))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    home_region: Option<String>,
    target: Option<Target>,
    dry_run: Option<bool>,
}

fn create(emulator: &Emulator, account: &str, input: CreateInput) -> Result<Value, AwsError> {
    let Some(region) = input.home_region.filter(|r| crate::cli::is_region_name(r)) else {
        return Err(error("InvalidInputException", "HomeRegion is required and must be an AWS Region name"));
    };
    let Some(target) = input.target else {
        return Err(error("InvalidInputException", "Target is required"));
    };
    target.check(account)?;
    if input.dry_run == Some(true) {
        return Err(error("DryRunOperation", "Request would have succeeded, but DryRun flag is set"));
    }
    emulator.with_state(|s| match s.home_region_mut(account) {
        Some(existing) => Err(error(
            "InvalidInputException",
            format!("A home region is already set for this account: {}", existing.home_region),
        )),
        slot => {
            let control = HomeRegionControl::new(region);
            let answer = json!({ "HomeRegionControl": control.to_json(account) });
            *slot = Some(control);
            Ok(answer)
        }
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    control_id: Option<String>,
    home_region: Option<String>,
    target: Option<Target>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn describe(emulator: &Emulator, account: &str, input: DescribeInput) -> Result<Value, AwsError> {
    if let Some(n) = input.max_results.filter(|n| !(1..=100).contains(n)) {
        return Err(error("InvalidInputException", format!("MaxResults {n} is not between 1 and 100")));
    }
    if input.next_token.is_some() {
        return Err(error("InvalidInputException", "NextToken is not valid"));
    }
    if let Some(target) = &input.target {
        target.check(account)?;
    }
    let controls: Vec<Value> = emulator.with_state(|s| {
        s.home_region(account)
            .into_iter()
            .filter(|c| input.control_id.as_ref().is_none_or(|id| *id == c.control_id))
            .filter(|c| input.home_region.as_ref().is_none_or(|r| *r == c.home_region))
            .map(|c| c.to_json(account))
            .collect()
    });
    Ok(json!({ "HomeRegionControls": controls }))
}

/// Handles one Migration Hub Config call in `account` after authentication: faults
/// first (as for ADS), then [`execute`]. Returns the answer and the latency to add.
pub(crate) fn dispatch(
    emulator: &Emulator,
    account: &str,
    operation: &str,
    body: &[u8],
) -> (Result<Value, AwsError>, Duration) {
    let (latency, fault) = emulator.with_state(|s| s.take_faults(operation, account));
    let after_effect = fault.as_ref().is_some_and(|f| f.after_effect);
    // A fault's modelled error gets this API's status; `http` and `throttling` faults
    // answer as they do for ADS.
    let answer = fault.and_then(|f| match f.kind {
        FaultKind::Error { name, message } => {
            let message = message.unwrap_or_else(|| format!("Injected {name}"));
            Some(error(&name, message))
        }
        kind => kind.answer(),
    });
    let result = match answer {
        Some(err) if !after_effect => Err(err),
        answer => {
            let handled = super::wire::parse_body(body).and_then(|input| execute(emulator, account, operation, &input));
            match answer {
                Some(err) => Err(err),
                None => handled,
            }
        }
    };
    (result, latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_ids_have_the_documented_form() {
        let c = HomeRegionControl::new("eu-central-1".into());
        let rest = c.control_id.strip_prefix("hrc-").expect("hrc- prefix");
        assert_eq!(rest.len(), 12);
        assert!(rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{}", c.control_id);
        assert!(c.requested_time > 1.0e9);
    }

    #[test]
    fn operations_are_read_from_the_target() {
        assert_eq!(operation("AWSMigrationHubMultiAccountService.GetHomeRegion"), Some("GetHomeRegion"));
        assert_eq!(operation("AWSMigrationHubMultiAccountService.DeleteHomeRegionControl"), None);
        assert_eq!(operation("AWSPoseidonService_V2015_11_01.GetHomeRegion"), None);
        assert_eq!(status_of("InternalServerError"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_of("ServiceUnavailableException"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of("ThrottlingException"), StatusCode::BAD_REQUEST);
    }
}
