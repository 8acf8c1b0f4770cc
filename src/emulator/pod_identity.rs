//! The EKS Pod Identity Agent's credentials endpoint (`GET /v1/credentials`).
//!
//! The SDK's container-credentials provider calls it when `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! names it (`http://127.0.0.1:<port>/v1/credentials`), sending the contents of the file named
//! by `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` as the `Authorization` header: a service-account
//! token with audience `pods.eks.amazonaws.com`. The token is verified like an IRSA token
//! (issuer's keys, audience, `exp`); its `system:serviceaccount:<ns>:<name>` subject selects
//! the Pod Identity association, whose role the credentials are issued for.
//!
//! Answers: 200 with the container-credentials JSON
//! `{"AccessKeyId","SecretAccessKey","Token","AccountId","Expiration"}` (`AccountId`: the
//! role's account; `Expiration` in ISO 8601 UTC); 400 `{"message"}` without an `Authorization` header; 401 for a token that
//! does not verify; 403 when the ServiceAccount has no association.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Emulator;
use super::identity::{ACCOUNT_ID, CredentialSource};
use super::oidc::POD_IDENTITY_AUDIENCE;
use super::sts::expiration;

/// Path of the endpoint, as the Pod Identity Agent serves it.
pub const PATH: &str = "/v1/credentials";

/// Counter key of calls to the endpoint.
pub const OPERATION: &str = "PodIdentityCredentials";

/// `GET /v1/credentials`.
pub(crate) async fn handle(State(emulator): State<Emulator>, headers: HeaderMap) -> Response {
    let result = credentials(&emulator, &headers);
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err((status, _)) => format!("http{}", status.as_u16()),
    };
    // Counted in the role's account; a refused call in the default account.
    let account = result.as_ref().ok().and_then(|b| b["AccountId"].as_str()).unwrap_or(ACCOUNT_ID).to_owned();
    emulator.with_state(|s| s.record(&account, OPERATION, &outcome));
    tracing::info!(operation = OPERATION, outcome, "Pod Identity credentials call");
    match result {
        Ok(body) => Json(body).into_response(),
        Err((status, message)) => (status, Json(json!({ "message": message }))).into_response(),
    }
}

fn credentials(emulator: &Emulator, headers: &HeaderMap) -> Result<serde_json::Value, (StatusCode, String)> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| (StatusCode::BAD_REQUEST, "Service account token cannot be empty".to_owned()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    emulator.identity().with(|s| {
        let verified = s
            .oidc
            .verify(token, POD_IDENTITY_AUDIENCE, now)
            .map_err(|e| (StatusCode::UNAUTHORIZED, format!("{}: {}", e.code, e.message)))?;
        let Some((ns, sa)) = verified.service_account() else {
            return Err((
                StatusCode::UNAUTHORIZED,
                format!("token subject {:?} is not a service account", verified.subject),
            ));
        };
        let Some(role_arn) = s.associations.get(&(ns.to_owned(), sa.to_owned())).cloned() else {
            return Err((
                StatusCode::FORBIDDEN,
                format!("AccessDeniedException: no Pod Identity association for service account {ns}/{sa}"),
            ));
        };
        let session = format!("eks-pod-identity-{ns}-{sa}");
        let issued = s.issue(&role_arn, &session, CredentialSource::PodIdentity, &verified.subject, None);
        Ok(json!({
            "AccessKeyId": issued.access_key_id,
            "SecretAccessKey": issued.secret_access_key,
            "Token": issued.session_token,
            "AccountId": issued.account_id,
            "Expiration": expiration(issued.expires_at),
        }))
    })
}
