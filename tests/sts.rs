//! The emulator's IAM side through the real SDK crates: STS `AssumeRoleWithWebIdentity`
//! and `AssumeRole` (`aws-sdk-sts`), strict credentials mode for ADS calls
//! (`aws-sdk-applicationdiscovery`), and the Pod Identity credentials endpoint (raw HTTP).
//!
//! Tokens are JWTs signed here with a fresh RSA key (`openssl genpkey`) whose JWKS is
//! registered with the emulator, as kube-apiserver's `/openid/v1/jwks` would be.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ads_export_operator::emulator::identity::{PodIdentityAssociation, Role, StaticKey};
use ads_export_operator::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use aws_sdk_applicationdiscovery as ads;
use aws_sdk_sts as sts;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sts::config::{BehaviorVersion, Credentials, Region};
use sts::error::{ProvideErrorMetadata, SdkError};
use sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError as WebIdentityError;

const REGION: &str = "us-west-2";
const ISSUER: &str = "https://issuer.test.invalid";
const ROLE: &str = "arn:aws:iam::123456789012:role/ads-operator";
const SUBJECT: &str = "system:serviceaccount:ads-system:ads-export-operator";

/// An RSA signing key and its JWKS entry (`kid` set).
struct Signer {
    key: EncodingKey,
    kid: String,
    jwk: Jwk,
}

impl Signer {
    fn new(kid: &str) -> Self {
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&out.stderr));
        let key = EncodingKey::from_rsa_pem(&out.stdout).expect("RSA PEM");
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        Signer { key, kid: kid.to_owned(), jwk }
    }

    fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }

    /// A service-account-like token; `exp_in` seconds from now (negative: expired).
    fn token(&self, iss: &str, sub: &str, aud: &str, exp_in: i64) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let claims =
            json!({"iss": iss, "sub": sub, "aud": [aud], "iat": now - 60, "nbf": now - 60, "exp": now + exp_in});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign token")
    }
}

struct Bed {
    running: RunningEmulator,
    signer: Signer,
    sts: sts::Client,
}

impl Bed {
    async fn new() -> Self {
        let running = Emulator::new(EmulatorConfig { home_region: Some(REGION.into()), ..EmulatorConfig::default() })
            .spawn("127.0.0.1:0")
            .await
            .expect("spawn emulator");
        let signer = Signer::new("key-1");
        let id = running.emulator.identity();
        id.set_oidc_provider(ISSUER.into(), signer.jwks());
        id.set_role(Role { role_arn: ROLE.into(), service_accounts: vec![SUBJECT.into()], ..Role::default() });
        let sts = sts_client(&running.endpoint_url(), None);
        Bed { running, signer, sts }
    }

    fn emu(&self) -> &Emulator {
        &self.running.emulator
    }

    async fn web_identity(&self, role: &str, token: &str) -> Result<Credentials, SdkError<WebIdentityError>> {
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(role)
            .role_session_name("test")
            .web_identity_token(token)
            .send()
            .await?;
        let c = out.credentials().expect("credentials");
        let expiry = SystemTime::try_from(*c.expiration()).expect("expiration");
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(expiry),
            "sts",
        ))
    }

    /// Credentials issued with a 1 s lifetime, once they have expired, without their
    /// expiry (the SDK would not sign with credentials it knows are expired).
    async fn expired_credentials(&self) -> Credentials {
        self.emu().identity().set_lifetime(Duration::from_secs(1));
        let short = self.good_credentials().await;
        wait_past(short.expiry().unwrap()).await;
        let token = short.session_token().map(str::to_owned);
        Credentials::new(short.access_key_id(), short.secret_access_key(), token, None, "t")
    }

    async fn good_credentials(&self) -> Credentials {
        let token = self.signer.token(ISSUER, SUBJECT, "sts.amazonaws.com", 600);
        self.web_identity(ROLE, &token).await.expect("AssumeRoleWithWebIdentity")
    }
}

fn sts_client(url: &str, creds: Option<Credentials>) -> sts::Client {
    let mut b = sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .retry_config(sts::config::retry::RetryConfig::disabled());
    if let Some(c) = creds {
        b = b.credentials_provider(c);
    }
    sts::Client::from_conf(b.build())
}

fn ads_client(url: &str, creds: Credentials) -> ads::Client {
    let conf = ads::Config::builder()
        .behavior_version(ads::config::BehaviorVersion::latest())
        .region(ads::config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(creds)
        .retry_config(ads::config::retry::RetryConfig::disabled())
        .build();
    ads::Client::from_conf(conf)
}

/// The error code and HTTP status of a failed SDK call.
fn code_and_status<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> (String, String) {
    match err {
        SdkError::ServiceError(se) => {
            (se.err().code().unwrap_or("").to_owned(), se.err().message().unwrap_or("").to_owned())
        }
        other => panic!("expected a service error, got {other:?}"),
    }
}

/// The static key `AKIDSTATIC` / `static-secret` (an IAM user's, no ARN given).
fn static_key() -> StaticKey {
    StaticKey { access_key_id: "AKIDSTATIC".into(), secret_access_key: "static-secret".into(), ..StaticKey::default() }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Waits (deadline 10 s) until the wall clock is past `t`.
async fn wait_past(t: SystemTime) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while SystemTime::now() <= t {
        assert!(std::time::Instant::now() < deadline, "clock did not pass {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn web_identity_token_is_exchanged_for_temporary_credentials() {
    let bed = Bed::new().await;
    bed.emu().identity().set_lifetime(Duration::from_secs(42));
    let token = bed.signer.token(ISSUER, SUBJECT, "sts.amazonaws.com", 600);
    let out = bed
        .sts
        .assume_role_with_web_identity()
        .role_arn(ROLE)
        .role_session_name("sess-1")
        .web_identity_token(&token)
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity");
    assert_eq!(out.subject_from_web_identity_token(), Some(SUBJECT));
    assert_eq!(out.audience(), Some("sts.amazonaws.com"));
    assert_eq!(out.provider(), Some(ISSUER));
    let user = out.assumed_role_user().expect("AssumedRoleUser");
    assert_eq!(user.arn(), "arn:aws:sts::123456789012:assumed-role/ads-operator/sess-1");
    assert!(user.assumed_role_id().starts_with("AROA") && user.assumed_role_id().ends_with(":sess-1"));
    let c = out.credentials().expect("Credentials");
    assert!(c.access_key_id().starts_with("ASIA"), "{}", c.access_key_id());
    assert_eq!(c.secret_access_key().len(), 40);
    assert!(!c.session_token().is_empty());
    let left = c.expiration().secs() - now_secs() as i64;
    assert!((40..=42).contains(&left), "expires in {left} s, lifetime is 42 s");

    assert_eq!(bed.emu().counters().get("AssumeRoleWithWebIdentity", "ok"), 1);
    let issued = bed.emu().identity().issued();
    assert_eq!(issued.len(), 1);
    assert_eq!((issued[0].access_key_id.as_str(), issued[0].subject.as_str()), (c.access_key_id(), SUBJECT));
    // The admin view never shows the secret or the session token.
    let admin: Value = reqwest::get(format!("{}/_emulator/credentials", bed.running.endpoint_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = admin.to_string();
    assert!(
        text.contains(c.access_key_id()) && !text.contains(c.secret_access_key()) && !text.contains(c.session_token())
    );
    assert_eq!(admin["lifetimeSeconds"], 42);
}

#[tokio::test]
async fn web_identity_errors_are_the_ones_sts_answers() {
    let bed = Bed::new().await;
    let other_key = Signer::new("key-1"); // same kid, different key: a forged token
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "wrong audience",
            bed.signer.token(ISSUER, SUBJECT, "pods.eks.amazonaws.com", 600),
            "InvalidIdentityToken",
            "Incorrect token audience",
        ),
        (
            "expired",
            bed.signer.token(ISSUER, SUBJECT, "sts.amazonaws.com", -30),
            "ExpiredTokenException",
            "Token expired",
        ),
        (
            "foreign subject",
            bed.signer.token(ISSUER, "system:serviceaccount:other:sa", "sts.amazonaws.com", 600),
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        ),
        (
            "unknown issuer",
            bed.signer.token("https://elsewhere.invalid", SUBJECT, "sts.amazonaws.com", 600),
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for https://elsewhere.invalid",
        ),
        (
            "forged signature",
            other_key.token(ISSUER, SUBJECT, "sts.amazonaws.com", 600),
            "InvalidIdentityToken",
            "signature",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "InvalidIdentityToken", "not a valid JWT"),
    ];
    for (what, token, code, message) in cases {
        let err = bed.web_identity(ROLE, &token).await.expect_err(what);
        let (got_code, got_message) = code_and_status(&err);
        assert_eq!(got_code, code, "{what}: {got_message}");
        assert!(got_message.contains(message), "{what}: {got_message:?} lacks {message:?}");
        let status = err.raw_response().map(|r| r.status().as_u16());
        assert_eq!(status, Some(if code == "AccessDenied" { 403 } else { 400 }), "{what}");
        // The modelled errors arrive as their SDK variants.
        let variant_ok = match err.as_service_error() {
            Some(WebIdentityError::InvalidIdentityTokenException(_)) => code == "InvalidIdentityToken",
            Some(WebIdentityError::ExpiredTokenException(_)) => code == "ExpiredTokenException",
            Some(e) => code == "AccessDenied" && e.meta().code() == Some("AccessDenied"),
            None => false,
        };
        assert!(variant_ok, "{what}: {err:?}");
    }
    // A role that does not exist is refused like a foreign subject.
    let token = bed.signer.token(ISSUER, SUBJECT, "sts.amazonaws.com", 600);
    let err = bed.web_identity("arn:aws:iam::123456789012:role/nope", &token).await.unwrap_err();
    assert_eq!(code_and_status(&err).0, "AccessDenied");
    // Missing parameters and a bad DurationSeconds are validation errors.
    let err =
        bed.sts.assume_role_with_web_identity().role_arn(ROLE).web_identity_token(&token).send().await.unwrap_err();
    let (code, message) = code_and_status(&err);
    assert_eq!(code, "ValidationError");
    assert!(message.contains("'roleSessionName'"), "{message}");
    let err = bed
        .sts
        .assume_role_with_web_identity()
        .role_arn(ROLE)
        .role_session_name("s")
        .web_identity_token(&token)
        .duration_seconds(10)
        .send()
        .await
        .unwrap_err();
    assert!(code_and_status(&err).1.contains("between 900 and 43200"));
    assert!(bed.emu().identity().issued().is_empty(), "no credentials issued for a refused call");
    assert_eq!(bed.emu().counters().get("AssumeRoleWithWebIdentity", "ok"), 0);
}

#[tokio::test]
async fn fixing_the_trust_policy_lets_the_subject_in() {
    let bed = Bed::new().await;
    let role = "arn:aws:iam::123456789012:role/fixed";
    let id = bed.emu().identity();
    id.set_role(Role {
        role_arn: role.into(),
        service_accounts: vec!["system:serviceaccount:x:y".into()],
        ..Role::default()
    });
    let token = bed.signer.token(ISSUER, SUBJECT, "sts.amazonaws.com", 600);
    assert_eq!(code_and_status(&bed.web_identity(role, &token).await.unwrap_err()).0, "AccessDenied");
    // The admin API replaces the trust policy.
    let url = format!("{}/_emulator/roles", bed.running.endpoint_url());
    let http = reqwest::Client::new();
    let bad = http.post(&url).json(&json!({"roleArn": role, "serviceAccounts": ["default:sa"]})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("`serviceAccounts`"));
    let fixed = http.post(&url).json(&json!({"roleArn": role, "serviceAccounts": [SUBJECT]})).send().await.unwrap();
    assert_eq!(fixed.status(), 200);
    bed.web_identity(role, &token).await.expect("trusted after the fix");
}

#[tokio::test]
async fn assume_role_checks_the_caller_and_its_signature() {
    let bed = Bed::new().await;
    let url = bed.running.endpoint_url();
    let target = "arn:aws:iam::123456789012:role/cross-account";
    let id = bed.emu().identity();
    id.set_role(Role { role_arn: target.into(), principals: vec![ROLE.into()], ..Role::default() });
    id.add_static_key(static_key());

    // Credentials issued for ROLE may assume the target role.
    let creds = bed.good_credentials().await;
    let out = sts_client(&url, Some(creds.clone())).assume_role().role_arn(target).role_session_name("xy").send().await;
    let out = out.expect("AssumeRole with issued credentials");
    assert!(out.credentials().unwrap().access_key_id().starts_with("ASIA"));
    assert_eq!(out.assumed_role_user().unwrap().arn(), "arn:aws:sts::123456789012:assumed-role/cross-account/xy");
    let issued = id.issued();
    assert_eq!(issued.last().unwrap().subject, ROLE, "the caller of AssumeRole is the role of its credentials");

    // Callers the trust policy does not name, unknown keys, wrong secrets, expired credentials.
    let static_key = Credentials::new("AKIDSTATIC", "static-secret", None, None, "t");
    let cases = [
        (
            "untrusted static key",
            static_key,
            "AccessDenied",
            "User: arn:aws:iam::123456789012:user/AKIDSTATIC is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/cross-account",
            403,
        ),
        (
            "unknown key",
            Credentials::new("AKIDNOPE", "x", None, None, "t"),
            "InvalidClientTokenId",
            "security token included in the request is invalid",
            403,
        ),
        (
            "wrong secret",
            Credentials::new("AKIDSTATIC", "not-the-secret", None, None, "t"),
            "SignatureDoesNotMatch",
            "does not match",
            403,
        ),
        (
            "wrong session token",
            Credentials::new(creds.access_key_id(), creds.secret_access_key(), Some("forged".into()), None, "t"),
            "InvalidClientTokenId",
            "invalid",
            403,
        ),
    ];
    for (what, c, code, message, status) in cases {
        let err =
            sts_client(&url, Some(c)).assume_role().role_arn(target).role_session_name("xy").send().await.unwrap_err();
        let (got, got_message) = code_and_status(&err);
        assert_eq!(got, code, "{what}: {got_message}");
        assert!(got_message.contains(message), "{what}: {got_message}");
        assert_eq!(err.raw_response().unwrap().status().as_u16(), status, "{what}");
    }

    let stale = bed.expired_credentials().await;
    let err =
        sts_client(&url, Some(stale)).assume_role().role_arn(target).role_session_name("xy").send().await.unwrap_err();
    let (code, message) = code_and_status(&err);
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("ExpiredToken", "The security token included in the request is expired")
    );
}

#[tokio::test]
async fn strict_mode_accepts_only_issued_or_configured_credentials() {
    let bed = Bed::new().await;
    let url = bed.running.endpoint_url();
    let id = bed.emu().identity();
    id.add_static_key(static_key());
    let creds = bed.good_credentials().await;
    let describe = |c: Credentials| {
        let client = ads_client(&url, c);
        async move { client.describe_continuous_exports().send().await }
    };

    // Strict mode off: anything signed goes, unknown keys count as unverified.
    describe(Credentials::new("AKIDTEST", "whatever", None, None, "t")).await.expect("lenient by default");
    assert_eq!(id.call_classes().get("unverified"), Some(&1));

    id.set_strict(true);
    describe(creds.clone()).await.expect("issued credentials");
    describe(creds.clone()).await.expect("issued credentials, again");
    describe(Credentials::new("AKIDSTATIC", "static-secret", None, None, "t")).await.expect("configured static key");
    let cases = [
        (
            "unknown key",
            Credentials::new("AKIDTEST", "whatever", None, None, "t"),
            "AuthorizationErrorException",
            "rejected:unknownKey",
        ),
        (
            "wrong session token",
            Credentials::new(creds.access_key_id(), creds.secret_access_key(), Some("forged".into()), None, "t"),
            "AuthorizationErrorException",
            "rejected:tokenMismatch",
        ),
        (
            "no session token",
            Credentials::new(creds.access_key_id(), creds.secret_access_key(), None, None, "t"),
            "AuthorizationErrorException",
            "rejected:tokenMismatch",
        ),
        (
            "wrong secret",
            Credentials::new(
                creds.access_key_id(),
                "0000000000000000000000000000000000000000",
                creds.session_token().map(str::to_owned),
                None,
                "t",
            ),
            "InvalidSignatureException",
            "rejected:badSignature",
        ),
        (
            "wrong static secret",
            Credentials::new("AKIDSTATIC", "nope", None, None, "t"),
            "InvalidSignatureException",
            "rejected:badSignature",
        ),
    ];
    for (what, c, code, class) in cases {
        let before = id.call_classes().get(class).copied().unwrap_or(0);
        let err = describe(c).await.expect_err(what);
        assert_eq!(err.code(), Some(code), "{what}: {err:?}");
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 400, "{what}");
        assert_eq!(id.call_classes().get(class), Some(&(before + 1)), "{what}: {:?}", id.call_classes());
    }
    // The modelled ADS variant, as the operator's classifier sees it.
    let err = describe(Credentials::new("AKIDTEST", "whatever", None, None, "t")).await.unwrap_err();
    assert!(matches!(
        err.as_service_error(),
        Some(ads::operation::describe_continuous_exports::DescribeContinuousExportsError::AuthorizationErrorException(
            _
        ))
    ));

    // Expired issued credentials: the SDK-visible ExpiredTokenException.
    let stale = bed.expired_credentials().await;
    let err = describe(stale).await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredTokenException"));
    assert_eq!(err.message(), Some("The security token included in the request is expired"));

    let classes = id.call_classes();
    assert_eq!((classes.get("temporary"), classes.get("static")), (Some(&2), Some(&1)), "{classes:?}");
    assert_eq!(classes.get("rejected:expired"), Some(&1));
    let used = id.issued().into_iter().find(|i| i.access_key_id == creds.access_key_id()).unwrap();
    assert_eq!(used.calls, 2);
    assert!(used.min_remaining_ms.is_some_and(|ms| ms > 0));
    // Refused calls show in the ADS counters with the error answered.
    assert_eq!(bed.emu().counters().get("DescribeContinuousExports", "ExpiredTokenException"), 1);
}

#[tokio::test]
async fn pod_identity_endpoint_answers_container_credentials() {
    let bed = Bed::new().await;
    let url = format!("{}/v1/credentials", bed.running.endpoint_url());
    bed.emu().identity().set_association(PodIdentityAssociation {
        namespace: "ads-system".into(),
        service_account: "ads-export-operator".into(),
        role_arn: ROLE.into(),
    });
    let http = reqwest::Client::new();
    let get = |auth: Option<String>| {
        let mut req = http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let token = bed.signer.token(ISSUER, SUBJECT, "pods.eks.amazonaws.com", 600);
    let (status, body) = get(Some(token)).await;
    assert_eq!(status, 200, "{body}");
    for field in ["AccessKeyId", "SecretAccessKey", "Token", "AccountId", "Expiration"] {
        assert!(body[field].as_str().is_some_and(|v| !v.is_empty()), "{field} in {body}");
    }
    assert_eq!(body["AccountId"], "123456789012");
    assert!(body["Expiration"].as_str().unwrap().ends_with('Z'));
    let issued = bed.emu().identity().issued();
    assert_eq!(issued[0].access_key_id, body["AccessKeyId"].as_str().unwrap());
    assert_eq!(issued[0].role_arn, ROLE);

    assert_eq!(get(None).await.0, 400);
    let (status, body) = get(Some(bed.signer.token(ISSUER, SUBJECT, "sts.amazonaws.com", 600))).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().contains("Incorrect token audience"), "{body}");
    let (status, body) = get(Some(bed.signer.token(ISSUER, SUBJECT, "pods.eks.amazonaws.com", -5))).await;
    assert_eq!((status, body["message"].as_str().unwrap().starts_with("ExpiredTokenException")), (401, true));
    let other = bed.signer.token(ISSUER, "system:serviceaccount:ads-system:other", "pods.eks.amazonaws.com", 600);
    let (status, body) = get(Some(other)).await;
    assert_eq!(status, 403);
    assert!(
        body["message"].as_str().unwrap().contains("no Pod Identity association for service account ads-system/other")
    );
    assert_eq!(bed.emu().counters().get("PodIdentityCredentials", "ok"), 1);
}

#[tokio::test]
async fn emulator_binary_takes_an_identity_config() {
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new("k");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_string(&signer.jwks()).unwrap()).unwrap();
    let cfg = dir.path().join("identity.json");
    let config = json!({
        "oidcProviders": [{"issuer": ISSUER, "jwksFile": jwks}],
        "roles": [{"roleArn": ROLE, "serviceAccounts": [SUBJECT]}],
        "podIdentityAssociations": [{"namespace": "ads-system", "serviceAccount": "ads-export-operator", "roleArn": ROLE}],
        "staticKeys": [{"accessKeyId": "AKIDSTATIC", "secretAccessKey": "s"}],
    });
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ads-emulator"))
        .args(["--home-region", REGION, "--strict-credentials", "--credentials-lifetime", "90s", "--identity-config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    let creds = {
        let token = signer.token(ISSUER, SUBJECT, "sts.amazonaws.com", 600);
        let out = sts_client(&url, None)
            .assume_role_with_web_identity()
            .role_arn(ROLE)
            .role_session_name("bin")
            .web_identity_token(token)
            .send()
            .await;
        let c = out.expect("AssumeRoleWithWebIdentity").credentials.unwrap();
        let left = c.expiration().secs() - now_secs() as i64;
        assert!((88..=90).contains(&left), "lifetime {left}");
        Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().to_owned()), None, "t")
    };
    ads_client(&url, creds).describe_continuous_exports().send().await.expect("strict mode accepts issued credentials");
    let err =
        ads_client(&url, Credentials::new("AKIDTEST", "x", None, None, "t")).describe_continuous_exports().send().await;
    assert_eq!(err.unwrap_err().code(), Some("AuthorizationErrorException"));
    child.kill().unwrap();
    child.wait().unwrap();

    // A bad file is refused at start-up, naming the field.
    std::fs::write(&cfg, json!({"roles": [{"roleArn": "nope"}]}).to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ads-emulator"))
        .arg("--identity-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity config") && err.contains("`roleArn`"), "{err}");
}

/// The SDK's clock, `offset` seconds from the machine's (negative: behind).
#[derive(Debug)]
struct SkewedClock(i64);

impl aws_smithy_async::time::TimeSource for SkewedClock {
    fn now(&self) -> SystemTime {
        let now = SystemTime::now();
        let by = Duration::from_secs(self.0.unsigned_abs());
        if self.0 < 0 { now - by } else { now + by }
    }
}

#[tokio::test]
async fn requests_signed_more_than_5_minutes_off_are_refused_as_aws_does() {
    let bed = Bed::new().await;
    let url = bed.running.endpoint_url();
    let id = bed.emu().identity();
    id.add_static_key(static_key());
    id.set_strict(true);
    let describe = |offset: i64| {
        let conf = ads::Config::builder()
            .behavior_version(ads::config::BehaviorVersion::latest())
            .region(ads::config::Region::new(REGION))
            .endpoint_url(&url)
            .credentials_provider(Credentials::new("AKIDSTATIC", "static-secret", None, None, "t"))
            .retry_config(ads::config::retry::RetryConfig::disabled())
            .time_source(SkewedClock(offset))
            .build();
        async move { ads::Client::from_conf(conf).describe_continuous_exports().send().await }
    };
    describe(-240).await.expect("signed 4 minutes ago");
    describe(240).await.expect("signed 4 minutes ahead");
    for (offset, message_start) in [(-360, "Signature expired: "), (360, "Signature not yet current: ")] {
        let err = describe(offset).await.expect_err("more than 5 minutes off");
        assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
        let message = err.message().unwrap_or_default();
        assert!(message.starts_with(message_start), "{message}");
        let sign = if offset < 0 { "-" } else { "+" };
        assert!(message.ends_with(&format!("Z {sign} 5 min.)")), "{message}");
    }
    assert_eq!(id.call_classes().get("rejected:signatureExpired"), Some(&2), "{:?}", id.call_classes());

    // STS answers SignatureDoesNotMatch with the same message.
    let sts = sts::Client::from_conf(
        sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&url)
            .credentials_provider(Credentials::new("AKIDSTATIC", "static-secret", None, None, "t"))
            .retry_config(sts::config::retry::RetryConfig::disabled())
            .time_source(SkewedClock(-600))
            .build(),
    );
    let err = sts.assume_role().role_arn(ROLE).role_session_name("x").send().await.expect_err("signed 10 min ago");
    let (code, message) = code_and_status(&err);
    assert_eq!(code, "SignatureDoesNotMatch", "{err:?}");
    assert!(message.starts_with("Signature expired: "), "{message}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
}
