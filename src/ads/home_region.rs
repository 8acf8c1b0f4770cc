//! The account's AWS Migration Hub home region, from Migration Hub Config's
//! `GetHomeRegion` (`aws-sdk-migrationhubconfig`), and the account ID for the command
//! that sets one, from STS `GetCallerIdentity` (`aws-sdk-sts`).
//!
//! ADS answers `HomeRegionNotSetException` to every call made outside the account's
//! home region. The controller uses [`HomeRegionCache`] to run objects that name no
//! region (no `spec.region`, no `--aws-region`) in the home region, and to explain that
//! error (the README's "Home region"). The answer is looked up once per account (one
//! operator process runs under one AWS identity) and kept until ADS answers
//! `HomeRegionNotSetException` again ([`HomeRegionCache::refresh`]).
//!
//! Migration Hub Config is itself a regional API: AWS serves it in the Migration Hub
//! home-region regions, and the operator calls it in `--migration-hub-config-region`
//! (default [`DEFAULT_CONFIG_REGION`], us-west-2). The IAM permission is
//! `mgh:GetHomeRegion`; without it ([`LookupError::AccessDenied`]) nothing changes but
//! a log line naming the permission.
//!
//! [`AwsHomeRegionLookup`] sends `GetHomeRegion` through the account's client-side rate
//! limit ([`RateLimits`], the bucket of the config region; see
//! [`AwsHomeRegionLookup::with_rate_limits`]) and reports each call to the metrics'
//! `aws_calls` family as operation [`OPERATION`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_config::{Region, SdkConfig};
use aws_sdk_migrationhubconfig::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_migrationhubconfig::operation::get_home_region::GetHomeRegionError;
use futures::future::BoxFuture;

use super::Reason;
use super::aws::{CallObserver, admit};
use super::limit::RateLimits;

/// Region the Migration Hub Config API is called in unless configured otherwise
/// (`--migration-hub-config-region`): us-west-2, where AWS serves it for every account.
pub const DEFAULT_CONFIG_REGION: &str = "us-west-2";

/// The IAM action `GetHomeRegion` needs.
pub const PERMISSION: &str = "mgh:GetHomeRegion";

/// The API name of Migration Hub Config's `GetHomeRegion`: the `operation` label of its
/// calls in the metrics (beside the ADS operations' names).
pub const OPERATION: &str = "GetHomeRegion";

/// What `GetHomeRegion` says of the calling account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeRegion {
    /// `HomeRegion` in the answer, e.g. `eu-central-1`.
    Set(String),
    /// An answer without `HomeRegion` (or an empty one): no home region is set.
    NotSet,
}

/// Why `GetHomeRegion` gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// `AccessDeniedException`: the operator's IAM identity lacks [`PERMISSION`].
    AccessDenied(String),
    /// Any other failure (throttling, 5xx, unreachable endpoint, credentials), with a
    /// one-line description: `code: message`.
    Failed(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::AccessDenied(m) => {
                write!(f, "AccessDeniedException: {m} (missing IAM permission {PERMISSION})")
            }
            LookupError::Failed(m) => f.write_str(m),
        }
    }
}

/// The lookups the controller needs, behind a seam so unit tests can fake them.
pub trait HomeRegionLookup: Send + Sync + 'static {
    /// Migration Hub Config `GetHomeRegion`.
    ///
    /// # Errors
    /// [`LookupError::AccessDenied`] for `AccessDeniedException`, else [`LookupError::Failed`].
    fn home_region(&self) -> BoxFuture<'_, Result<HomeRegion, LookupError>>;

    /// STS `GetCallerIdentity`'s `Account` (12 digits); `None` when it fails (it needs
    /// no IAM permission, but STS may be unreachable).
    fn account_id(&self) -> BoxFuture<'_, Option<String>>;
}

/// [`HomeRegionLookup`] on the real SDK clients, both built from the operator's
/// [`SdkConfig`] (its credentials, timeouts and retries, and its endpoint: with
/// `--aws-endpoint-url` both go there, as ADS does; otherwise the SDK's own
/// `AWS_ENDPOINT_URL_MIGRATIONHUB_CONFIG` and `AWS_ENDPOINT_URL_STS` apply).
pub struct AwsHomeRegionLookup {
    config: aws_sdk_migrationhubconfig::Client,
    config_region: String,
    sts: aws_sdk_sts::Client,
    limits: Option<Arc<RateLimits>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl AwsHomeRegionLookup {
    /// Clients for Migration Hub Config in `config_region` and STS in the base region
    /// (else `config_region`).
    pub fn new(base: &SdkConfig, config_region: &str) -> Self {
        let region = Region::new(config_region.to_owned());
        let config = aws_sdk_migrationhubconfig::config::Builder::from(base).region(region.clone()).build();
        let sts_region = base.region().cloned().unwrap_or(region);
        let sts = aws_sdk_sts::config::Builder::from(base).region(sts_region).build();
        Self {
            config: aws_sdk_migrationhubconfig::Client::from_conf(config),
            config_region: config_region.to_owned(),
            sts: aws_sdk_sts::Client::from_conf(sts),
            limits: None,
            observer: None,
        }
    }

    /// Sends every `GetHomeRegion` through `limits`, the same [`RateLimits`] as the
    /// account's ADS calls, taking a token of the config region's bucket (in the
    /// running task's lane; waits are reported to the observer as `rate_limited`).
    ///
    /// The bucket is per (account, region) and bounds what the operator sends into
    /// that pair: the config region is where this request goes (the home region is
    /// what it looks up, unknown before the answer), so it shares the bucket of the
    /// account's ADS calls in that region, and their total stays within
    /// `--aws-max-requests-per-second`. Its answers do not move the bucket's rate:
    /// throttling by Migration Hub Config says nothing about ADS's quota, and the
    /// lookup runs at most once per [`HomeRegionCache::MIN_INTERVAL`] anyway.
    #[must_use]
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Reports every `GetHomeRegion` call (outcome and duration,
    /// [`CallObserver::observe_home_region`]) and every rate-limit wait to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// The metrics outcome of a `GetHomeRegion` call: `"ok"` for an answer, else the
/// condition reason of its error in the ADS calls' vocabulary
/// ([`super::classify::reason_of`]).
fn outcome<T>(result: &Result<T, SdkError<GetHomeRegionError>>) -> &'static str {
    result.as_ref().map_or_else(|e| super::classify::reason_of(e).as_str(), |_| "ok")
}

/// `GetHomeRegion`'s errors are read by their code and HTTP status alone
/// ([`Reason::classify_code`]): no modeled variant needs a reason of its own
/// (`AccessDeniedException` is already `AuthorizationError` by its code).
impl super::classify::OperationError for GetHomeRegionError {
    fn modeled_reason(&self) -> Option<Reason> {
        None
    }
}

/// Reads a `GetHomeRegion` failure.
fn lookup_error(e: &SdkError<GetHomeRegionError>) -> LookupError {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let text = format!("{}: {}", err.code().unwrap_or("UnknownError"), err.message().unwrap_or_default());
            match err {
                GetHomeRegionError::AccessDeniedException(a) => {
                    LookupError::AccessDenied(a.message().unwrap_or_default().to_owned())
                }
                _ => LookupError::Failed(text),
            }
        }
        other => LookupError::Failed(aws_smithy_types::error::display::DisplayErrorContext(other).to_string()),
    }
}

impl HomeRegionLookup for AwsHomeRegionLookup {
    fn home_region(&self) -> BoxFuture<'_, Result<HomeRegion, LookupError>> {
        Box::pin(async move {
            admit(self.limits.as_deref(), self.observer.as_ref(), &self.config_region).await;
            let started = Instant::now();
            let result = self.config.get_home_region().send().await;
            if let Some(observer) = &self.observer {
                observer.observe_home_region(outcome(&result), started.elapsed());
            }
            let out = result.map_err(|e| lookup_error(&e))?;
            Ok(match out.home_region().filter(|r| !r.is_empty()) {
                Some(r) => HomeRegion::Set(r.to_owned()),
                None => HomeRegion::NotSet,
            })
        })
    }

    fn account_id(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            match self.sts.get_caller_identity().send().await {
                Ok(out) => out.account().filter(|a| !a.is_empty()).map(str::to_owned),
                Err(e) => {
                    let e = aws_smithy_types::error::display::DisplayErrorContext(&e);
                    tracing::warn!(error = %e, "STS GetCallerIdentity failed: the account ID is left out of messages");
                    None
                }
            }
        })
    }
}

/// A [`HomeRegionLookup`] that always gives the same answer and no account ID: for
/// tests, or where the home region is known without asking AWS.
#[derive(Clone, Debug)]
pub struct FixedHomeRegion(pub HomeRegion);

impl HomeRegionLookup for FixedHomeRegion {
    fn home_region(&self) -> BoxFuture<'_, Result<HomeRegion, LookupError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }

    fn account_id(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
}

/// A lookup's outcome as kept by [`HomeRegionCache`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// What `GetHomeRegion` answered.
    pub home_region: Result<HomeRegion, LookupError>,
    /// The account ID, looked up only when no home region is set (for the command that
    /// sets one); `None` otherwise or when STS failed.
    pub account_id: Option<String>,
}

impl Lookup {
    /// The home region, when one is set.
    pub fn region(&self) -> Option<&str> {
        match &self.home_region {
            Ok(HomeRegion::Set(r)) => Some(r),
            _ => None,
        }
    }
}

struct Cached {
    lookup: Lookup,
    at: Instant,
}

/// The account's home region, looked up once and kept; shared by all reconciles.
///
/// [`Self::ensure`] looks it up when nothing is known (or the last lookup found none, or
/// failed, at least [`Self::MIN_INTERVAL`] ago); [`Self::refresh`] looks it up again
/// after ADS answered `HomeRegionNotSetException`, at most once per
/// [`Self::MIN_INTERVAL`]: many objects failing at once make one call. One lookup runs
/// at a time; the others wait for it and share its answer.
pub struct HomeRegionCache {
    lookup: Arc<dyn HomeRegionLookup>,
    cached: Mutex<Option<Cached>>,
    running: tokio::sync::Mutex<()>,
}

impl fmt::Debug for HomeRegionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeRegionCache").field("current", &self.current()).finish_non_exhaustive()
    }
}

impl HomeRegionCache {
    /// Shortest time between two lookups (5 seconds).
    pub const MIN_INTERVAL: Duration = Duration::from_secs(5);

    /// An empty cache over `lookup`.
    pub fn new(lookup: Arc<dyn HomeRegionLookup>) -> Self {
        Self { lookup, cached: Mutex::new(None), running: tokio::sync::Mutex::new(()) }
    }

    /// The last lookup, if any.
    pub fn current(&self) -> Option<Lookup> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|c| c.lookup.clone())
    }

    /// The home region as last looked up, if one is set.
    pub fn region(&self) -> Option<String> {
        self.current().and_then(|l| l.region().map(str::to_owned))
    }

    fn age(&self) -> Option<Duration> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|c| c.at.elapsed())
    }

    /// The home region, looked up unless one is known (see the type's docs).
    pub async fn ensure(&self) -> Lookup {
        match self.current() {
            Some(l) if l.region().is_some() => l,
            _ => self.lookup_if_older_than(Self::MIN_INTERVAL).await,
        }
    }

    /// Looks the home region up again (after `HomeRegionNotSetException`) unless the
    /// last lookup is younger than [`Self::MIN_INTERVAL`].
    pub async fn refresh(&self) -> Lookup {
        self.lookup_if_older_than(Self::MIN_INTERVAL).await
    }

    async fn lookup_if_older_than(&self, age: Duration) -> Lookup {
        let _one_at_a_time = self.running.lock().await;
        if let (Some(l), Some(a)) = (self.current(), self.age())
            && a < age
        {
            return l;
        }
        let lookup = self.look_up().await;
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Cached { lookup: lookup.clone(), at: Instant::now() });
        lookup
    }

    async fn look_up(&self) -> Lookup {
        let home_region = self.lookup.home_region().await;
        match &home_region {
            Ok(HomeRegion::Set(r)) => tracing::info!(home_region = %r, "Migration Hub home region looked up"),
            Ok(HomeRegion::NotSet) => tracing::warn!("the Migration Hub home region of this account is not set"),
            Err(LookupError::AccessDenied(m)) => tracing::warn!(
                permission = PERMISSION,
                error = %m,
                "cannot look up the Migration Hub home region: missing IAM permission {PERMISSION} \
                 (grant it to explain HomeRegionNotSet and to run objects without a region in the home region)"
            ),
            Err(LookupError::Failed(m)) => tracing::warn!(error = %m, "cannot look up the Migration Hub home region"),
        }
        let account_id = match home_region {
            Ok(HomeRegion::NotSet) => self.lookup.account_id().await,
            _ => None,
        };
        Lookup { home_region, account_id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers from a list, counting the calls.
    struct Scripted {
        answers: Mutex<Vec<Result<HomeRegion, LookupError>>>,
        calls: AtomicUsize,
    }

    impl HomeRegionLookup for Scripted {
        fn home_region(&self) -> BoxFuture<'_, Result<HomeRegion, LookupError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.answers.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }

        fn account_id(&self) -> BoxFuture<'_, Option<String>> {
            Box::pin(async { Some("123456789012".to_owned()) })
        }
    }

    fn scripted(answers: Vec<Result<HomeRegion, LookupError>>) -> Arc<Scripted> {
        Arc::new(Scripted { answers: Mutex::new(answers), calls: AtomicUsize::new(0) })
    }

    /// Records the observer's reports: `GetHomeRegion` outcomes and rate-limit waits.
    #[derive(Default)]
    struct Seen {
        calls: Mutex<Vec<String>>,
        waits: Mutex<Vec<(String, Duration)>>,
    }

    impl CallObserver for Seen {
        fn observe(&self, operation: super::super::Operation, _outcome: &str, _elapsed: Duration) {
            panic!("GetHomeRegion reported as the ADS operation {operation}");
        }

        fn rate_limited(&self, region: &str, waited: Duration) {
            self.waits.lock().unwrap().push((region.to_owned(), waited));
        }

        fn observe_home_region(&self, outcome: &str, _elapsed: Duration) {
            self.calls.lock().unwrap().push(outcome.to_owned());
        }
    }

    /// `GetHomeRegion` on the SDK against the project's emulator (home region
    /// eu-central-1), with the SDK's retries off so each call is one request, through
    /// buckets of 20 requests per second, reporting to the returned [`Seen`].
    async fn emulated_lookup() -> (crate::emulator::RunningEmulator, AwsHomeRegionLookup, Arc<RateLimits>, Arc<Seen>) {
        use crate::emulator::{Emulator, EmulatorConfig};
        let cfg = EmulatorConfig { home_region: Some("eu-central-1".into()), ..Default::default() };
        let emulator = Emulator::new(cfg).spawn("127.0.0.1:0").await.expect("emulator listens");
        let base = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-central-1"))
            .endpoint_url(emulator.endpoint_url())
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("AKIDTEST", "secret", None, None, "test"),
            ))
            .build();
        let (limits, seen) = (Arc::new(RateLimits::new(20.0)), Arc::new(Seen::default()));
        let lookup = AwsHomeRegionLookup::new(&base, DEFAULT_CONFIG_REGION)
            .with_rate_limits(limits.clone())
            .with_observer(seen.clone());
        (emulator, lookup, limits, seen)
    }

    #[tokio::test]
    async fn get_home_region_waits_for_a_token_of_the_config_regions_bucket() {
        let (emulator, lookup, limits, seen) = emulated_lookup().await;
        // The account's ADS calls in the config region used the burst of 40 and queued
        // 10 more (half a second of tokens); another region's bucket stays full.
        let now = Instant::now();
        for _ in 0..50 {
            limits.reserve(DEFAULT_CONFIG_REGION, now);
        }
        assert_eq!(lookup.home_region().await, Ok(HomeRegion::Set("eu-central-1".into())));
        let waits = seen.waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 1, "one wait for the limit: {waits:?}");
        assert_eq!(waits[0].0, DEFAULT_CONFIG_REGION, "the config region's bucket, not the home region's");
        assert!(waits[0].1 > Duration::ZERO, "{waits:?}");
        assert_eq!(*seen.calls.lock().unwrap(), ["ok"]);
        assert_eq!(emulator.emulator.counters().get(OPERATION, "ok"), 1);
        assert_eq!(
            limits.reserve("eu-central-1", Instant::now()),
            Duration::ZERO,
            "the home region's bucket is untouched"
        );
    }

    #[tokio::test]
    async fn get_home_region_outcomes_are_reported_and_leave_the_rate_alone() {
        use crate::emulator::{Fault, FaultKind};
        let (emulator, lookup, limits, seen) = emulated_lookup().await;
        let denied = FaultKind::Error { name: "AccessDeniedException".into(), message: Some("no mgh".into()) };
        emulator.emulator.inject_fault(Fault::new(Some(OPERATION), denied));
        assert_eq!(lookup.home_region().await, Err(LookupError::AccessDenied("no mgh".into())));
        emulator.emulator.clear_faults();
        emulator.emulator.inject_fault(Fault::new(Some(OPERATION), FaultKind::Throttling));
        assert!(matches!(lookup.home_region().await, Err(LookupError::Failed(_))));
        emulator.emulator.clear_faults();
        emulator.emulator.set_home_region(None);
        assert_eq!(lookup.home_region().await, Ok(HomeRegion::NotSet));
        assert_eq!(*seen.calls.lock().unwrap(), ["AuthorizationError", "Throttled", "ok"]);
        assert_eq!(limits.rate(DEFAULT_CONFIG_REGION), 20.0, "Migration Hub Config's throttling does not slow ADS");
    }

    #[tokio::test]
    async fn a_known_home_region_is_looked_up_once() {
        let lookup = scripted(vec![Ok(HomeRegion::Set("eu-central-1".into()))]);
        let cache = HomeRegionCache::new(lookup.clone());
        assert_eq!(cache.current(), None);
        for _ in 0..3 {
            assert_eq!(cache.ensure().await.region(), Some("eu-central-1"));
        }
        assert_eq!(cache.region().as_deref(), Some("eu-central-1"));
        assert_eq!(lookup.calls.load(Ordering::SeqCst), 1);
        // a refresh within MIN_INTERVAL shares the last answer
        assert_eq!(cache.refresh().await.region(), Some("eu-central-1"));
        assert_eq!(lookup.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_home_region_brings_the_account_id_and_access_denied_does_not() {
        let cache = HomeRegionCache::new(scripted(vec![Ok(HomeRegion::NotSet)]));
        let l = cache.ensure().await;
        assert_eq!((l.home_region, l.account_id.as_deref()), (Ok(HomeRegion::NotSet), Some("123456789012")));
        let cache = HomeRegionCache::new(scripted(vec![Err(LookupError::AccessDenied("no".into()))]));
        let l = cache.ensure().await;
        assert_eq!((l.home_region, l.account_id), (Err(LookupError::AccessDenied("no".into())), None));
        assert_eq!(cache.region(), None);
        assert!(LookupError::AccessDenied("x".into()).to_string().contains(PERMISSION));
    }
}
