//! The admin API under `/_emulator/` (JSON, no authentication). Shapes are documented in
//! [`crate::emulator`].

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Emulator;
use super::fault::Fault;
use super::identity::{ACCOUNT_ID, check_account_id};
use super::state::ControlError;
use crate::ads::ExportStatus;

/// Routes of the admin API, relative to `/_emulator`.
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/exports", axum::routing::get(exports))
        .route("/counters", axum::routing::get(counters))
        .route("/faults", axum::routing::get(faults).post(add_faults).delete(clear_faults))
        .route("/home-region", post(home_region))
        .route("/accounts", axum::routing::get(accounts).post(create_account))
        .route("/rate-limit", post(rate_limit))
        .route("/delays", post(delays))
        .route("/stop-sample-response", post(stop_sample_response))
        .route("/exports/{id}/stop", post(stop_export))
        .route("/exports/{id}/error", post(error_export))
        .route("/exports/{id}/status", post(status_export))
        .route("/reset", post(reset))
        .merge(super::identity_admin::routes())
}

pub(crate) type AdminResult = Result<Response, AdminError>;

/// An admin failure, answered as `{"error": message}` with `status`.
pub(crate) struct AdminError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<ControlError> for AdminError {
    fn from(e: ControlError) -> Self {
        let status = match e {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
        };
        AdminError { status, message: e.to_string() }
    }
}

pub(crate) fn bad_request(message: impl std::fmt::Display) -> AdminError {
    AdminError { status: StatusCode::BAD_REQUEST, message: message.to_string() }
}

pub(crate) fn ok() -> Response {
    Json(json!({ "ok": true })).into_response()
}

/// Parses a JSON body; serde's messages name the missing, unknown or mistyped field.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid request body: {e}")))
}

/// `?accountId=` of `GET /exports`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccountFilter {
    account_id: Option<String>,
}

async fn exports(State(emu): State<Emulator>, query: Result<Query<AccountFilter>, QueryRejection>) -> AdminResult {
    let filter = query.map_err(|e| bad_request(format!("invalid query: {e} (expected ?accountId=<12 digits>)")))?;
    let account = filter.0.account_id;
    if let Some(a) = &account {
        check_account_id("accountId", a).map_err(bad_request)?;
    }
    let all = emu.exports().into_iter().filter(|e| account.as_ref().is_none_or(|a| *a == e.account_id));
    Ok(Json(all.collect::<Vec<_>>()).into_response())
}

/// The totals per operation (the [`super::Counters`] shape) plus `byAccount`: the same
/// per account, `{"byAccount":{"111111111111":{"StartContinuousExport":{"ok":1}}}}`.
async fn counters(State(emu): State<Emulator>) -> Response {
    let mut body = serde_json::to_value(emu.counters()).unwrap_or_else(|_| json!({}));
    body["byAccount"] = json!(emu.counters_by_account());
    Json(body).into_response()
}

async fn faults(State(emu): State<Emulator>) -> Response {
    Json(emu.faults()).into_response()
}

/// Accepts one fault object or an array of them.
async fn add_faults(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    let values = match parse::<Value>(&body)? {
        Value::Array(values) => values,
        value => vec![value],
    };
    let new: Vec<Fault> = values
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(|e| bad_request(format!("invalid fault: {e}")))?;
    for fault in new {
        emu.inject_fault(fault);
    }
    Ok((StatusCode::CREATED, Json(emu.faults())).into_response())
}

async fn clear_faults(State(emu): State<Emulator>) -> Response {
    emu.clear_faults();
    ok()
}

async fn home_region(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Input {
        /// Required, but may be `null`.
        region: Value,
        account_id: Option<String>,
    }
    let input: Input = parse(&body)?;
    let account = account_or_default(input.account_id)?;
    emu.set_account_home_region(&account, region_or_null("region", input.region)?);
    Ok(ok())
}

/// An optional `accountId`, checked; the default account when omitted.
fn account_or_default(account: Option<String>) -> Result<String, AdminError> {
    let account = account.unwrap_or_else(|| ACCOUNT_ID.to_owned());
    check_account_id("accountId", &account).map_err(bad_request)?;
    Ok(account)
}

/// A region name or `null` (no home region) in JSON field `field`.
fn region_or_null(field: &str, value: Value) -> Result<Option<String>, AdminError> {
    match value {
        Value::Null => Ok(None),
        Value::String(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Ok(Some(r)),
        other => Err(bad_request(format!(
            "field `{field}`: expected a region name such as \"us-west-2\" or null, got {other}"
        ))),
    }
}

async fn accounts(State(emu): State<Emulator>) -> Response {
    Json(emu.accounts()).into_response()
}

/// `{"accountId": "111111111111", "homeRegion"?: "us-west-2" | null}`: registers the
/// account; a `homeRegion` given sets (or with `null` clears) its home region, an
/// omitted one leaves it as it is.
async fn create_account(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Input {
        account_id: String,
        /// Absent: unchanged; `null`: cleared.
        #[serde(default, deserialize_with = "present")]
        home_region: Option<Value>,
    }
    let input: Input = parse(&body)?;
    check_account_id("accountId", &input.account_id).map_err(bad_request)?;
    let region = input.home_region.map(|v| region_or_null("homeRegion", v)).transpose()?;
    emu.create_account(&input.account_id);
    if let Some(region) = region {
        emu.set_account_home_region(&input.account_id, region);
    }
    Ok(ok())
}

/// Deserializes a field that is present (even as `null`) into `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `{"perSecond": 2 | null, "accountId"?: "111111111111"}`: the global rate limit of
/// ADS calls, or with `accountId` that account's own; `null` turns it off.
async fn rate_limit(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Input {
        /// `null` or omitted: no limit.
        #[serde(default)]
        per_second: Value,
        account_id: Option<String>,
    }
    let input: Input = parse(&body)?;
    let per_second = match input.per_second {
        Value::Null => None,
        Value::Number(n) if n.as_f64().is_some_and(|r| r.is_finite() && r > 0.0) => n.as_f64(),
        other => {
            return Err(bad_request(format!(
                "field `perSecond`: expected a positive number of calls per second or null, got {other}"
            )));
        }
    };
    match input.account_id {
        Some(account) => {
            check_account_id("accountId", &account).map_err(bad_request)?;
            emu.set_account_rate_limit(&account, per_second);
        }
        None => emu.set_rate_limit(per_second),
    }
    Ok(ok())
}

async fn delays(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Input {
        start_delay_ms: u64,
        stop_delay_ms: u64,
    }
    let input: Input = parse(&body)?;
    emu.set_delays(Duration::from_millis(input.start_delay_ms), Duration::from_millis(input.stop_delay_ms));
    Ok(ok())
}

async fn stop_sample_response(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        enabled: bool,
    }
    emu.set_stop_sample_response(parse::<Input>(&body)?.enabled);
    Ok(ok())
}

async fn stop_export(State(emu): State<Emulator>, Path(id): Path<String>) -> AdminResult {
    emu.control(|s, now| s.stop_out_of_band(&id, now))?;
    Ok(ok())
}

async fn error_export(State(emu): State<Emulator>, Path(id): Path<String>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Input {
        status_detail: String,
    }
    let input: Input = parse(&body)?;
    emu.control(|s, now| s.force_status(&id, ExportStatus::Error, Some(&input.status_detail), now))?;
    Ok(ok())
}

async fn status_export(State(emu): State<Emulator>, Path(id): Path<String>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Input {
        status: ExportStatus,
        status_detail: Option<String>,
    }
    let input: Input = parse(&body)?;
    emu.control(|s, now| s.force_status(&id, input.status, input.status_detail.as_deref(), now))?;
    Ok(ok())
}

async fn reset(State(emu): State<Emulator>) -> Response {
    emu.reset();
    ok()
}
