//! An `ExportAccount`'s credentials: STS `AssumeRole` of its `spec.roleArn` (with
//! `externalId` and the session name), made with the operator's own identity (whatever
//! `aws-config`'s default chain gave it: static keys, IRSA, Pod Identity).
//!
//! The provider is `aws-config`'s [`AssumeRoleProvider`]; the identity cache of the
//! operator's [`SdkConfig`] keeps its temporary credentials and loads new ones before
//! they expire (as for the operator's own, see [`super::credentials`]). STS is reached
//! at its own endpoint (`AWS_ENDPOINT_URL_STS`, else the SDK's): `--aws-endpoint-url`
//! moves ADS, not STS, so it is removed from the configuration the STS client is built from.

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::SharedCredentialsProvider;

use super::classify::{error_chain, transport_failure};
use super::credentials::{CredentialSource, named};
use crate::api::ExportAccountSpec;

/// The region STS is called in when the operator has none (STS's global endpoint answers
/// in `us-east-1`).
const STS_FALLBACK_REGION: &str = "us-east-1";

/// The standard variable of STS's endpoint (the SDK's service-specific endpoint).
const STS_ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL_STS";

/// The configuration STS clients are built from: `base` with STS's endpoint instead of
/// its override (`--aws-endpoint-url` is ADS's), in `base`'s region or
/// [`STS_FALLBACK_REGION`]. The endpoint is `AWS_ENDPOINT_URL_STS` when set, else the
/// SDK's own: the SDK reads that variable only when no endpoint was set in code, and
/// `--aws-endpoint-url` is one, so it is read here.
fn sts_base(base: &SdkConfig) -> SdkConfig {
    let region = base.region().cloned().unwrap_or_else(|| Region::from_static(STS_FALLBACK_REGION));
    let endpoint = std::env::var(STS_ENDPOINT_VARIABLE).ok().filter(|v| !v.trim().is_empty());
    let mut builder = base.to_builder();
    builder.set_endpoint_url(endpoint);
    builder.region(region).build()
}

/// A credentials provider for the account `name` (`spec`): `AssumeRole` of `spec.roleArn`
/// with `spec.externalId` and [`ExportAccountSpec::session_name_or_default`], signed
/// with `base`'s credentials. Its errors begin `could not assume role <ARN> of
/// ExportAccount <name>` and keep STS's code and message (e.g. `AccessDenied: ...`).
pub async fn role_provider(base: &SdkConfig, name: &str, spec: &ExportAccountSpec) -> SharedCredentialsProvider {
    let mut builder =
        AssumeRoleProvider::builder(spec.role_arn.clone()).session_name(spec.session_name_or_default().to_owned());
    if let Some(id) = &spec.external_id {
        builder = builder.external_id(id.clone());
    }
    let provider = builder.configure(&sts_base(base)).build().await;
    let source = CredentialSource::AccountRole { role_arn: spec.role_arn.clone(), account: name.to_owned() };
    named(SharedCredentialsProvider::new(provider), source)
}

/// `base` with the account's credentials ([`role_provider`]): ADS clients built from it
/// keep `base`'s endpoint, timeouts and retries, and cache the role's credentials.
pub async fn account_config(base: &SdkConfig, name: &str, spec: &ExportAccountSpec) -> SdkConfig {
    base.to_builder().credentials_provider(role_provider(base, name, spec).await).build()
}

/// Who the assumed role is (STS `GetCallerIdentity` with its credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The 12-digit AWS account ID (`Account`).
    pub account: String,
    /// The assumed role session's ARN (`Arn`), e.g.
    /// `arn:aws:sts::111111111111:assumed-role/ads-export/ads-export-operator`.
    pub arn: String,
}

/// Assumes the account's role afresh (a new provider, so the role's trust policy is
/// checked now, not from a cache) and asks STS `GetCallerIdentity` with the temporary
/// credentials.
///
/// # Errors
/// One line: `could not assume role <ARN> of ExportAccount <name> ...: <STS code>: <STS
/// message>`, or GetCallerIdentity's own failure, or, when STS could not be reached
/// (DNS, connection, timeout), [`STS_UNREACHABLE`] and the transport error. Never a key
/// or token, never a `Debug` dump.
pub async fn verify(base: &SdkConfig, name: &str, spec: &ExportAccountSpec) -> Result<CallerIdentity, String> {
    let conf = sts_base(base).to_builder().credentials_provider(role_provider(base, name, spec).await).build();
    let sts = aws_sdk_sts::Client::new(&conf);
    let out = sts.get_caller_identity().send().await.map_err(|e| verify_error(&e, name, spec))?;
    Ok(CallerIdentity {
        account: out.account().unwrap_or_default().to_owned(),
        arn: out.arn().unwrap_or_default().to_owned(),
    })
}

/// How a verification error begins when STS could not be reached (no answer at all,
/// so nothing about the role or its trust policy is known).
pub const STS_UNREACHABLE: &str = "cannot reach STS";

/// The one-line error of a failed verification: the transport error after
/// [`STS_UNREACHABLE`] when STS was not reached, else the error chain (STS's code and
/// message), each by `Display` ([`error_chain`]).
fn verify_error(err: &(dyn std::error::Error + 'static), name: &str, spec: &ExportAccountSpec) -> String {
    match transport_failure(err) {
        Some(cause) => format!(
            "{STS_UNREACHABLE} to assume role {} of ExportAccount {name} (check AWS_ENDPOINT_URL_STS and the network): {}",
            spec.role_arn,
            error_chain(cause)
        ),
        None => error_chain(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_smithy_runtime_api::client::result::ConnectorError;

    fn spec() -> ExportAccountSpec {
        ExportAccountSpec { role_arn: "arn:aws:iam::111111111111:role/ads".into(), ..Default::default() }
    }

    #[test]
    fn an_unreachable_sts_is_named_without_a_debug_dump_or_a_trust_hint() {
        let dns = std::io::Error::other("dns error: failed to lookup address information");
        let err = CredentialsError::provider_error(ConnectorError::io(Box::new(dns)));
        let message = verify_error(&err, "team-a", &spec());
        assert!(message.starts_with(STS_UNREACHABLE), "{message}");
        assert!(message.contains("arn:aws:iam::111111111111:role/ads") && message.contains("team-a"), "{message}");
        assert!(message.contains("dns error: failed to lookup address information"), "{message}");
        assert!(!message.contains('{') && !message.contains("trust policy"), "{message}");
        assert_eq!(crate::controller::export_account::failure_reason(&message), "Unreachable");
    }

    #[test]
    fn a_refusal_keeps_stss_message() {
        let err = CredentialsError::provider_error(std::io::Error::other("AccessDenied: not trusted"));
        let message = verify_error(&err, "team-a", &spec());
        assert!(!message.starts_with(STS_UNREACHABLE) && message.contains("AccessDenied: not trusted"), "{message}");
        // as GetCallerIdentity reports it: the credentials failure in a connector error of kind "other"
        let wrapped = ConnectorError::other(Box::new(err), None);
        let message = verify_error(&wrapped, "team-a", &spec());
        assert!(!message.starts_with(STS_UNREACHABLE) && message.contains("AccessDenied: not trusted"), "{message}");
        assert_eq!(crate::controller::export_account::failure_reason(&message), "AuthorizationError");
    }
}
