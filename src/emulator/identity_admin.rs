//! Admin API of the IAM side (`/_emulator/credentials`, `/roles`, `/oidc-providers`,
//! `/pod-identity-associations`, `/static-keys`). Shapes are documented in
//! [`crate::emulator`].

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::json;

use super::Emulator;
use super::admin::{AdminResult, bad_request, ok, parse};
use super::identity::{PodIdentityAssociation, Role, StaticKey};

/// Routes relative to `/_emulator`.
pub(crate) fn routes() -> Router<Emulator> {
    Router::new()
        .route("/credentials", get(credentials))
        .route("/credentials/strict", post(strict))
        .route("/credentials/lifetime", post(lifetime))
        .route("/roles", get(roles).post(set_role))
        .route("/oidc-providers", get(oidc_providers).post(set_oidc_provider))
        .route("/pod-identity-associations", get(associations).post(set_association))
        .route("/static-keys", post(add_static_key))
}

async fn credentials(State(emu): State<Emulator>) -> Response {
    let id = emu.identity();
    let (strict, lifetime) = id.with(|s| (s.strict, s.lifetime.unwrap_or(super::identity::DEFAULT_LIFETIME)));
    Json(json!({
        "strict": strict,
        "lifetimeSeconds": lifetime.as_secs(),
        "issued": id.issued(),
        "calls": id.call_classes(),
    }))
    .into_response()
}

async fn strict(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        enabled: bool,
    }
    emu.identity().set_strict(parse::<Input>(&body)?.enabled);
    Ok(ok())
}

async fn lifetime(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        seconds: u64,
    }
    let seconds = parse::<Input>(&body)?.seconds;
    if seconds == 0 {
        return Err(bad_request("field `seconds`: must be at least 1"));
    }
    emu.identity().set_lifetime(Duration::from_secs(seconds));
    Ok(ok())
}

async fn roles(State(emu): State<Emulator>) -> Response {
    Json(emu.identity().with(|s| s.roles.values().cloned().collect::<Vec<_>>())).into_response()
}

async fn set_role(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    let role: Role = parse(&body)?;
    role.validate().map_err(bad_request)?;
    emu.identity().set_role(role);
    Ok(ok())
}

async fn oidc_providers(State(emu): State<Emulator>) -> Response {
    Json(emu.identity().with(|s| s.oidc.issuers())).into_response()
}

async fn set_oidc_provider(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        issuer: String,
        jwks: JwkSet,
    }
    let input: Input = parse(&body)?;
    if !input.issuer.starts_with("https://") {
        return Err(bad_request(format!("field `issuer`: {:?} is not an https:// URL", input.issuer)));
    }
    emu.identity().set_oidc_provider(input.issuer, input.jwks);
    Ok(ok())
}

async fn associations(State(emu): State<Emulator>) -> Response {
    let all: Vec<_> = emu.identity().with(|s| {
        s.associations
            .iter()
            .map(|((ns, sa), role)| PodIdentityAssociation {
                namespace: ns.clone(),
                service_account: sa.clone(),
                role_arn: role.clone(),
            })
            .collect()
    });
    Json(all).into_response()
}

async fn set_association(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    let a: PodIdentityAssociation = parse(&body)?;
    if super::identity::role_name(&a.role_arn).is_none() {
        return Err(bad_request(format!("field `roleArn`: {:?} is not a role ARN", a.role_arn)));
    }
    emu.identity().set_association(a);
    Ok(ok())
}

async fn add_static_key(State(emu): State<Emulator>, body: Bytes) -> AdminResult {
    let key: StaticKey = parse(&body)?;
    key.validate().map_err(bad_request)?;
    emu.identity().add_static_key(key);
    Ok(ok())
}
