//! The admin API under `/_emulator/` (JSON, no authentication). Shapes are documented in
//! [`crate::emulator`].

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Emulator;
use super::fault::Fault;
use super::state::ControlError;
use crate::ads::ExportStatus;

/// Routes of the admin API, relative to `/_emulator`.
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/exports", axum::routing::get(exports))
        .route("/counters", axum::routing::get(counters))
        .route("/faults", axum::routing::get(faults).post(add_faults).delete(clear_faults))
        .route("/home-region", post(home_region))
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

async fn exports(State(emu): State<Emulator>) -> Response {
    Json(emu.exports()).into_response()
}

async fn counters(State(emu): State<Emulator>) -> Response {
    Json(emu.counters()).into_response()
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
    #[serde(deny_unknown_fields)]
    struct Input {
        /// Required, but may be `null`.
        region: Value,
    }
    let region = match parse::<Input>(&body)?.region {
        Value::Null => None,
        Value::String(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Some(r),
        other => {
            return Err(bad_request(format!(
                "field `region`: expected a region name such as \"us-west-2\" or null, got {other}"
            )));
        }
    };
    emu.set_home_region(region);
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
