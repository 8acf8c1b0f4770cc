//! The awsJson1.1 wire protocol of ADS (`AWSPoseidonService_V2015_11_01`), and the
//! routing of Migration Hub Config calls (`AWSMigrationHubMultiAccountService`, see
//! [`super::migrationhub_config`]) that share its port and envelope.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::Emulator;
use super::credentials::request_account;
use super::migrationhub_config as mhc;
use super::protocol::{AwsError, CONTENT_TYPE, DescribeInput, StopInput, TARGET_PREFIX, UNKNOWN_OPERATION};
use crate::ads::Operation;

/// `POST /`: one ADS or Migration Hub Config API call.
pub(crate) async fn handle(State(emulator): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let call = Call { emulator: &emulator, headers: &headers, account: request_account(emulator.identity(), &headers) };
    let (op_name, (result, latency)) = if mhc::is_request(&headers) {
        let operation = mhc::operation(target);
        (operation.unwrap_or(UNKNOWN_OPERATION), dispatch_mhc(&call, operation, &body))
    } else {
        let operation = target.strip_prefix(TARGET_PREFIX).and_then(Operation::from_name);
        (operation.map_or(UNKNOWN_OPERATION, Operation::name), dispatch(&call, operation, &body))
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.outcome.as_str(),
    };
    // Counted when it takes effect: a client that gives up during the latency below
    // (dropping this handler) still made the call.
    let agent = headers.get("x-amz-user-agent").or_else(|| headers.get(header::USER_AGENT));
    let agent = agent.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    emulator.with_state(|s| {
        s.record(&call.account, op_name, outcome);
        s.user_agents.extend(agent);
    });
    tracing::info!(operation = op_name, outcome, account = call.account, "AWS call");
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (e.status, e.body()),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    response
}

/// One API call being handled: the emulator, the request headers and the account the
/// call is in (see [`request_account`]).
pub(crate) struct Call<'a> {
    pub emulator: &'a Emulator,
    pub headers: &'a HeaderMap,
    pub account: String,
}

/// Handles one call and returns its answer and the latency to add before sending it
/// (latency faults delay the answer, not the effect).
fn dispatch(call: &Call<'_>, operation: Option<Operation>, body: &[u8]) -> (Result<Value, AwsError>, Duration) {
    let Call { emulator, headers, account } = call;
    let region = match signing_region(headers) {
        Ok(r) => r,
        Err(e) => return (Err(e), Duration::ZERO),
    };
    if let Err((code, message)) = super::credentials::authorize_ads_call(emulator.identity(), headers, body) {
        return (Err(AwsError::new(code, message)), Duration::ZERO);
    }
    let Some(operation) = operation else {
        let target =
            headers.get("x-amz-target").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
        return (
            Err(AwsError::new("UnknownOperationException", format!("Unknown operation {target:?}"))),
            Duration::ZERO,
        );
    };

    let now = Instant::now();
    if !emulator.with_state(|s| s.admit(account, now)) {
        return (Err(AwsError::new("ThrottlingException", "Rate exceeded")), Duration::ZERO);
    }
    let (latency, fault) = emulator.with_state(|s| s.take_faults(operation.name(), account));
    let after_effect = fault.as_ref().is_some_and(|f| f.after_effect);
    let answer = fault.and_then(|f| f.kind.answer());
    // The call takes effect first and its answer is delayed, as with a slow or lost
    // AWS response: a client that gives up meanwhile still leaves the effect behind.
    let result = match answer {
        Some(err) if !after_effect => Err(err),
        answer => {
            let handled = execute(emulator, account, &region, operation, body);
            // An `afterEffect` fault keeps the call's effect (if it had one) and replaces
            // its answer, as a 5xx that hides a request AWS did carry out.
            match answer {
                Some(err) => Err(err),
                None => handled,
            }
        }
    };
    (result, latency)
}

/// Handles one Migration Hub Config call: signature and credentials as for ADS (an
/// ADS-only `AuthorizationErrorException` becomes `AccessDeniedException`), then
/// [`mhc::dispatch`]. Every error carries its text in `Message`.
fn dispatch_mhc(call: &Call<'_>, operation: Option<&'static str>, body: &[u8]) -> (Result<Value, AwsError>, Duration) {
    let (emulator, headers) = (call.emulator, call.headers);
    let checked = signing_region(headers).and_then(|_| {
        super::credentials::authorize_ads_call(emulator.identity(), headers, body).map_err(|(code, message)| {
            let code = if code == "AuthorizationErrorException" { "AccessDeniedException" } else { code };
            AwsError::new(code, message)
        })
    });
    let (result, latency) = match (checked, operation) {
        (Err(e), _) => (Err(e), Duration::ZERO),
        (Ok(()), None) => {
            let target = headers.get("x-amz-target").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let message = format!("Unknown operation {:?}", target.unwrap_or_default());
            (Err(AwsError::new("UnknownOperationException", message)), Duration::ZERO)
        }
        (Ok(()), Some(operation)) => mhc::dispatch(emulator, &call.account, operation, body),
    };
    (result.map_err(AwsError::pascal_case), latency)
}

/// Executes one call of `operation` on the emulated state of `account` in `region`:
/// the answer a fault-free ADS would give (errors included).
fn execute(
    emulator: &Emulator,
    account: &str,
    region: &str,
    operation: Operation,
    body: &[u8],
) -> Result<Value, AwsError> {
    let input = parse_body(body)?;
    emulator.with_state(|s| {
        check_home_region(s.home_region(account).map(|c| c.home_region.as_str()), region)?;
        let now = Instant::now();
        match operation {
            Operation::Start => s.start(account, region, now),
            Operation::Describe => s.describe(account, region, describe_input(&input)?, now),
            Operation::Stop => s.stop(account, region, stop_input(&input)?, now),
        }
    })
}

/// Extracts the region from the SigV4 credential scope
/// (`AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, ...`).
/// The signature itself is not verified.
fn signing_region(headers: &HeaderMap) -> Result<String, AwsError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AwsError::new("MissingAuthenticationTokenException", "Missing Authentication Token"));
    };
    value.to_str().ok().and_then(parse_credential_region).map(str::to_owned).ok_or_else(|| {
        AwsError::new(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential' parameter of the form \
                 'AKID/DATE/REGION/SERVICE/aws4_request'",
        )
    })
}

fn parse_credential_region(authorization: &str) -> Option<&str> {
    let params = authorization.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let credential = params.split(',').map(str::trim).find_map(|p| p.strip_prefix("Credential="))?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [akid, date, region, service, "aws4_request"]
            if [akid, date, region, service].iter().all(|p| !p.is_empty()) =>
        {
            Some(region)
        }
        _ => None,
    }
}

fn check_home_region(home: Option<&str>, region: &str) -> Result<(), AwsError> {
    match home {
        Some(home) if home == region => Ok(()),
        Some(home) => Err(AwsError::new(
            "HomeRegionNotSetException",
            format!(
                "The request was sent to {region}, but the Migration Hub home region is {home}. \
                 Send requests to the home region."
            ),
        )),
        None => Err(AwsError::new(
            "HomeRegionNotSetException",
            "The home region is not set. Set a home region to continue.",
        )),
    }
}

/// The request body as a JSON object (an empty body counts as `{}`).
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, AwsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(AwsError::new("SerializationException", "Expected a JSON object as the request body")),
        Err(e) => Err(AwsError::new("SerializationException", format!("Malformed JSON request body: {e}"))),
    }
}

/// One optional member of the request object (`null` counts as absent).
fn member<T: DeserializeOwned>(input: &Value, name: &str) -> Result<Option<T>, AwsError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| AwsError::new("SerializationException", format!("Cannot deserialize member '{name}': {e}"))),
    }
}

fn describe_input(input: &Value) -> Result<DescribeInput, AwsError> {
    Ok(DescribeInput {
        export_ids: member(input, "exportIds")?,
        max_results: member(input, "maxResults")?,
        next_token: member(input, "nextToken")?,
    })
}

fn stop_input(input: &Value) -> Result<StopInput, AwsError> {
    Ok(StopInput { export_id: member(input, "exportId")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_scope_region() {
        let ok = "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/discovery/aws4_request, \
                  SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(parse_credential_region(ok), Some("us-west-2"));
        for bad in [
            "",
            "Bearer x",
            "AWS4-HMAC-SHA256 SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/discovery",
            "AWS4-HMAC-SHA256 Credential=AKID/20240101//discovery/aws4_request",
        ] {
            assert_eq!(parse_credential_region(bad), None, "{bad:?}");
        }
    }
}
