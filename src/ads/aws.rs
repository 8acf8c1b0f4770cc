//! [`ExportService`] on the real `aws-sdk-applicationdiscovery` client: one client per
//! region, every call classified by [`classify`] (in `classify.rs`) and observed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig, timeout::TimeoutConfig};
use aws_sdk_applicationdiscovery::Client;
use aws_sdk_applicationdiscovery::error::SdkError;
use aws_sdk_applicationdiscovery::operation::start_continuous_export::StartContinuousExportOutput;
use aws_sdk_applicationdiscovery::types::ContinuousExportDescription;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

pub use super::classify::{OperationError, classify};
use super::limit::RateLimits;
use super::{
    AdsError, ExportDescription, ExportService, Operation, Reason, ReportedStatus, StartedExport, StopTimes, Timestamp,
};

/// Observes every ADS call: operation name, outcome (`"ok"` or the condition
/// reason) and wall-clock duration. Used for metrics; the default does nothing.
pub trait CallObserver: Send + Sync + 'static {
    /// Called once per ADS operation (after the SDK's own retries).
    fn observe(&self, operation: Operation, outcome: &str, elapsed: Duration);

    /// A request in `region` waited `waited` for the client-side rate limit
    /// ([`super::limit::RateLimits`]) before it was sent. The default ignores it.
    fn rate_limited(&self, region: &str, waited: Duration) {
        let _ = (region, waited);
    }

    /// Called once per Migration Hub Config `GetHomeRegion` call (after the SDK's own
    /// retries; [`super::home_region::AwsHomeRegionLookup`]) with its outcome: `"ok"`
    /// for an answer (a home region or none), else the condition reason its error
    /// classifies as, in the ADS calls' vocabulary ([`Reason::classify_code`], e.g.
    /// `AuthorizationError` for `AccessDeniedException`). The default ignores it.
    fn observe_home_region(&self, outcome: &str, elapsed: Duration) {
        let _ = (outcome, elapsed);
    }
}

/// Waits for a token of `region`'s bucket in `limits` (if any; in the running task's
/// lane, [`RateLimits::acquire`]) and reports a wait to `observer`.
pub(super) async fn admit(limits: Option<&RateLimits>, observer: Option<&Arc<dyn CallObserver>>, region: &str) {
    let Some(limits) = limits else { return };
    let waited = limits.acquire(region).await;
    if let (false, Some(observer)) = (waited.is_zero(), observer) {
        observer.rate_limited(region, waited);
    }
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
        status: d.status().map(|s| ReportedStatus::from_wire(s.as_str())).unwrap_or_default(),
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
                Operation::Start,
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
    limits: Option<Arc<RateLimits>>,
}

impl AwsExportService {
    /// Loads the shared configuration from the environment (`aws-config` defaults)
    /// with the given overrides. Per-attempt timeout 20 s, whole-operation timeout
    /// 60 s; the SDK's standard retry policy (3 attempts) applies. `endpoint_url`
    /// applies to ADS (and to the clients built from [`Self::sdk_config`], such as the
    /// home-region lookups), not to the credential providers: their STS client keeps its own
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
        Self { base, clients: Arc::default(), observer: None, limits: None }
    }

    /// Reports every call to `observer` (metrics).
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Sends every request (each page of a listing included) through `limits`, the
    /// per-region token buckets that throttling answers slow down.
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Waits for the region's rate limit (if any) and reports a wait to the observer.
    async fn admit(&self, region: &str) {
        admit(self.limits.as_deref(), self.observer.as_ref(), region).await;
    }

    /// Tells the region's rate limit how ADS answered.
    fn feedback<U>(&self, region: &str, result: &Result<U, AdsError>) {
        match (&self.limits, result) {
            (Some(limits), Err(e)) if e.reason == Reason::Throttled => limits.throttled(region),
            (Some(limits), _) => limits.succeeded(region),
            (None, _) => {}
        }
    }

    /// The shared SDK configuration (credentials, region, endpoint, timeouts) other
    /// AWS clients of the operator are built from.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.base
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
                let mut conf = aws_sdk_applicationdiscovery::config::Builder::from(&self.base)
                    .region(Region::new(region.to_owned()));
                conf.set_app_name(app_name());
                Client::from_conf(conf.build())
            })
            .clone()
    }

    /// Runs one SDK call, classifies its error, checks its answer with `accept` and
    /// reports the outcome (including an answer `accept` rejects) to the observer.
    async fn call<T, U, E, F>(
        &self,
        operation: Operation,
        region: &str,
        fut: F,
        accept: impl FnOnce(T) -> Result<U, AdsError>,
    ) -> Result<U, AdsError>
    where
        E: OperationError,
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        self.admit(region).await;
        let started = Instant::now();
        let result = fut.await.map_err(|e| classify(operation, &e)).and_then(accept);
        self.feedback(region, &result);
        if let Some(observer) = &self.observer {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.reason.as_str(),
            };
            observer.observe(operation, outcome, started.elapsed());
        }
        if let Err(e) = &result {
            tracing::debug!(operation = operation.name(), reason = %e.reason, error = %e.message, "ADS call failed");
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
                Operation::Describe,
                region,
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

    /// Every page of DescribeContinuousExports (`ids`: those exports only; `None`: the
    /// whole region), following `nextToken`.
    async fn pages(&self, region: &str, ids: Option<Vec<String>>) -> Result<Vec<ExportDescription>, AdsError> {
        let mut all = Vec::new();
        let mut token = None;
        loop {
            let (page, next) = self.describe_page(region, ids.clone(), token).await?;
            all.extend(page);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(all),
            }
        }
    }
}

/// [`crate::identity::AWS_APP_NAME`] as the SDK's app name (sent as `app/<name>` in
/// `x-amz-user-agent`); always valid (letters, digits, `-` and `.` only).
fn app_name() -> Option<aws_config::AppName> {
    aws_config::AppName::new(crate::identity::AWS_APP_NAME).ok()
}

impl ExportService for AwsExportService {
    async fn start(&self, region: &str) -> Result<StartedExport, AdsError> {
        // Start is not idempotent: an SDK retry after a lost answer would meet the
        // export the first attempt created (ConflictErrorException). The controller
        // retries instead, after checking for that export (`start-pending`).
        let once = aws_sdk_applicationdiscovery::config::Builder::default()
            .retry_config(aws_config::retry::RetryConfig::disabled());
        let send = self.client(region).start_continuous_export().customize().config_override(once).send();
        self.call(Operation::Start, region, send, started_export).await
    }

    async fn describe(&self, region: &str, export_id: &str) -> Result<ExportDescription, AdsError> {
        let (found, _) = self.describe_page(region, Some(vec![export_id.to_owned()]), None).await?;
        found.into_iter().find(|d| d.export_id == export_id).ok_or_else(|| {
            AdsError::new(Operation::Describe, Reason::NotFound, format!("export {export_id} not found in {region}"))
        })
    }

    async fn describe_many(&self, region: &str, export_ids: &[String]) -> Result<Vec<ExportDescription>, AdsError> {
        self.pages(region, Some(export_ids.to_vec())).await
    }

    async fn list(&self, region: &str) -> Result<Vec<ExportDescription>, AdsError> {
        self.pages(region, None).await
    }

    async fn stop(&self, region: &str, export_id: &str) -> Result<StopTimes, AdsError> {
        let send = self.client(region).stop_continuous_export().export_id(export_id).send();
        let out = self.call(Operation::Stop, region, send, Ok).await?;
        Ok(StopTimes { start_time: time(out.start_time()), stop_time: time(out.stop_time()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::error::CredentialsError;
    use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
    use aws_sdk_applicationdiscovery::operation::stop_continuous_export::StopContinuousExportError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
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
        for (err, operation) in [(&start, Operation::Start), (&describe, Operation::Describe)] {
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
        assert_eq!(
            (err.operation, err.reason, err.ambiguous),
            (Operation::Describe, Reason::AuthorizationError, false)
        );
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

    #[tokio::test]
    async fn signing_failure_through_the_sdk_is_authorization_error_and_unambiguous() {
        // a session token that is no valid header value: SigV4 cannot sign with it
        let creds = aws_credential_types::Credentials::new("AKIDTEST", "secret", Some("bad\ntoken".into()), None, "t");
        let (ads, listener) = service_with(SharedCredentialsProvider::new(creds));
        let start = ads.start("us-west-2").await.unwrap_err();
        let describe = ads.describe("us-west-2", "exp-1").await.unwrap_err();
        for (err, operation) in [(&start, Operation::Start), (&describe, Operation::Describe)] {
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
    struct Seen(Mutex<Vec<(Operation, String)>>);

    impl CallObserver for Seen {
        fn observe(&self, operation: Operation, outcome: &str, _elapsed: Duration) {
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
            let (ads, seen) = stubbed(&[(Operation::Start.name(), answer)]).await;
            let err = ads.start("us-west-2").await.unwrap_err();
            assert_eq!(
                (err.operation, err.reason, err.ambiguous),
                (Operation::Start, Reason::ServerError, true),
                "{answer}"
            );
            assert_eq!(
                err.message,
                "ADS's StartContinuousExport answer had no exportId; an export may have been started all the same"
            );
            assert_eq!(*seen.0.lock().unwrap(), [(Operation::Start, "ServerError".to_owned())], "{answer}");
        }
        let (ads, seen) = stubbed(&[(Operation::Start.name(), r#"{"exportId":"exp-1","s3Bucket":"b"}"#)]).await;
        let started = ads.start("us-west-2").await.unwrap();
        assert_eq!((started.export_id.as_str(), started.s3_bucket.as_deref()), ("exp-1", Some("b")));
        assert_eq!(*seen.0.lock().unwrap(), [(Operation::Start, "ok".to_owned())]);
    }

    #[tokio::test]
    async fn describe_entries_without_export_id_are_dropped() {
        let (ads, _) = stubbed(&[(
            Operation::Describe.name(),
            r#"{"descriptions":[{"status":"ACTIVE"},{"exportId":"","status":"ACTIVE"},{"exportId":"exp-2","status":"INACTIVE"}]}"#,
        )])
        .await;
        let all = ads.list("us-west-2").await.unwrap();
        assert_eq!(
            all.iter().map(|d| (d.export_id.as_str(), d.status.as_str())).collect::<Vec<_>>(),
            [("exp-2", "INACTIVE")]
        );
        assert_eq!(ads.describe("us-west-2", "exp-2").await.unwrap().status.as_str(), "INACTIVE");
        assert_eq!(ads.describe("us-west-2", "").await.unwrap_err().reason, Reason::NotFound);
    }
}
