//! [`ExportService`] on the real `aws-sdk-applicationdiscovery` client, and the one
//! function that classifies the SDK's errors ([`classify`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig, timeout::TimeoutConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_applicationdiscovery::Client;
use aws_sdk_applicationdiscovery::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_applicationdiscovery::operation::describe_continuous_exports::DescribeContinuousExportsError;
use aws_sdk_applicationdiscovery::operation::start_continuous_export::{
    StartContinuousExportError, StartContinuousExportOutput,
};
use aws_sdk_applicationdiscovery::operation::stop_continuous_export::StopContinuousExportError;
use aws_sdk_applicationdiscovery::types::ContinuousExportDescription;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::ErrorMetadata;

use super::{AdsError, ExportDescription, ExportService, Reason, StartedExport, StopTimes, Timestamp};

/// Operation names as ADS (and the metrics and logs) spell them.
pub mod op {
    /// `StartContinuousExport`
    pub const START: &str = "StartContinuousExport";
    /// `DescribeContinuousExports`
    pub const DESCRIBE: &str = "DescribeContinuousExports";
    /// `StopContinuousExport`
    pub const STOP: &str = "StopContinuousExport";
}

/// Observes every ADS call: operation name, outcome (`"ok"` or the condition
/// reason) and wall-clock duration. Used for metrics; the default does nothing.
pub trait CallObserver: Send + Sync + 'static {
    /// Called once per ADS operation (after the SDK's own retries).
    fn observe(&self, operation: &'static str, outcome: &str, elapsed: Duration);
}

/// A typed ADS operation error (one per operation) that knows its [`Reason`].
///
/// Implemented for the three operation error enums of the SDK; the match is
/// exhaustive over the documented variants, and unmodeled errors fall back on
/// their error code and HTTP status.
pub trait OperationError: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static {
    /// The reason for a modeled variant, or `None` for `Unhandled`.
    fn modeled_reason(&self) -> Option<Reason>;
}

impl OperationError for StartContinuousExportError {
    fn modeled_reason(&self) -> Option<Reason> {
        use StartContinuousExportError as E;
        Some(match self {
            E::AuthorizationErrorException(_) => Reason::AuthorizationError,
            E::ConflictErrorException(_) => Reason::Conflict,
            E::HomeRegionNotSetException(_) => Reason::HomeRegionNotSet,
            E::InvalidParameterException(_) | E::InvalidParameterValueException(_) => Reason::InvalidParameter,
            E::OperationNotPermittedException(_) => Reason::OperationNotPermitted,
            E::ResourceInUseException(_) => Reason::ResourceInUse,
            E::ServerInternalErrorException(_) => Reason::ServerError,
            _ => return None,
        })
    }
}

impl OperationError for DescribeContinuousExportsError {
    fn modeled_reason(&self) -> Option<Reason> {
        use DescribeContinuousExportsError as E;
        Some(match self {
            E::AuthorizationErrorException(_) => Reason::AuthorizationError,
            E::HomeRegionNotSetException(_) => Reason::HomeRegionNotSet,
            E::InvalidParameterException(_) | E::InvalidParameterValueException(_) => Reason::InvalidParameter,
            E::OperationNotPermittedException(_) => Reason::OperationNotPermitted,
            E::ResourceNotFoundException(_) => Reason::NotFound,
            E::ServerInternalErrorException(_) => Reason::ServerError,
            _ => return None,
        })
    }
}

impl OperationError for StopContinuousExportError {
    fn modeled_reason(&self) -> Option<Reason> {
        use StopContinuousExportError as E;
        Some(match self {
            E::AuthorizationErrorException(_) => Reason::AuthorizationError,
            E::HomeRegionNotSetException(_) => Reason::HomeRegionNotSet,
            E::InvalidParameterException(_) | E::InvalidParameterValueException(_) => Reason::InvalidParameter,
            E::OperationNotPermittedException(_) => Reason::OperationNotPermitted,
            E::ResourceInUseException(_) => Reason::ResourceInUse,
            E::ResourceNotFoundException(_) => Reason::NotFound,
            E::ServerInternalErrorException(_) => Reason::ServerError,
            _ => return None,
        })
    }
}

/// Classifies any SDK failure of an ADS operation into an [`AdsError`]
/// (reason, retry class via [`AdsError::class`], message), per DESIGN.md section 3.
///
/// What maps to what (`ambiguous` says whether the request may have taken effect in
/// AWS although the call failed):
///
/// | [`SdkError`] variant | reason | `ambiguous` |
/// |---|---|---|
/// | `ServiceError` with reason `ServerError` (`ServerInternalErrorException`, `InternalFailure`, `ServiceUnavailable`, any other HTTP 5xx) | `ServerError` | `true`: the server failed while or after handling the request, so it may have been carried out (a Start answered 500 may have created an export) |
/// | `ServiceError` otherwise | the modeled variant's ([`OperationError::modeled_reason`]), else [`Reason::classify_code`] on the error code and HTTP status | `false`: throttling and 4xx errors are answered before anything is done |
/// | any variant whose [`std::error::Error::source`] chain holds an [`aws_credential_types::provider::error::CredentialsError`] (no credentials in the chain, provider failed or timed out) or an [`aws_sigv4::http_request::SigningError`] (the request could not be SigV4-signed) | `AuthorizationError` | `false` |
/// | `ConstructionFailure` otherwise (the SDK rejected its configuration or the input before building a request) | `UnknownError` | `false` |
/// | `TimeoutError` (attempt or operation timeout) | `Unreachable` | `true` |
/// | `DispatchFailure` of a [`ConnectorError`](aws_smithy_runtime_api::client::result::ConnectorError) the caller caused (`is_user`) | `Unreachable` | `false` |
/// | `DispatchFailure` otherwise (connection refused or reset, DNS, endpoint resolution) | `Unreachable` | `true` |
/// | `ResponseError` (an answer that could not be parsed) | [`Reason::classify_code`] on the HTTP status: `ServerError` for 5xx, `Throttled` for 429, `AuthorizationError` for 401/403, else `UnknownError` | `true` |
///
/// In `aws-smithy-runtime` the credentials are resolved and the request is signed in
/// the before-transmit phase of each attempt, so credential and signing failures
/// arrive as `DispatchFailure(ConnectorError::other(..))`, not as
/// `ConstructionFailure`; nothing was sent, hence `ambiguous: false`. Two such
/// failures cannot be recognised because their types are private to the SDK: the
/// identity cache's own load timeout (`aws-smithy-runtime`'s `TimedOutError`) and
/// `aws-runtime`'s `SigV4SigningError` (missing signing region or name); they map to
/// `Unreachable`, ambiguous.
///
/// The message is ADS's own for a service error; otherwise it is built from the
/// `Display` of each error in the [`std::error::Error::source`] chain (see
/// `error_chain`), after a prefix saying what failed (`could not load AWS
/// credentials`, `timed out waiting for AWS`, ...). Never from `Debug`, which would put
/// the SDK's dump of the request or response (headers included) into conditions and
/// events. Always one line, at most 512 characters plus an ellipsis.
pub fn classify<E: OperationError>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> AdsError {
    if !matches!(err, SdkError::ServiceError(_))
        && let Some(what) = auth_failure(err)
    {
        return AdsError::new(operation, Reason::AuthorizationError, format!("{what}: {}", error_chain(err)));
    }
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let status = se.raw().status().as_u16();
            let reason = e.modeled_reason().unwrap_or_else(|| Reason::classify_code(e.code(), Some(status)));
            let message = match (e.message(), e.code()) {
                (Some(m), _) => m.to_owned(),
                (None, Some(_)) => one_line(&e.to_string()),
                (None, None) => format!("HTTP {status} error"),
            };
            // A server error may come after the request took effect; a throttling or
            // client error means nothing was done.
            AdsError { ambiguous: reason == Reason::ServerError, ..AdsError::new(operation, reason, message) }
        }
        SdkError::ConstructionFailure(_) => {
            AdsError::new(operation, Reason::Unknown, format!("could not build the request: {}", error_chain(err)))
        }
        SdkError::TimeoutError(_) => AdsError {
            ambiguous: true,
            ..AdsError::new(operation, Reason::Unreachable, format!("timed out waiting for AWS: {}", error_chain(err)))
        },
        SdkError::DispatchFailure(df) => {
            AdsError { ambiguous: !df.is_user(), ..AdsError::new(operation, Reason::Unreachable, error_chain(err)) }
        }
        SdkError::ResponseError(re) => {
            let status = re.raw().status().as_u16();
            AdsError {
                ambiguous: true,
                ..AdsError::new(
                    operation,
                    Reason::classify_code(None, Some(status)),
                    format!("unreadable response (HTTP {status}): {}", error_chain(err)),
                )
            }
        }
        _ => AdsError::new(operation, Reason::Unknown, error_chain(err)),
    }
}

/// Walks `err`'s [`std::error::Error::source`] chain for a credentials failure
/// ([`CredentialsError`]) or a SigV4 signing failure
/// ([`aws_sigv4::http_request::SigningError`]), and says which it found.
fn auth_failure(err: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| {
        if e.is::<CredentialsError>() {
            Some("could not load AWS credentials")
        } else if e.is::<aws_sigv4::http_request::SigningError>() {
            Some("could not sign the request")
        } else {
            None
        }
    })
}

/// The message of `err` and of every error in its [`std::error::Error::source`]
/// chain, each by its `Display` (never `Debug`, which for SDK errors dumps whole
/// requests and responses), joined with `": "`; empty messages and a message equal to
/// the one before it (a wrapper that repeats its source) are left out. The result is
/// one line, capped by [`one_line`].
///
/// One exception: an [`ErrorMetadata`] (the source of every SDK error of an
/// unmodeled code, e.g. an STS `AccessDenied` while loading web-identity credentials)
/// displays itself in `Debug` form (`Error { code: .., message: .. }`); it reads
/// `code: message` here instead.
///
/// E.g. a credentials failure reads `dispatch failure: other: an error occurred while
/// loading credentials: service error: unhandled error (AccessDenied): AccessDenied:
/// Not authorized to perform sts:AssumeRoleWithWebIdentity`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in std::iter::successors(Some(err), |e| e.source()) {
        let text = match e.downcast_ref::<ErrorMetadata>() {
            Some(meta) => [meta.code(), meta.message()].into_iter().flatten().collect::<Vec<_>>().join(": "),
            None => e.to_string(),
        };
        let text = one_line(&text);
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    one_line(&parts.join(": "))
}

/// Collapses a multi-line error chain into one line, capped at 512 characters.
fn one_line(s: &str) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 512 {
        let cut = (0..=512).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<Timestamp> {
    t.and_then(|t| super::timestamp_from_epoch(t.secs(), t.subsec_nanos()))
}

fn database_name(cfg: Option<&HashMap<String, String>>) -> Option<String> {
    cfg.and_then(|m| m.get("databaseName")).cloned()
}

/// Maps one `ContinuousExportDescription` of a DescribeContinuousExports answer.
///
/// Returns `None` (and logs a warning) when the entry has no `exportId` or an empty
/// one: such an entry could not be told apart from any other, so the controller must
/// never see it (an empty ID would be stored as the managed export's ID).
fn description(d: &ContinuousExportDescription) -> Option<ExportDescription> {
    let Some(export_id) = d.export_id().filter(|id| !id.is_empty()) else {
        tracing::warn!(
            status = d.status().map(|s| s.as_str()),
            "ADS's DescribeContinuousExports answer held an export without exportId; ignoring it"
        );
        return None;
    };
    Some(ExportDescription {
        export_id: export_id.to_owned(),
        status: d.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        status_detail: d.status_detail().map(str::to_owned),
        s3_bucket: d.s3_bucket().map(str::to_owned),
        data_source: d.data_source().map(|s| s.as_str().to_owned()),
        database_name: database_name(d.schema_storage_config()),
        start_time: time(d.start_time()),
        stop_time: time(d.stop_time()),
    })
}

/// Maps a StartContinuousExport answer.
///
/// # Errors
/// An [`AdsError`] with reason `ServerError` and `ambiguous: true` when the answer
/// has no `exportId` or an empty one: ADS may have started an export whose ID the
/// operator did not learn, so the controller must look for it (`start-pending`)
/// rather than store an empty ID.
fn started_export(out: StartContinuousExportOutput) -> Result<StartedExport, AdsError> {
    let Some(export_id) = out.export_id().filter(|id| !id.is_empty()) else {
        return Err(AdsError {
            ambiguous: true,
            ..AdsError::new(
                op::START,
                Reason::ServerError,
                "ADS's StartContinuousExport answer had no exportId; an export may have been started all the same",
            )
        });
    };
    Ok(StartedExport {
        export_id: export_id.to_owned(),
        s3_bucket: out.s3_bucket().map(str::to_owned),
        data_source: out.data_source().map(|s| s.as_str().to_owned()),
        database_name: database_name(out.schema_storage_config()),
        start_time: time(out.start_time()),
    })
}

/// Settings for [`AwsExportService::load`].
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// Default region (`--aws-region`); falls back on the `aws-config` chain
    /// (`AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (`--aws-endpoint-url`), e.g. the ADS emulator or a VPC endpoint.
    pub endpoint_url: Option<String>,
}

/// [`ExportService`] backed by `aws-sdk-applicationdiscovery`, one client per region,
/// all sharing one `aws-config` [`SdkConfig`] (credentials from the standard chain:
/// env, profile, IRSA web identity, EKS Pod Identity, IMDS).
#[derive(Clone)]
pub struct AwsExportService {
    base: SdkConfig,
    clients: Arc<Mutex<HashMap<String, Client>>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl AwsExportService {
    /// Loads the shared configuration from the environment (`aws-config` defaults)
    /// with the given overrides. Per-attempt timeout 20 s, whole-operation timeout
    /// 60 s; the SDK's standard retry policy (3 attempts) applies. `endpoint_url`
    /// applies to ADS only: the credential providers' STS client keeps its own
    /// endpoint (`AWS_ENDPOINT_URL_STS`, else the SDK's). When the environment selects
    /// IRSA or a container credentials endpoint, credential errors name it (see
    /// [`super::credentials`]).
    pub async fn load(settings: AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        );
        if let Some(region) = settings.region {
            loader = loader.region(Region::new(region));
        }
        if let Some(url) = settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let source = super::credentials::CredentialSource::from_env(|k| std::env::var(k).ok());
        Self::from_sdk_config(super::credentials::with_source_context(loader.load().await, source))
    }

    /// Wraps an existing [`SdkConfig`] (tests build one with static credentials).
    pub fn from_sdk_config(base: SdkConfig) -> Self {
        Self { base, clients: Arc::default(), observer: None }
    }

    /// Reports every call to `observer` (metrics).
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The default region from flags or the `aws-config` chain, if any.
    pub fn default_region(&self) -> Option<String> {
        self.base.region().map(|r| r.to_string())
    }

    fn client(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let conf = aws_sdk_applicationdiscovery::config::Builder::from(&self.base)
                    .region(Region::new(region.to_owned()))
                    .build();
                Client::from_conf(conf)
            })
            .clone()
    }

    /// Runs one SDK call, classifies its error, checks its answer with `accept` and
    /// reports the outcome (including an answer `accept` rejects) to the observer.
    async fn call<T, U, E, F>(
        &self,
        operation: &'static str,
        fut: F,
        accept: impl FnOnce(T) -> Result<U, AdsError>,
    ) -> Result<U, AdsError>
    where
        E: OperationError,
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let started = Instant::now();
        let result = fut.await.map_err(|e| classify(operation, &e)).and_then(accept);
        if let Some(observer) = &self.observer {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.reason.as_str(),
            };
            observer.observe(operation, outcome, started.elapsed());
        }
        if let Err(e) = &result {
            tracing::debug!(operation, reason = %e.reason, error = %e.message, "ADS call failed");
        }
        result
    }

    async fn describe_page(
        &self,
        region: &str,
        ids: Option<Vec<String>>,
        next_token: Option<String>,
    ) -> Result<(Vec<ExportDescription>, Option<String>), AdsError> {
        let out = self
            .call(
                op::DESCRIBE,
                self.client(region)
                    .describe_continuous_exports()
                    .set_export_ids(ids)
                    .set_next_token(next_token)
                    .max_results(100)
                    .send(),
                Ok,
            )
            .await?;
        Ok((out.descriptions().iter().filter_map(description).collect(), out.next_token().map(str::to_owned)))
    }
}

impl ExportService for AwsExportService {
    async fn start(&self, region: &str) -> Result<StartedExport, AdsError> {
        // Start is not idempotent: an SDK retry after a lost answer would meet the
        // export the first attempt created (ConflictErrorException). The controller
        // retries instead, after checking for that export (`start-pending`).
        let once = aws_sdk_applicationdiscovery::config::Builder::default()
            .retry_config(aws_config::retry::RetryConfig::disabled());
        let send = self.client(region).start_continuous_export().customize().config_override(once).send();
        self.call(op::START, send, started_export).await
    }

    async fn describe(&self, region: &str, export_id: &str) -> Result<ExportDescription, AdsError> {
        let (found, _) = self.describe_page(region, Some(vec![export_id.to_owned()]), None).await?;
        found.into_iter().find(|d| d.export_id == export_id).ok_or_else(|| {
            AdsError::new(op::DESCRIBE, Reason::NotFound, format!("export {export_id} not found in {region}"))
        })
    }

    async fn list(&self, region: &str) -> Result<Vec<ExportDescription>, AdsError> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.describe_page(region, None, token).await?;
            all.extend(page);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    async fn stop(&self, region: &str, export_id: &str) -> Result<StopTimes, AdsError> {
        let send = self.client(region).stop_continuous_export().export_id(export_id).send();
        let out = self.call(op::STOP, send, Ok).await?;
        Ok(StopTimes { start_time: time(out.start_time()), stop_time: time(out.stop_time()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
    use aws_sdk_applicationdiscovery::types::error::*;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
    }

    fn service<E: OperationError>(e: E, status: u16) -> AdsError {
        classify("Op", &SdkError::service_error(e, response(status)))
    }

    macro_rules! variants {
        ($enum:ident: $($variant:ident => $reason:ident),+ $(,)?) => {{
            let mut n = 0;
            $(
                // as the SDK's deserializer builds it: code and message in the metadata
                let meta = ErrorMetadata::builder().code(stringify!($variant)).message("m").build();
                let got = service($enum::$variant($variant::builder().message("m").meta(meta).build()), 400);
                assert_eq!(got.reason, Reason::$reason, concat!(stringify!($enum), "::", stringify!($variant)));
                assert_eq!(got.message, "m");
                // only a server error may have taken effect
                assert_eq!(
                    got.ambiguous,
                    Reason::$reason == Reason::ServerError,
                    concat!(stringify!($enum), "::", stringify!($variant))
                );
                n += 1;
            )+
            n
        }};
    }

    #[test]
    fn every_start_variant() {
        let n = variants!(StartContinuousExportError:
            AuthorizationErrorException => AuthorizationError,
            ConflictErrorException => Conflict,
            HomeRegionNotSetException => HomeRegionNotSet,
            InvalidParameterException => InvalidParameter,
            InvalidParameterValueException => InvalidParameter,
            OperationNotPermittedException => OperationNotPermitted,
            ResourceInUseException => ResourceInUse,
            ServerInternalErrorException => ServerError,
        );
        assert_eq!(n, 8);
    }

    #[test]
    fn every_describe_variant() {
        let n = variants!(DescribeContinuousExportsError:
            AuthorizationErrorException => AuthorizationError,
            HomeRegionNotSetException => HomeRegionNotSet,
            InvalidParameterException => InvalidParameter,
            InvalidParameterValueException => InvalidParameter,
            OperationNotPermittedException => OperationNotPermitted,
            ResourceNotFoundException => NotFound,
            ServerInternalErrorException => ServerError,
        );
        assert_eq!(n, 7);
    }

    #[test]
    fn every_stop_variant() {
        let n = variants!(StopContinuousExportError:
            AuthorizationErrorException => AuthorizationError,
            HomeRegionNotSetException => HomeRegionNotSet,
            InvalidParameterException => InvalidParameter,
            InvalidParameterValueException => InvalidParameter,
            OperationNotPermittedException => OperationNotPermitted,
            ResourceInUseException => ResourceInUse,
            ResourceNotFoundException => NotFound,
            ServerInternalErrorException => ServerError,
        );
        assert_eq!(n, 8);
    }

    #[test]
    fn unhandled_errors_use_code_then_status() {
        let generic = |code: Option<&str>| {
            let mut b = ErrorMetadata::builder();
            if let Some(c) = code {
                b = b.code(c);
            }
            StopContinuousExportError::generic(b.build())
        };
        let classified = |code, status| {
            let e = service(generic(code), status);
            (e.reason, e.ambiguous)
        };
        assert_eq!(classified(Some("ThrottlingException"), 400), (Reason::Throttled, false));
        assert_eq!(classified(Some("UnrecognizedClientException"), 400), (Reason::AuthorizationError, false));
        assert_eq!(classified(None, 503), (Reason::ServerError, true));
        assert_eq!(classified(None, 500), (Reason::ServerError, true));
        assert_eq!(classified(Some("InternalFailure"), 500), (Reason::ServerError, true));
        assert_eq!(classified(Some("ServiceUnavailable"), 503), (Reason::ServerError, true));
        assert_eq!(classified(None, 429), (Reason::Throttled, false));
        assert_eq!(classified(None, 403), (Reason::AuthorizationError, false));
        assert_eq!(classified(None, 418), (Reason::Unknown, false));
        assert_eq!(service(generic(None), 503).message, "HTTP 503 error");
    }

    #[test]
    fn transport_failures() {
        type Err = SdkError<StartContinuousExportError, HttpResponse>;
        let c = classify("Op", &Err::construction_failure("input rejected"));
        assert_eq!((c.reason, c.ambiguous), (Reason::Unknown, false));
        let t = classify("Op", &Err::timeout_error("slow"));
        assert_eq!((t.reason, t.ambiguous), (Reason::Unreachable, true));
        let io = aws_smithy_runtime_api::client::result::ConnectorError::io("connection refused".into());
        let d = classify("Op", &Err::dispatch_failure(io));
        assert_eq!((d.reason, d.ambiguous), (Reason::Unreachable, true));
        let r = classify("Op", &Err::response_error("bad json", response(502)));
        assert_eq!((r.reason, r.ambiguous), (Reason::ServerError, true));
    }

    /// A credentials provider that always fails, as the default chain does when it
    /// finds no credentials.
    #[derive(Debug)]
    struct NoCredentials;

    impl ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("no credentials in the test chain")))
        }
    }

    /// A real SDK-backed service with `credentials`, pointed at a local listener that
    /// never accepts; the listener's queue tells whether the SDK connected at all.
    fn service_with(credentials: SharedCredentialsProvider) -> (AwsExportService, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .endpoint_url(url)
            .credentials_provider(credentials)
            .timeout_config(TimeoutConfig::builder().operation_timeout(Duration::from_secs(10)).build())
            .build();
        (AwsExportService::from_sdk_config(config), listener)
    }

    /// A real SDK-backed service at `url`: static test credentials, no retries, an
    /// operation timeout of `timeout`.
    fn service_at(url: &str, timeout: Duration) -> AwsExportService {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .endpoint_url(url)
            .credentials_provider(SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
            .build();
        AwsExportService::from_sdk_config(config)
    }

    /// Asserts that a message holds none of the SDK's `Debug` dumps (which show the
    /// raw request or response, headers included) and is one line.
    #[track_caller]
    fn assert_no_debug_dump(err: &AdsError) {
        for dump in ["{", "}", "Response {", "DispatchFailure(", "ConnectorError", "StatusCode(", "\n"] {
            assert!(!err.message.contains(dump), "{dump:?} in the message: {}", err.message);
        }
        assert!(!err.message.contains('\n'), "{}", err.message);
    }

    fn assert_nothing_sent(listener: &std::net::TcpListener) {
        let accepted = listener.accept().map(|(_, peer)| peer);
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the SDK connected although it had no usable credentials: {accepted:?}"
        );
    }

    #[tokio::test]
    async fn credentials_failure_through_the_sdk_is_authorization_error_and_unambiguous() {
        let (ads, listener) = service_with(SharedCredentialsProvider::new(NoCredentials));
        let start = ads.start("us-west-2").await.unwrap_err();
        let describe = ads.describe("us-west-2", "exp-1").await.unwrap_err();
        for (err, operation) in [(&start, op::START), (&describe, op::DESCRIBE)] {
            assert_eq!(err.operation, operation);
            assert_eq!((err.reason, err.ambiguous), (Reason::AuthorizationError, false), "{err}");
            assert!(err.message.starts_with("could not load AWS credentials: "), "{err}");
            assert!(err.message.contains("no credentials in the test chain"), "{err}");
            assert_no_debug_dump(err);
        }
        assert_nothing_sent(&listener);
    }

    /// A credentials provider failing as the web-identity provider does when STS
    /// refuses: a provider error whose source is the STS call's [`SdkError`], whose
    /// `Debug` form holds the raw HTTP response.
    #[derive(Debug)]
    struct StsRefuses;

    impl ProvideCredentials for StsRefuses {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let meta = ErrorMetadata::builder()
                .code("AccessDenied")
                .message("Not authorized to perform sts:AssumeRoleWithWebIdentity")
                .build();
            let mut raw = response(403);
            raw.headers_mut().insert("server", "AmazonSTS");
            raw.headers_mut().insert("x-amzn-requestid", "0f3f1c3e-0000-0000-0000-000000000000");
            let sts = SdkError::service_error(StopContinuousExportError::generic(meta), raw);
            future::ProvideCredentials::ready(Err(CredentialsError::provider_error(sts)))
        }
    }

    #[tokio::test]
    async fn credentials_failure_message_names_the_cause_without_debug_dumps() {
        let (ads, listener) = service_with(SharedCredentialsProvider::new(StsRefuses));
        let err = ads.describe("us-west-2", "exp-1").await.unwrap_err();
        assert_eq!((err.operation, err.reason, err.ambiguous), (op::DESCRIBE, Reason::AuthorizationError, false));
        assert!(err.message.starts_with("could not load AWS credentials: "), "{err}");
        assert!(err.message.contains("AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"), "{err}");
        assert!(!err.message.contains("AmazonSTS") && !err.message.contains("requestid"), "no headers: {err}");
        assert_no_debug_dump(&err);
        assert_nothing_sent(&listener);
    }

    #[tokio::test]
    async fn connection_failure_message_names_the_cause_without_debug_dumps() {
        // a port nothing listens on: the connection is refused
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let ads = service_at(&format!("http://{closed}"), Duration::from_secs(10));
        let err = ads.describe("us-west-2", "exp-1").await.unwrap_err();
        assert_eq!((err.reason, err.ambiguous), (Reason::Unreachable, true), "{err}");
        assert!(err.message.to_lowercase().contains("connection refused"), "{err}");
        assert!(err.message.starts_with("dispatch failure: io error: "), "{err}");
        assert_no_debug_dump(&err);
    }

    #[tokio::test]
    async fn timeout_message_names_the_cause_without_debug_dumps() {
        // accepts connections (in the kernel's queue) but never answers
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ads = service_at(&format!("http://{}", silent.local_addr().unwrap()), Duration::from_millis(300));
        let err = ads.describe("us-west-2", "exp-1").await.unwrap_err();
        assert_eq!((err.reason, err.ambiguous), (Reason::Unreachable, true), "{err}");
        assert!(err.message.starts_with("timed out waiting for AWS: "), "{err}");
        assert!(err.message.contains("operation timeout") && err.message.contains("300ms"), "{err}");
        assert_no_debug_dump(&err);
    }

    #[test]
    fn error_chain_joins_displays_and_drops_repeats() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let chain = E(
            "outer",
            Some(Box::new(E(
                "io",
                Some(Box::new(E("io", Some(Box::new(E("", Some(Box::new(E("refused\n  by peer", None))))))))),
            ))),
        );
        assert_eq!(error_chain(&chain), "outer: io: refused by peer");
        let meta = ErrorMetadata::builder().code("AccessDenied").message("no").build();
        assert_eq!(error_chain(&meta), "AccessDenied: no");
        assert_eq!(error_chain(&ErrorMetadata::builder().build()), "");
    }

    #[tokio::test]
    async fn signing_failure_through_the_sdk_is_authorization_error_and_unambiguous() {
        // a session token that is no valid header value: SigV4 cannot sign with it
        let creds = aws_credential_types::Credentials::new("AKIDTEST", "secret", Some("bad\ntoken".into()), None, "t");
        let (ads, listener) = service_with(SharedCredentialsProvider::new(creds));
        let start = ads.start("us-west-2").await.unwrap_err();
        let describe = ads.describe("us-west-2", "exp-1").await.unwrap_err();
        for (err, operation) in [(&start, op::START), (&describe, op::DESCRIBE)] {
            assert_eq!(err.operation, operation);
            assert_eq!((err.reason, err.ambiguous), (Reason::AuthorizationError, false), "{err}");
            assert!(err.message.starts_with("could not sign the request: "), "{err}");
            assert!(!err.message.contains("secret") && !err.message.contains("bad"), "{err}");
        }
        assert_nothing_sent(&listener);
    }

    /// Serves canned awsJson1.1 answers, chosen by the operation in `X-Amz-Target`, on
    /// a local port; returns the endpoint URL.
    async fn stub_ads(answers: &[(&'static str, &'static str)]) -> String {
        use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
        let answers: Arc<[(&'static str, &'static str)]> = answers.into();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |headers: HeaderMap| async move {
                let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let operation = target.rsplit('.').next().unwrap_or_default();
                let body = answers.iter().find(|(op, _)| *op == operation).map(|(_, body)| *body);
                match body {
                    Some(body) => (StatusCode::OK, [(CONTENT_TYPE, "application/x-amz-json-1.1")], body),
                    None => (
                        StatusCode::BAD_REQUEST,
                        [(CONTENT_TYPE, "application/x-amz-json-1.1")],
                        r#"{"__type":"UnknownOperationException"}"#,
                    ),
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Records every observed call as `(operation, outcome)`.
    #[derive(Default)]
    struct Seen(Mutex<Vec<(&'static str, String)>>);

    impl CallObserver for Seen {
        fn observe(&self, operation: &'static str, outcome: &str, _elapsed: Duration) {
            self.0.lock().unwrap().push((operation, outcome.to_owned()));
        }
    }

    async fn stubbed(answers: &[(&'static str, &'static str)]) -> (AwsExportService, Arc<Seen>) {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-west-2"))
            .endpoint_url(stub_ads(answers).await)
            .credentials_provider(SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            )))
            .build();
        let seen = Arc::new(Seen::default());
        (AwsExportService::from_sdk_config(config).with_observer(seen.clone()), seen)
    }

    #[tokio::test]
    async fn start_answer_without_export_id_is_an_ambiguous_server_error() {
        for answer in [r#"{}"#, r#"{"exportId":"","s3Bucket":"b","dataSource":"AGENT"}"#] {
            let (ads, seen) = stubbed(&[(op::START, answer)]).await;
            let err = ads.start("us-west-2").await.unwrap_err();
            assert_eq!((err.operation, err.reason, err.ambiguous), (op::START, Reason::ServerError, true), "{answer}");
            assert_eq!(
                err.message,
                "ADS's StartContinuousExport answer had no exportId; an export may have been started all the same"
            );
            assert_eq!(*seen.0.lock().unwrap(), [(op::START, "ServerError".to_owned())], "{answer}");
        }
        let (ads, seen) = stubbed(&[(op::START, r#"{"exportId":"exp-1","s3Bucket":"b"}"#)]).await;
        let started = ads.start("us-west-2").await.unwrap();
        assert_eq!((started.export_id.as_str(), started.s3_bucket.as_deref()), ("exp-1", Some("b")));
        assert_eq!(*seen.0.lock().unwrap(), [(op::START, "ok".to_owned())]);
    }

    #[tokio::test]
    async fn describe_entries_without_export_id_are_dropped() {
        let (ads, _) = stubbed(&[(
            op::DESCRIBE,
            r#"{"descriptions":[{"status":"ACTIVE"},{"exportId":"","status":"ACTIVE"},{"exportId":"exp-2","status":"INACTIVE"}]}"#,
        )])
        .await;
        let all = ads.list("us-west-2").await.unwrap();
        assert_eq!(
            all.iter().map(|d| (d.export_id.as_str(), d.status.as_str())).collect::<Vec<_>>(),
            [("exp-2", "INACTIVE")]
        );
        assert_eq!(ads.describe("us-west-2", "exp-2").await.unwrap().status, "INACTIVE");
        assert_eq!(ads.describe("us-west-2", "").await.unwrap_err().reason, Reason::NotFound);
    }

    #[test]
    fn one_line_collapses_and_caps() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = "é".repeat(600);
        assert!(one_line(&long).chars().count() <= 513);
    }
}
