//! Where the operator's AWS credentials come from, said in credential errors.
//!
//! The credentials themselves come from `aws-config`'s default chain, unchanged:
//! environment keys, profile, IRSA (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`: STS
//! `AssumeRoleWithWebIdentity`, at `AWS_ENDPOINT_URL_STS` when set), EKS Pod Identity /
//! containers (`AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`),
//! IMDS. They are cached in memory by the SDK's identity cache, which loads new ones when
//! a call finds the cached ones within 5 to 10 s of their expiry (10 s buffer, minus up to
//! 50 % jitter); nothing is written to disk, so a read-only root filesystem is fine.
//!
//! What this module adds: when a load fails, the error says which source was tried,
//! e.g. `could not assume role arn:aws:iam::123456789012:role/ads with the web identity
//! token in /var/run/secrets/eks.amazonaws.com/serviceaccount/token (IRSA)`, so the
//! condition message names the role a user must fix. Only names, ARNs, URLs and paths are
//! written, never a token, key or secret.

use std::fmt;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};

/// The credential source the environment selects, as EKS injects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// IRSA: `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` (EKS's pod identity webhook).
    WebIdentity {
        /// `AWS_ROLE_ARN`.
        role_arn: String,
        /// `AWS_WEB_IDENTITY_TOKEN_FILE`.
        token_file: String,
    },
    /// EKS Pod Identity (or another container credentials endpoint):
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`, optionally `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
    Container {
        /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
        uri: String,
        /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, if set.
        token_file: Option<String>,
    },
    /// An `ExportAccount`'s role, assumed (STS `AssumeRole`) with the operator's own
    /// credentials (`src/ads/assume.rs`).
    AccountRole {
        /// The `ExportAccount`'s `spec.roleArn`.
        role_arn: String,
        /// The `ExportAccount`'s name.
        account: String,
    },
}

impl CredentialSource {
    /// The source `env` (a variable lookup, e.g. `std::env::var`) selects, in the order of
    /// `aws-config`'s default chain: `None` when static keys (`AWS_ACCESS_KEY_ID`) come
    /// first or neither IRSA nor a container endpoint is configured.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if var("AWS_ACCESS_KEY_ID").is_some() {
            return None;
        }
        if let (Some(role_arn), Some(token_file)) = (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE")) {
            return Some(CredentialSource::WebIdentity { role_arn, token_file });
        }
        var("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .map(|uri| CredentialSource::Container { uri, token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") })
    }
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::WebIdentity { role_arn, token_file } => {
                write!(f, "could not assume role {role_arn} with the web identity token in {token_file} (IRSA)")
            }
            CredentialSource::Container { uri, token_file: Some(file) } => write!(
                f,
                "could not get credentials from the EKS Pod Identity Agent at {uri} with the token in {file} \
                 (is there a Pod Identity association for this ServiceAccount?)"
            ),
            CredentialSource::Container { uri, token_file: None } => {
                write!(f, "could not get credentials from the container credentials endpoint {uri}")
            }
            CredentialSource::AccountRole { role_arn, account } => write!(
                f,
                "could not assume role {role_arn} of ExportAccount {account} (its trust policy must allow the \
                 operator's identity to call sts:AssumeRole, with the ExportAccount's externalId if it sets one)"
            ),
        }
    }
}

/// Wraps `config`'s credentials provider so that its errors name `source`; `config`
/// unchanged when `source` is `None` or it has no provider.
pub fn with_source_context(config: SdkConfig, source: Option<CredentialSource>) -> SdkConfig {
    match (source, config.credentials_provider()) {
        (Some(source), Some(inner)) => {
            tracing::info!(source = ?source, "AWS credentials from the default chain");
            config.into_builder().credentials_provider(SharedCredentialsProvider::new(Named { inner, source })).build()
        }
        _ => config,
    }
}

/// `inner`, whose errors say that `source` failed (the cause kept as the error's source).
pub fn named(inner: SharedCredentialsProvider, source: CredentialSource) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Named { inner, source })
}

/// A provider whose errors say which source failed.
#[derive(Debug)]
struct Named {
    inner: SharedCredentialsProvider,
    source: CredentialSource,
}

/// The context error: the source's description, caused by the provider's error.
#[derive(Debug)]
struct SourceFailed {
    source: CredentialSource,
    cause: CredentialsError,
}

impl fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for SourceFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

impl ProvideCredentials for Named {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.inner
                .provide_credentials()
                .await
                .map_err(|cause| CredentialsError::provider_error(SourceFailed { source: self.source.clone(), cause }))
        })
    }

    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.inner.fallback_on_interrupt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn sources_in_chain_order() {
        let irsa = [("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/a"), ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")];
        let source = CredentialSource::from_env(env(&irsa)).unwrap();
        assert_eq!(
            source.to_string(),
            "could not assume role arn:aws:iam::123456789012:role/a with the web identity token in /t (IRSA)"
        );
        let keys = [("AWS_ACCESS_KEY_ID", "AKID"), irsa[0], irsa[1]];
        assert_eq!(CredentialSource::from_env(env(&keys)), None);
        let pod = [("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")];
        assert!(matches!(
            CredentialSource::from_env(env(&pod)),
            Some(CredentialSource::Container { token_file: None, .. })
        ));
        assert_eq!(CredentialSource::from_env(env(&[("AWS_ROLE_ARN", "x")])), None);
    }

    #[tokio::test]
    async fn errors_name_the_source_and_keep_the_cause() {
        #[derive(Debug)]
        struct Failing;
        impl ProvideCredentials for Failing {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err(CredentialsError::provider_error("AccessDenied: nope")))
            }
        }
        let source = CredentialSource::WebIdentity { role_arn: "arn:r".into(), token_file: "/t".into() };
        let named = Named { inner: SharedCredentialsProvider::new(Failing), source };
        let err = named.provide_credentials().await.unwrap_err();
        let chain: Vec<String> =
            std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| e.source())
                .map(|e| e.to_string())
                .collect();
        assert!(chain.iter().any(|m| m.contains("could not assume role arn:r")), "{chain:?}");
        assert!(chain.iter().any(|m| m.contains("AccessDenied: nope")), "{chain:?}");
    }
}
