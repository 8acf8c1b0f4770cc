//! AWS STS in the query protocol (`Version=2011-06-15`): `AssumeRoleWithWebIdentity`,
//! `AssumeRole` and `GetCallerIdentity`.
//!
//! Requests are `POST /` with a form-encoded body (`Action=...&Version=2011-06-15&...`,
//! content type `application/x-www-form-urlencoded`); answers are `text/xml`: a
//! `<{Action}Response>` with `<{Action}Result>` and `<ResponseMetadata><RequestId>`, or an
//! `<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..</Message></Error>
//! <RequestId>..</RequestId></ErrorResponse>`, the shapes `aws-sdk-sts`'s deserializers
//! read (`AssumeRoleWithWebIdentityResult`: `Credentials`, `SubjectFromWebIdentityToken`,
//! `AssumedRoleUser`, `Provider`, `Audience`; errors by `Code`).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Emulator;
use super::credentials::{self, AuthFailure, Caller, access_key_of};
use super::identity::{CredentialSource, Issued, Role};
use super::oidc::STS_AUDIENCE;
use super::sts_params::{self, Param, Violations};

/// The STS API version every request names.
pub const VERSION: &str = "2011-06-15";
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Whether a `POST /` is an STS query call rather than an ADS awsJson1.1 call.
pub(crate) fn is_query_request(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"))
}

/// An STS error answer.
#[derive(Debug)]
struct StsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl StsError {
    fn sender(code: &'static str, message: impl Into<String>) -> Self {
        StsError { status: StatusCode::BAD_REQUEST, code, message: message.into() }
    }

    fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        StsError { status: StatusCode::FORBIDDEN, code, message: message.into() }
    }
}

/// `POST /` with a form body: one STS call.
pub(crate) async fn handle(emulator: Emulator, headers: HeaderMap, body: Bytes) -> Response {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let action = param("Action").unwrap_or("").to_owned();
    let result = match (action.as_str(), param("Version")) {
        ("", _) => Err(StsError::sender("MissingAction", "Missing Action")),
        (_, version) if version != Some(VERSION) => Err(StsError::sender(
            "InvalidAction",
            format!("Could not find operation {action} for version {}", version.unwrap_or("NO_VERSION_SPECIFIED")),
        )),
        ("AssumeRoleWithWebIdentity", _) => assume_role_with_web_identity(&emulator, &param),
        ("AssumeRole", _) => match credentials::authenticate(emulator.identity(), &headers, "/", &body) {
            Ok(caller) => assume_role(&emulator, &param, &caller),
            Err(failure) => Err(auth_error(failure)),
        },
        ("GetCallerIdentity", _) => get_caller_identity(&emulator, &headers, &body),
        _ => Err(StsError::sender("InvalidAction", format!("Could not find operation {action} for version {VERSION}"))),
    };
    let counted = if action.is_empty() { super::UNKNOWN_OPERATION } else { action.as_str() };
    let outcome = result.as_ref().map_or_else(|e| e.code, |_| "ok");
    let account = credentials::request_account(emulator.identity(), &headers);
    emulator.with_state(|s| s.record(&account, counted, outcome));
    tracing::info!(operation = counted, outcome, role = param("RoleArn"), "STS call");
    let request_id = uuid::Uuid::new_v4().to_string();
    let (status, xml) = match result {
        Ok(inner) => (
            StatusCode::OK,
            format!(
                "<{action}Response xmlns=\"{XMLNS}\">\n  <{action}Result>{inner}</{action}Result>\n  \
                 <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\n</{action}Response>\n"
            ),
        ),
        Err(e) => (
            e.status,
            format!(
                "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{}</Code>\n    \
                 <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
                e.code,
                escape(&e.message)
            ),
        ),
    };
    let mut response = (status, xml).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    response
}

fn validation_error(message: String) -> StsError {
    StsError::sender("ValidationError", message)
}

fn required<'a>(param: &Param<'a>, name: &str) -> Result<&'a str, StsError> {
    sts_params::required(param, name).map_err(validation_error)
}

fn assume_role_with_web_identity(emulator: &Emulator, param: &Param<'_>) -> Result<String, StsError> {
    let role_arn = required(param, "RoleArn")?;
    let session = required(param, "RoleSessionName")?;
    let token = required(param, "WebIdentityToken")?;
    let mut violations = Violations::default();
    violations.session_name(session);
    let max = violations.duration_seconds(param("DurationSeconds"));
    violations.into_result().map_err(validation_error)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    emulator.identity().with(|s| {
        let verified = s.oidc.verify(token, STS_AUDIENCE, now).map_err(|e| StsError::sender(e.code, e.message))?;
        let trusted = s.roles.get(role_arn).is_some_and(|r| r.service_accounts.contains(&verified.subject));
        if !trusted {
            return Err(StsError::forbidden("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"));
        }
        let issued = s.issue(role_arn, session, CredentialSource::AssumeRoleWithWebIdentity, &verified.subject, max);
        Ok(format!(
            "\n    <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\n    <Audience>{STS_AUDIENCE}</Audience>\
             {}\n    <Provider>{}</Provider>\n  ",
            escape(&verified.subject),
            result_body(&issued, session),
            escape(&verified.issuer),
        ))
    })
}

/// `AssumeRole` by `caller`: the role must trust the caller (its ARN or its account's
/// root among the principals) and, when the role has an external ID, the call must carry
/// it; otherwise `AccessDenied` (HTTP 403) as STS words it.
fn assume_role(emulator: &Emulator, param: &Param<'_>, caller: &Caller) -> Result<String, StsError> {
    let role_arn = required(param, "RoleArn")?;
    let session = required(param, "RoleSessionName")?;
    let external_id = param("ExternalId");
    let mut violations = Violations::default();
    violations.session_name(session);
    violations.external_id(external_id);
    let max = violations.duration_seconds(param("DurationSeconds"));
    violations.into_result().map_err(validation_error)?;
    emulator.identity().with(|s| {
        let allowed = s.roles.get(role_arn).is_some_and(|r| may_assume(r, caller, external_id));
        if !allowed {
            return Err(StsError::forbidden(
                "AccessDenied",
                format!("User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}", caller.arn()),
            ));
        }
        let issued = s.issue(role_arn, session, CredentialSource::AssumeRole, caller.arn(), max);
        Ok(format!("{}\n  ", result_body(&issued, session)))
    })
}

/// Whether `role`'s trust policy lets `caller` assume it with `external_id`: a role with
/// an external ID needs exactly that one; a role without ignores any sent (as AWS does).
fn may_assume(role: &Role, caller: &Caller, external_id: Option<&str>) -> bool {
    role.trusts(caller.arn(), caller.account())
        && role.external_id.as_deref().is_none_or(|wanted| external_id == Some(wanted))
}

/// `GetCallerIdentity`: `<UserId>`, `<Account>` (the caller's account,
/// [`credentials::request_account`]) and `<Arn>` of the SigV4-signed caller. In strict
/// credentials mode the caller must be authenticated as for `AssumeRole`; otherwise an
/// unknown key is an IAM user of the default account named by its access key.
fn get_caller_identity(emulator: &Emulator, headers: &HeaderMap, body: &[u8]) -> Result<String, StsError> {
    let strict = emulator.identity().with(|s| s.strict);
    let account = credentials::request_account(emulator.identity(), headers);
    let arn = match credentials::authenticate(emulator.identity(), headers, "/", body) {
        Ok(caller) => caller.arn().to_owned(),
        Err(failure) if strict => return Err(auth_error(failure)),
        Err(_) => format!("arn:aws:iam::{account}:user/{}", access_key_of(headers).unwrap_or("unknown")),
    };
    let user_id = access_key_of(headers).unwrap_or("AIDAEMULATOR");
    Ok(format!(
        "\n    <UserId>{}</UserId>\n    <Account>{account}</Account>\n    <Arn>{}</Arn>\n  ",
        escape(user_id),
        escape(&arn)
    ))
}

/// `<AssumedRoleUser>` and `<Credentials>` of a result.
fn result_body(issued: &Issued, session: &str) -> String {
    format!(
        "\n    <AssumedRoleUser>\n      <Arn>{}</Arn>\n      <AssumedRoleId>{}:{}</AssumedRoleId>\n    </AssumedRoleUser>\
         \n    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\
         \n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>",
        escape(&issued.assumed_role_arn),
        role_id(&issued.role_arn),
        escape(session),
        issued.access_key_id,
        issued.secret_access_key,
        issued.session_token,
        expiration(issued.expires_at),
    )
}

/// An ISO 8601 UTC time as STS and the container-credentials JSON write it
/// (`2026-12-01T09:45:00Z`).
pub(crate) fn expiration(t: SystemTime) -> String {
    DateTime::from(t).fmt(Format::DateTime).unwrap_or_default()
}

/// A stable `AROA...` role ID for a role ARN.
fn role_id(role_arn: &str) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    role_arn.hash(&mut h);
    format!("AROA{:016X}", h.finish())
}

/// The STS error for a request whose signature was refused.
fn auth_error(failure: AuthFailure) -> StsError {
    match failure {
        AuthFailure::Unsigned => {
            StsError::sender("MissingAuthenticationToken", "Request is missing Authentication Token")
        }
        AuthFailure::UnknownKey | AuthFailure::TokenMismatch => {
            StsError::forbidden("InvalidClientTokenId", "The security token included in the request is invalid.")
        }
        AuthFailure::Expired => {
            StsError::sender("ExpiredToken", "The security token included in the request is expired")
        }
        AuthFailure::BadSignature => StsError::forbidden(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ),
        AuthFailure::SignatureExpired { .. } => {
            StsError::forbidden("SignatureDoesNotMatch", failure.skew_message().unwrap_or_default())
        }
    }
}

/// Escapes text for XML element content.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn xml_escaping_and_names() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(expiration(UNIX_EPOCH + Duration::from_secs(1_796_118_300)), "2026-12-01T09:45:00Z");
        assert!(role_id("arn:aws:iam::123456789012:role/a").starts_with("AROA"));
    }
}
