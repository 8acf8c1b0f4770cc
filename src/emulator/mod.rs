//! An emulator of the AWS Application Discovery Service (ADS) continuous-export API.
//!
//! It speaks the real awsJson1.1 wire protocol, so the real `aws-sdk-applicationdiscovery`
//! client works against it when pointed there with `endpoint_url`. Use it in-process
//! ([`Emulator::spawn`]) or as the `ads-emulator` binary.
//!
//! # Wire protocol
//!
//! `POST /` with `X-Amz-Target: AWSPoseidonService_V2015_11_01.<Operation>`; bodies and
//! responses are `application/x-amz-json-1.1`, every response carries `x-amzn-RequestId`.
//! Implemented: `StartContinuousExport`, `DescribeContinuousExports`, `StopContinuousExport`.
//! Errors are `{"__type": "<Name>", "message": "..."}` with HTTP 400 (500 for
//! `ServerInternalErrorException`). Timestamps are epoch seconds (UTC) as JSON numbers with a
//! millisecond fraction, e.g. `1493405005.639`.
//!
//! A SigV4 `Authorization` header is required (else `MissingAuthenticationTokenException`);
//! the signature is verified only in strict credentials mode (below), but its access key
//! always selects the account (see *Accounts*) and the region of its credential scope the
//! region: exports are kept per account and region, and a call to any region but the
//! account's home region answers `HomeRegionNotSetException`. Without a home region every
//! call of that account answers that error.
//!
//! State machine: `START_IN_PROGRESS` becomes `ACTIVE` once the start delay has elapsed;
//! `STOP_IN_PROGRESS` becomes `INACTIVE` once the stop delay has elapsed. Transitions are
//! evaluated lazily on every read, with the delays configured *at that moment*, so raising a
//! delay holds in-flight exports in their transition and lowering it to zero releases them.
//! At most one export per account and region may be `START_IN_PROGRESS` or `ACTIVE`.
//!
//! # Accounts
//!
//! Every ADS, Migration Hub Config and STS call is in the account of the access key that
//! signed it, in strict and non-strict mode alike: credentials the emulated STS or Pod
//! Identity Agent issued are in their role's account (the `<account>` of
//! `arn:aws:iam::<account>:role/<name>`); a static key is in its `accountId` (else the
//! account of its `arn`, else the default one); an unsigned call or an unknown key (which
//! only non-strict mode accepts) is in the default account [`identity::ACCOUNT_ID`]
//! (`123456789012`). Each account has its own exports, home region (as ADS and Migration
//! Hub Config see it) and rate limit; export IDs are unique across accounts, so one
//! account's export ID is `ResourceNotFoundException` in another. STS
//! `GetCallerIdentity` answers the caller's account.
//!
//! Accounts need no registration: an account exists as soon as a role, a static key or an
//! admin call names it, and starts without a home region. `POST /_emulator/accounts`
//! registers one (so `GET /_emulator/accounts` lists it) and may set its home region.
//! Admin calls that take an optional `accountId` mean the default account without it, so
//! single-account use is unchanged.
//!
//! # Migration Hub Config
//!
//! The same port serves the home-region API (`X-Amz-Target:
//! AWSMigrationHubMultiAccountService.<Operation>`): `GetHomeRegion`,
//! `CreateHomeRegionControl` and `DescribeHomeRegionControls`, answering from the home
//! region ADS uses for the caller's account (see [`migrationhub_config`]). Faults name its
//! operations as they name ADS's, with its documented errors ([`migrationhub_config::DOCUMENTED_ERRORS`]); a fault
//! without `operation` applies to the calls of both APIs.
//!
//! # Faults
//!
//! A [`Fault`] is JSON like:
//!
//! ```json
//! {"operation": "StartContinuousExport", "error": "AuthorizationErrorException", "message": "optional", "count": 3}
//! {"http": 503}
//! {"throttling": true}
//! {"latencyMs": 2000}
//! {"operation": "StartContinuousExport", "http": 500, "afterEffect": true, "count": 1}
//! ```
//!
//! `operation` (omitted = every operation), `accountId` (omitted = every account; else the
//! fault applies only to calls in that account) and `count` (omitted = until cleared) are
//! optional; exactly one of `error` (a name from [`DOCUMENTED_ERRORS`]), `http` (status
//! 400..=599), `throttling` or `latencyMs` (milliseconds) is required. Latency faults delay
//! the answer: the call takes effect first (other faults, or normal handling), so a
//! client that gives up meanwhile leaves the effect behind, as with a lost AWS response; of the other
//! faults, the first matching one (in injection order) answers the call. Every fault applied
//! to a call uses up one of its `count`.
//!
//! An `error`, `http` or `throttling` fault answers *instead of* the call, which then has no
//! effect. With the optional `"afterEffect": true` (only allowed with those three; `false`
//! is the default) the call is executed normally first, its state change kept, and only
//! its answer is replaced by the fault's error: a Start answered HTTP 500 has still created
//! an export, as when AWS carries out a request but a 5xx hides it. If the call itself
//! fails (a `ConflictErrorException`, say), nothing changes and the fault's error is
//! answered all the same. The counters record the answer the client got (e.g. `http500`).
//!
//! # STS, Pod Identity and strict credentials mode
//!
//! The same port also serves, for the SDK's credential providers:
//!
//! - **STS** (query protocol, `POST /` with a form body `Action=...&Version=2011-06-15`;
//!   point the SDK at it with `AWS_ENDPOINT_URL_STS`): `AssumeRoleWithWebIdentity` verifies
//!   the web identity token (a JWT from a registered OIDC issuer, signature checked against
//!   the issuer's JWKS, `aud` = `sts.amazonaws.com`, `exp` in the future) and the role's
//!   trust policy (`sub` among the role's `serviceAccounts`). Errors as STS sends them:
//!   `InvalidIdentityToken` (not a JWT, unknown issuer, bad signature, wrong audience),
//!   `ExpiredTokenException`, `AccessDenied` (HTTP 403: unknown role or subject not
//!   trusted), `ValidationError`. `AssumeRole` authenticates the SigV4-signed caller
//!   (issued credentials or a static key; `InvalidClientTokenId`, `ExpiredToken`,
//!   `SignatureDoesNotMatch`) and checks the role's trust policy: the caller's ARN (a
//!   role ARN for issued credentials, a static key's `arn`) or its account's root
//!   `arn:aws:iam::<account>:root` among the role's `principals`, and, when the role has
//!   an `externalId`, the same `ExternalId` parameter (a role without one ignores it);
//!   otherwise `AccessDenied` (HTTP 403, `User: <caller> is not authorized to perform:
//!   sts:AssumeRole on resource: <role>`). Both check `RoleSessionName` (2 to 64
//!   characters of `[\w+=,.@-]`), `ExternalId` (2 to 1224 of `[\w+=,.@:/-]`) and
//!   `DurationSeconds` (900 to 43200) as STS does (`ValidationError` naming the member).
//!   The `AssumedRoleUser` is `arn:aws:sts::<role account>:assumed-role/<role>/<session>`.
//!   `GetCallerIdentity` answers the caller's account and ARN (in strict mode only for
//!   an authenticated caller).
//! - **EKS Pod Identity Agent** (`GET /v1/credentials`; `AWS_CONTAINER_CREDENTIALS_FULL_URI`):
//!   the `Authorization` header is a service-account token with audience
//!   `pods.eks.amazonaws.com`, verified the same way; the association of its
//!   ServiceAccount names the role. Answers the container-credentials JSON.
//!
//! Both issue temporary credentials (`ASIA...` key, secret, session token, expiry after
//! the configured lifetime: default 1 h, down to 1 s). In **strict credentials mode** an
//! ADS call is accepted only when signed (signature recomputed with `aws-sigv4`) with
//! issued, unexpired credentials and their `X-Amz-Security-Token`, or with a configured
//! static key: otherwise `ExpiredTokenException` (expired), `InvalidSignatureException`
//! (bad signature) or `AuthorizationErrorException` (unknown key, missing or foreign
//! session token). Off (the default), every signed call is accepted, as before. Either
//! way each ADS call is classed (`temporary`, `static`, `unverified`, `rejected:<why>`)
//! in `GET /_emulator/credentials`.
//!
//! All of it is configured by [`identity::IdentityConfig`] (the binary's
//! `--identity-config` file), [`Emulator::identity`] in-process, or the admin API below.
//!
//! # Admin API (`/_emulator/`, JSON, no auth)
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /_emulator/exports[?accountId=111111111111]` | | `[ExportView]` (`{"accountId","region","exportId","status","statusDetail","s3Bucket","startTimeMs","stopTimeMs"?}`, times in ms since the epoch, UTC), all accounts or one |
//! | `GET /_emulator/counters` | | [`Counters`] of all accounts, plus `byAccount` the same per account: `{"StartContinuousExport":{"ok":2,"ConflictErrorException":1},"byAccount":{"111111111111":{"StartContinuousExport":{"ok":2}}}}` (`byAccount` is no operation) |
//! | `GET /_emulator/faults` | | `[Fault]` still active, with their remaining `count` |
//! | `POST /_emulator/faults` | a Fault or an array of Faults (each may add `"accountId"`) | 201, `[Fault]` now active |
//! | `DELETE /_emulator/faults` | | `{"ok":true}` |
//! | `POST /_emulator/home-region` | `{"region":"us-west-2","accountId"?:"111111111111"}` or `{"region":null}` | `{"ok":true}` (ADS and Migration Hub Config alike; default account without `accountId`) |
//! | `GET /_emulator/accounts` | | [`AccountView`]s, sorted: `[{"accountId":"111111111111","homeRegion":"us-west-2"\|null,"exports":1}]` (the default account, registered ones, those of roles and static keys) |
//! | `POST /_emulator/accounts` | `{"accountId":"111111111111","homeRegion"?:"us-west-2"\|null}` | `{"ok":true}`; registers the account, sets (`null`: clears) its home region when given |
//! | `POST /_emulator/rate-limit` | `{"perSecond":2,"accountId"?:"111111111111"}` (`null` or omitted: off) | `{"ok":true}`; ADS calls above the rate answer `ThrottlingException`: all calls, or with `accountId` that account's (on top of the global limit) |
//! | `POST /_emulator/delays` | `{"startDelayMs":2000,"stopDelayMs":2000}` | `{"ok":true}` |
//! | `POST /_emulator/stop-sample-response` | `{"enabled":true}` | `{"ok":true}` |
//! | `POST /_emulator/exports/{id}/stop` | | `{"ok":true}`, 404 unknown, 409 not stoppable |
//! | `POST /_emulator/exports/{id}/error` | `{"statusDetail":"..."}` | `{"ok":true}`, 404 unknown |
//! | `POST /_emulator/exports/{id}/status` | `{"status":"START_FAILED","statusDetail"?:"..."}` | `{"ok":true}`, 404 unknown |
//! | `POST /_emulator/reset` | | `{"ok":true}` (exports, faults, counters, issued credentials and call classes cleared) |
//! | `GET /_emulator/credentials` | | `{"strict","lifetimeSeconds","issued":[IssuedView],"calls":{"temporary":3,...}}` (never secrets) |
//! | `POST /_emulator/credentials/strict` | `{"enabled":true}` | `{"ok":true}` |
//! | `POST /_emulator/credentials/lifetime` | `{"seconds":60}` | `{"ok":true}` (for credentials issued from now on) |
//! | `GET`/`POST /_emulator/roles` | [`identity::Role`]: `{"roleArn","serviceAccounts":["system:serviceaccount:ns:sa"],"principals":["arn:...","arn:aws:iam::111111111111:root"],"externalId"?:"..."}` | roles; POST creates or replaces the trust policy |
//! | `GET`/`POST /_emulator/oidc-providers` | `{"issuer":"https://...","jwks":{"keys":[...]}}` (kube-apiserver's `/openid/v1/jwks`) | issuers; POST registers or replaces the keys |
//! | `GET`/`POST /_emulator/pod-identity-associations` | `{"namespace","serviceAccount","roleArn"}` | associations; POST creates or replaces |
//! | `POST /_emulator/static-keys` | `{"accessKeyId","secretAccessKey","arn"?,"accountId"?}` | `{"ok":true}` (accepted in strict mode; calls signed with it are in `accountId`, default `123456789012`) |
//!
//! Account IDs are 12 digits. Bad input answers 400 `{"error":"..."}`, the message
//! naming the offending field. The `--identity-config` file takes the same `Role` and
//! `StaticKey` shapes (with `externalId`, `accountId`).

mod admin;
mod credentials;
mod fault;
pub mod identity;
mod identity_admin;
pub mod migrationhub_config;
pub mod oidc;
mod pod_identity;
mod protocol;
mod state;
pub mod sts;
mod sts_params;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::ads::{ExportStatus, Operation};
pub use fault::{DOCUMENTED_ERRORS, Fault, FaultKind, load_faults};
pub use protocol::{CONTENT_TYPE, TARGET_PREFIX, UNKNOWN_OPERATION};
pub use state::{AccountView, Counters, DATA_SOURCE, DATABASE_NAME, ExportView};

use state::{ControlError, State};

/// Start-up configuration of an [`Emulator`].
#[derive(Debug, Clone, Default)]
pub struct EmulatorConfig {
    /// Migration Hub home region of the default account ([`identity::ACCOUNT_ID`]);
    /// `None` makes every call in it answer `HomeRegionNotSetException`. Other accounts
    /// start without one.
    pub home_region: Option<String>,
    /// How long a new export stays `START_IN_PROGRESS` (zero: `ACTIVE` at once).
    pub start_delay: Duration,
    /// How long a stopping export stays `STOP_IN_PROGRESS` (zero: `INACTIVE` at once).
    pub stop_delay: Duration,
}

/// The emulator: shared state plus the HTTP routes serving it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Emulator {
    state: Arc<Mutex<State>>,
    identity: identity::Identity,
}

impl Emulator {
    /// A fresh emulator without exports, faults or counts.
    pub fn new(cfg: EmulatorConfig) -> Self {
        let state = State::new(cfg.home_region, cfg.start_delay, cfg.stop_delay);
        Emulator { state: Arc::new(Mutex::new(state)), identity: identity::Identity::default() }
    }

    /// A new emulator with its own exports, faults and counters but this one's IAM side
    /// (issued credentials, roles, OIDC providers, strict mode): e.g. to serve STS and
    /// ADS on separate ports and see which port each call reached.
    pub fn sharing_identity(&self, cfg: EmulatorConfig) -> Self {
        Emulator { identity: self.identity.clone(), ..Emulator::new(cfg) }
    }

    /// The IAM side: STS, Pod Identity, strict credentials mode (see the module docs).
    pub fn identity(&self) -> &identity::Identity {
        &self.identity
    }

    /// The wire protocol at `POST /` and the admin API under `/_emulator/`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", post(api))
            .route(pod_identity::PATH, get(pod_identity::handle))
            .nest("/_emulator", admin::routes())
            .with_state(self.clone())
    }

    /// Binds `listen` (e.g. `"127.0.0.1:0"`) and serves [`Self::router`] in a tokio task.
    pub async fn spawn(self, listen: &str) -> std::io::Result<RunningEmulator> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(async {
            // Fires on an explicit shutdown and when the sender is dropped.
            let _ = rx.await;
        });
        let task = tokio::spawn(async move { server.await });
        tracing::info!(%addr, "ads-emulator serving");
        Ok(RunningEmulator { addr, emulator: self, shutdown: Some(tx), task: Some(task) })
    }

    /// Adds a fault (after the ones already active).
    pub fn inject_fault(&self, fault: Fault) {
        self.with_state(|s| s.faults.push(fault));
    }

    /// The faults still active, with their remaining counts.
    pub fn faults(&self) -> Vec<Fault> {
        self.with_state(|s| s.faults.clone())
    }

    /// Removes all faults.
    pub fn clear_faults(&self) {
        self.with_state(|s| s.faults.clear());
    }

    /// Sets or clears the Migration Hub home region of the default account
    /// ([`identity::ACCOUNT_ID`]); see [`Self::set_account_home_region`].
    pub fn set_home_region(&self, region: Option<String>) {
        self.set_account_home_region(identity::ACCOUNT_ID, region);
    }

    /// Sets or clears `account`'s Migration Hub home region, for ADS and Migration Hub
    /// Config alike: a new region gets a new home region control (a new `ControlId` and
    /// `RequestedTime`); setting the region it already has keeps the control.
    pub fn set_account_home_region(&self, account: &str, region: Option<String>) {
        self.with_state(|s| s.set_home_region(account, region));
    }

    /// The Migration Hub home region of the default account, if set.
    pub fn home_region(&self) -> Option<String> {
        self.account_home_region(identity::ACCOUNT_ID)
    }

    /// The Migration Hub home region of `account`, if set.
    pub fn account_home_region(&self, account: &str) -> Option<String> {
        self.with_state(|s| s.home_region(account).map(|c| c.home_region.clone()))
    }

    /// Registers `account` (12 digits, see [`identity::is_account_id`]), so that
    /// [`Self::accounts`] lists it. Optional: every account exists implicitly, without a
    /// home region, and calls in it need only credentials of that account.
    pub fn create_account(&self, account: &str) {
        self.with_state(|s| s.create_account(account));
    }

    /// The known accounts, sorted: the default one, those registered or holding state,
    /// and those named by roles and static keys.
    pub fn accounts(&self) -> Vec<AccountView> {
        let mut named = self.identity.accounts();
        named.insert(identity::ACCOUNT_ID.to_owned());
        self.with_state(|s| s.accounts(named))
    }

    /// Sets the start and stop delays; they also apply to exports already in transition.
    pub fn set_delays(&self, start: Duration, stop: Duration) {
        self.with_state(|s| {
            s.settle(Instant::now());
            s.start_delay = start;
            s.stop_delay = stop;
        });
    }

    /// Rate-limit mode: above `per_second` calls per second (a burst of as many) every
    /// call answers `ThrottlingException` (HTTP 400) without effect, as ADS does when a
    /// client exceeds its limit; `None` (or a value that is not positive) turns it off.
    pub fn set_rate_limit(&self, per_second: Option<f64>) {
        let limit = per_second.filter(|r| r.is_finite() && *r > 0.0);
        self.with_state(|s| s.rate_limit = limit.map(|r| state::RateLimit::new(r, Instant::now())));
    }

    /// Rate-limit mode of one account, as [`Self::set_rate_limit`] but only for the
    /// ADS calls in `account` (on top of the global limit); `None` turns it off.
    pub fn set_account_rate_limit(&self, account: &str, per_second: Option<f64>) {
        let limit = per_second.filter(|r| r.is_finite() && *r > 0.0);
        self.with_state(|s| match limit {
            Some(r) => s.account_rate_limits.insert(account.to_owned(), state::RateLimit::new(r, Instant::now())),
            None => s.account_rate_limits.remove(account),
        });
    }

    /// When on, `StopContinuousExport` answers `{}` (the documented sample response, without
    /// `startTime`/`stopTime`) while still stopping the export.
    pub fn set_stop_sample_response(&self, on: bool) {
        self.with_state(|s| s.stop_sample_response = on);
    }

    /// Stops an export as the console would: `ACTIVE`/`ERROR` -> `STOP_IN_PROGRESS`
    /// (then `INACTIVE` after the stop delay). Fails for unknown or unstoppable exports.
    pub fn stop_out_of_band(&self, export_id: &str) -> Result<(), String> {
        self.control(|s, now| s.stop_out_of_band(export_id, now)).map_err(|e| e.to_string())
    }

    /// Puts an export into `ERROR` with this `statusDetail`.
    pub fn set_error(&self, export_id: &str, detail: &str) -> Result<(), String> {
        self.set_status(export_id, ExportStatus::Error, Some(detail))
    }

    /// Forces any status (e.g. `START_FAILED`), with `detail` or the status's usual detail.
    /// Forcing a `*_IN_PROGRESS` status restarts its delay.
    pub fn set_status(&self, export_id: &str, status: ExportStatus, detail: Option<&str>) -> Result<(), String> {
        self.control(|s, now| s.force_status(export_id, status, detail, now)).map_err(|e| e.to_string())
    }

    /// All exports of all accounts and regions, oldest first, with their current status.
    pub fn exports(&self) -> Vec<ExportView> {
        self.with_state(|s| s.views(Instant::now()))
    }

    /// Calls per operation and outcome.
    pub fn counters(&self) -> Counters {
        self.with_state(|s| s.counters.clone())
    }

    /// Calls per operation and outcome of one account (the account of each call's
    /// credentials); empty for an account without calls.
    pub fn account_counters(&self, account: &str) -> Counters {
        self.with_state(|s| s.by_account.get(account).cloned().unwrap_or_default())
    }

    /// [`Self::account_counters`] of every account that had calls.
    pub fn counters_by_account(&self) -> BTreeMap<String, Counters> {
        self.with_state(|s| s.by_account.clone())
    }

    /// Total calls of `operation` (e.g. `"StartContinuousExport"`), whatever the outcome.
    pub fn calls(&self, operation: &str) -> u64 {
        self.with_state(|s| s.counters.total(operation))
    }

    /// The distinct client identities that called (each request's `x-amz-user-agent`,
    /// where the AWS SDK puts the app name as `app/<name>`, else its `User-Agent`),
    /// sorted; cleared by [`Self::reset`].
    pub fn user_agents(&self) -> Vec<String> {
        self.with_state(|s| s.user_agents.iter().cloned().collect())
    }

    /// Clears exports, faults and counters; keeps home region, delays and response mode.
    pub fn reset(&self) {
        self.with_state(State::reset);
        self.identity.reset();
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to an emulator; keep serving.
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    pub(crate) fn control(
        &self,
        f: impl FnOnce(&mut State, Instant) -> Result<(), ControlError>,
    ) -> Result<(), ControlError> {
        self.with_state(|s| f(s, Instant::now()))
    }
}

/// `POST /`: an STS query call (form body) or an ADS awsJson1.1 call.
async fn api(Extract(emulator): Extract<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    if sts::is_query_request(&headers) {
        sts::handle(emulator, headers, body).await
    } else {
        wire::handle(Extract(emulator), headers, body).await
    }
}

/// A served emulator. Dropping it (or calling [`Self::shutdown`]) stops the server.
#[derive(Debug)]
pub struct RunningEmulator {
    /// The bound address (the real port when `:0` was asked for).
    pub addr: SocketAddr,
    /// The emulator being served, for direct control.
    pub emulator: Emulator,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningEmulator {
    /// The URL to give the SDK as `endpoint_url`, e.g. `"http://127.0.0.1:40123"`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits for in-flight requests to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
