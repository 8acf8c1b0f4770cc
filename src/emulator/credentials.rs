//! Who signed a request: the SigV4 `Authorization` header checked against the access
//! keys the emulator knows (issued temporary credentials and configured static keys),
//! the `X-Amz-Security-Token` of temporary credentials, and the signature itself,
//! recomputed with the SDK's own `aws-sigv4` crate from the request as received.
//!
//! Used by strict credentials mode for ADS calls and by STS `AssumeRole`.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::http::{HeaderMap, header};

use super::identity::{ACCOUNT_ID, Identity, IdentityState};

/// The caller a request was signed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Issued temporary credentials: their access key ID, role ARN and the role's account.
    Temporary { access_key_id: String, role_arn: String, account_id: String },
    /// A configured static key: its caller ARN and account.
    Static { arn: String, account_id: String },
}

impl Caller {
    /// The caller's ARN as trust policies name it: the role ARN of issued credentials,
    /// a static key's `arn`.
    pub fn arn(&self) -> &str {
        match self {
            Caller::Temporary { role_arn, .. } => role_arn,
            Caller::Static { arn, .. } => arn,
        }
    }

    /// The caller's account.
    pub fn account(&self) -> &str {
        match self {
            Caller::Temporary { account_id, .. } | Caller::Static { account_id, .. } => account_id,
        }
    }
}

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization` header, or not a SigV4 one.
    Unsigned,
    /// The access key is neither issued nor configured.
    UnknownKey,
    /// Issued credentials past their expiry.
    Expired,
    /// Issued credentials without their session token, or with another one.
    TokenMismatch,
    /// The signature does not match the request.
    BadSignature,
    /// A valid signature whose `X-Amz-Date` (`signed_at`) is more than
    /// [`MAX_CLOCK_SKEW`] before or after the emulator's clock (`now`).
    SignatureExpired { signed_at: SystemTime, now: SystemTime },
}

/// How far a request's `X-Amz-Date` may be from the receiver's clock: AWS refuses
/// requests signed more than 5 minutes before or after its time ("Signature expired",
/// "Signature not yet current").
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

impl AuthFailure {
    /// The class counted for a rejected call (`rejected:<this>`).
    pub fn class(self) -> &'static str {
        match self {
            AuthFailure::Unsigned => "unsigned",
            AuthFailure::UnknownKey => "unknownKey",
            AuthFailure::Expired => "expired",
            AuthFailure::TokenMismatch => "tokenMismatch",
            AuthFailure::BadSignature => "badSignature",
            AuthFailure::SignatureExpired { .. } => "signatureExpired",
        }
    }

    /// AWS's message for a request signed too long ago or too far ahead, e.g.
    /// `Signature expired: 20261201T084500Z is now earlier than 20261201T085000Z
    /// (20261201T085500Z - 5 min.)`; `None` for the other failures.
    pub fn skew_message(self) -> Option<String> {
        let AuthFailure::SignatureExpired { signed_at, now } = self else { return None };
        let (signed, at) = (amz_date(signed_at), amz_date(now));
        Some(if signed_at < now {
            format!(
                "Signature expired: {signed} is now earlier than {} ({at} - 5 min.)",
                amz_date(now - MAX_CLOCK_SKEW)
            )
        } else {
            format!(
                "Signature not yet current: {signed} is still later than {} ({at} + 5 min.)",
                amz_date(now + MAX_CLOCK_SKEW)
            )
        })
    }
}

/// The parts of `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let params = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let field = |name: &str| params.split(',').map(str::trim).find_map(|p| p.strip_prefix(name));
    let scope: Vec<&str> = field("Credential=")?.split('/').collect();
    let [access_key_id, _date, region, service, "aws4_request"] = scope.as_slice() else { return None };
    Some(Authorization {
        access_key_id,
        region,
        service,
        signed_headers: field("SignedHeaders=")?.split(';').filter(|h| !h.is_empty()).collect(),
        signature: field("Signature=")?,
    })
}

/// The access key ID of a SigV4 `Authorization` header's credential scope
/// (`Credential=<access key ID>/...`), however malformed the rest.
pub(crate) fn access_key_of(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split([' ', ',']).find_map(|p| p.strip_prefix("Credential="))?;
    credential.split('/').next().filter(|k| !k.is_empty())
}

/// The account a request is in, from the access key it is signed with, in strict and
/// non-strict mode alike: issued credentials are in their role's account, a static key
/// in its own; an unsigned request or an unknown key is in the default account
/// [`ACCOUNT_ID`] (strict mode refuses those separately). ADS, Migration Hub Config and
/// STS all answer from this account. The signature is not checked here.
pub(crate) fn request_account(identity: &Identity, headers: &HeaderMap) -> String {
    let Some(akid) = access_key_of(headers) else { return ACCOUNT_ID.to_owned() };
    identity.with(|s| s.account_of_key(akid).unwrap_or(ACCOUNT_ID).to_owned())
}

/// Authenticates a request to `path` (`/` for ADS and STS) with `body`: returns the
/// caller, or why it was refused. Records an accepted call on issued credentials.
pub(crate) fn authenticate(
    identity: &Identity,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<Caller, AuthFailure> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(AuthFailure::Unsigned)?;
    let auth = parse_authorization(value).ok_or(AuthFailure::Unsigned)?;
    let now = SystemTime::now();
    identity.with(|s| {
        let (caller, secret, token) = lookup(s, &auth, headers, now)?;
        if !signature_matches(&auth, headers, path, body, &secret, token.as_deref()) {
            return Err(AuthFailure::BadSignature);
        }
        check_clock_skew(headers, now)?;
        if let Caller::Temporary { access_key_id, .. } = &caller {
            s.record_use(access_key_id, now);
        }
        Ok(caller)
    })
}

type KeyMaterial = (Caller, String, Option<String>);

fn lookup(
    s: &IdentityState,
    auth: &Authorization<'_>,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<KeyMaterial, AuthFailure> {
    if let Some(issued) = s.issued.get(auth.access_key_id) {
        if now >= issued.expires_at {
            return Err(AuthFailure::Expired);
        }
        let sent = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
        if sent != Some(issued.session_token.as_str()) {
            return Err(AuthFailure::TokenMismatch);
        }
        let caller = Caller::Temporary {
            access_key_id: issued.access_key_id.clone(),
            role_arn: issued.role_arn.clone(),
            account_id: issued.account_id.clone(),
        };
        return Ok((caller, issued.secret_access_key.clone(), Some(issued.session_token.clone())));
    }
    match s.static_keys.get(auth.access_key_id) {
        Some(key) => {
            let caller = Caller::Static { arn: key.caller_arn(), account_id: key.account().to_owned() };
            Ok((caller, key.secret_access_key.clone(), None))
        }
        None => Err(AuthFailure::UnknownKey),
    }
}

/// Recomputes the SigV4 signature over the signed headers as received and compares it.
fn signature_matches(
    auth: &Authorization<'_>,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    secret: &str,
    token: Option<&str>,
) -> bool {
    let Some(time) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).and_then(parse_amz_date) else {
        return false;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        // A signed header that did not arrive (or is not text) cannot verify.
        let Some(value) = headers.get(*name).and_then(|v| v.to_str().ok()) else { return false };
        signed.push((name, value));
    }
    let mut settings = SigningSettings::default();
    // Sign exactly what the client listed, nothing more and nothing less.
    settings.excluded_headers = None;
    if auth.signed_headers.contains(&"x-amz-content-sha256") {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let credentials = aws_credential_types::Credentials::new(
        auth.access_key_id,
        secret,
        token.map(str::to_owned),
        None,
        "ads-emulator",
    );
    let identity = credentials.into();
    let Ok(params) = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(settings)
        .build()
    else {
        return false;
    };
    let uri = format!("http://{host}{path}");
    let Ok(request) = SignableRequest::new("POST", uri, signed.into_iter(), SignableBody::Bytes(body)) else {
        return false;
    };
    match sign(request, &params.into()) {
        Ok(output) => output.signature() == auth.signature,
        Err(_) => false,
    }
}

/// Refuses a request whose `X-Amz-Date` is more than [`MAX_CLOCK_SKEW`] from `now` (the
/// signature already matched, so the header is there and parses).
fn check_clock_skew(headers: &HeaderMap, now: SystemTime) -> Result<(), AuthFailure> {
    let Some(signed_at) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).and_then(parse_amz_date) else {
        return Err(AuthFailure::BadSignature);
    };
    let skew = now.duration_since(signed_at).unwrap_or_else(|e| e.duration());
    if skew > MAX_CLOCK_SKEW { Err(AuthFailure::SignatureExpired { signed_at, now }) } else { Ok(()) }
}

/// Formats `t` as SigV4's `X-Amz-Date` (`20261201T084500Z`, UTC, whole seconds).
fn amz_date(t: SystemTime) -> String {
    match k8s_openapi::jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y%m%dT%H%M%SZ").to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// Parses SigV4's `X-Amz-Date` (`20261201T084500Z`, UTC).
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let dt = k8s_openapi::jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", s).ok()?;
    let ts = dt.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(SystemTime::from(ts))
}

/// Strict credentials mode for one ADS call: `Ok` to go on, or the class counted and
/// the ADS error (`code`, `message`) to answer.
///
/// Classes are those of [`super::identity::CallClasses`]. With strict mode off every
/// call goes on; one that would have been refused counts as `unverified`.
pub(crate) fn authorize_ads_call(
    identity: &Identity,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (&'static str, String)> {
    let result = authenticate(identity, headers, "/", body);
    let strict = identity.with(|s| s.strict);
    let class = match &result {
        Ok(Caller::Temporary { .. }) => "temporary".to_owned(),
        Ok(Caller::Static { .. }) => "static".to_owned(),
        Err(_) if !strict => "unverified".to_owned(),
        Err(f) => format!("rejected:{}", f.class()),
    };
    identity.with(|s| s.count(&class));
    match result {
        Err(failure) if strict => Err(ads_error(failure)),
        _ => Ok(()),
    }
}

/// The error ADS (an awsJson1.1 service) answers for `failure`.
fn ads_error(failure: AuthFailure) -> (&'static str, String) {
    match failure {
        AuthFailure::Expired => {
            ("ExpiredTokenException", "The security token included in the request is expired".into())
        }
        AuthFailure::BadSignature => (
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
                .into(),
        ),
        AuthFailure::SignatureExpired { .. } => {
            ("InvalidSignatureException", failure.skew_message().unwrap_or_default())
        }
        AuthFailure::Unsigned | AuthFailure::UnknownKey | AuthFailure::TokenMismatch => (
            "AuthorizationErrorException",
            "The security token included in the request is invalid: the access key was not issued by this \
             emulator's STS or Pod Identity endpoint, or the session token does not belong to it (strict \
             credentials mode)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=ASIAX/20261201/us-west-2/discovery/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature=abc123",
        )
        .unwrap();
        assert_eq!(a.access_key_id, "ASIAX");
        assert_eq!((a.region, a.service), ("us-west-2", "discovery"));
        assert_eq!(a.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert_eq!(a.signature, "abc123");
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=A/B/C/D/aws4_request").is_none());
        assert!(parse_authorization("Bearer x").is_none());
    }

    #[test]
    fn amz_dates() {
        let t = parse_amz_date("20261201T084500Z").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1_796_114_700);
        assert!(parse_amz_date("2026-12-01").is_none());
        assert_eq!(amz_date(t), "20261201T084500Z");
    }

    #[test]
    fn clock_skew_beyond_five_minutes_is_refused_with_aws_messages() {
        let now = parse_amz_date("20261201T090000Z").unwrap();
        let headers = |date: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-amz-date", date.parse().unwrap());
            h
        };
        assert_eq!(check_clock_skew(&headers("20261201T085500Z"), now), Ok(()), "exactly 5 min old");
        assert_eq!(check_clock_skew(&headers("20261201T090500Z"), now), Ok(()), "exactly 5 min ahead");
        let old = check_clock_skew(&headers("20261201T085459Z"), now).unwrap_err();
        assert_eq!(old.class(), "signatureExpired");
        assert_eq!(
            old.skew_message().unwrap(),
            "Signature expired: 20261201T085459Z is now earlier than 20261201T085500Z (20261201T090000Z - 5 min.)"
        );
        let ahead = check_clock_skew(&headers("20261201T090501Z"), now).unwrap_err();
        assert_eq!(
            ahead.skew_message().unwrap(),
            "Signature not yet current: 20261201T090501Z is still later than 20261201T090500Z (20261201T090000Z + 5 min.)"
        );
        assert_eq!(ads_error(old).0, "InvalidSignatureException");
        assert!(AuthFailure::BadSignature.skew_message().is_none());
    }
}
