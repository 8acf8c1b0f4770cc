//! The protocol types of the emulated ADS API, at the bottom of the emulator's
//! modules: what a call carries in (`DescribeInput`, `StopInput`) and what an error
//! answer carries out ([`AwsError`]), plus the wire constants. They depend on nothing
//! else in the emulator; `state`, `fault`, `wire` and `admin` build on them.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// `X-Amz-Target` prefix of every ADS operation.
pub const TARGET_PREFIX: &str = "AWSPoseidonService_V2015_11_01.";
/// Content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Counter key for calls whose operation is missing or unknown.
pub const UNKNOWN_OPERATION: &str = "UnknownOperation";

/// An AWS-shaped error response: `{"__type": code, "message": message}` with `status`.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub(crate) status: StatusCode,
    code: Option<String>,
    message: String,
    /// The member carrying `message`: `message` (ADS), `Message` (Migration Hub Config).
    message_key: &'static str,
    /// The counter key of this answer: the error code, or `http<status>`.
    pub(crate) outcome: String,
}

impl AwsError {
    /// A modelled error; HTTP 500 for `ServerInternalErrorException`, 400 otherwise.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        let status = if code == "ServerInternalErrorException" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        AwsError {
            status,
            code: Some(code.to_owned()),
            message: message.into(),
            message_key: "message",
            outcome: code.to_owned(),
        }
    }

    /// A bare HTTP failure, as a load balancer or an overloaded front end would send.
    pub(crate) fn http(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let code = match status {
            StatusCode::INTERNAL_SERVER_ERROR => Some("InternalFailure".to_owned()),
            StatusCode::SERVICE_UNAVAILABLE => Some("ServiceUnavailable".to_owned()),
            _ => None,
        };
        AwsError {
            status,
            code,
            message: status.canonical_reason().unwrap_or("Error").to_owned(),
            message_key: "message",
            outcome: format!("http{}", status.as_u16()),
        }
    }

    /// The same error answered with `status` (Migration Hub Config's 500 and 503 errors).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same error with its text in `Message`, as Migration Hub Config's error
    /// shapes name the member (`aws-sdk-migrationhubconfig` reads only that one).
    pub(crate) fn pascal_case(mut self) -> Self {
        self.message_key = "Message";
        self
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(code) = &self.code {
            body.insert("__type".into(), json!(code));
        }
        body.insert(self.message_key.into(), json!(self.message));
        Value::Object(body)
    }
}

/// Input of `DescribeContinuousExports`.
#[derive(Debug, Default)]
pub(crate) struct DescribeInput {
    pub export_ids: Option<Vec<String>>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// Input of `StopContinuousExport`.
#[derive(Debug, Default)]
pub(crate) struct StopInput {
    pub export_id: Option<String>,
}
