//! The emulator's IAM side: OpenID Connect providers, roles with their trust policies,
//! EKS Pod Identity associations, static access keys, and the temporary credentials
//! the emulated STS and Pod Identity Agent issue, with how ADS calls used them.
//!
//! The JSON shapes (admin API and `--identity-config` file) are documented in
//! [`crate::emulator`]; the wire protocols live in `sts.rs`, `pod_identity.rs` and
//! `credentials.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

use super::oidc::OidcProviders;

/// The default account: the account of a request whose credentials name no other
/// (an unknown access key in non-strict mode, a static key without `accountId`), and of
/// every admin call that omits `accountId`.
pub const ACCOUNT_ID: &str = "123456789012";

/// Whether `s` is an AWS account ID: exactly 12 ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Checks the JSON field `field` holds an account ID; the error names the field.
pub fn check_account_id(field: &str, s: &str) -> Result<(), String> {
    if is_account_id(s) {
        Ok(())
    } else {
        Err(format!("field `{field}`: {s:?} is not an AWS account ID (12 digits, e.g. \"111111111111\")"))
    }
}

/// The account of an IAM or STS ARN, `arn:aws:<iam|sts>::<account>:<resource>`.
pub fn arn_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:iam::").or_else(|| arn.strip_prefix("arn:aws:sts::"))?;
    let (account, resource) = rest.split_once(':')?;
    (is_account_id(account) && !resource.is_empty()).then_some(account)
}

/// The principal that stands for every identity of `account` in a trust policy, as IAM
/// writes it: `arn:aws:iam::<account>:root`.
pub fn account_root(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// Default lifetime of issued credentials (STS's default `DurationSeconds`, 1 hour).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A role's trust policy, reduced to who may assume it.
///
/// JSON: `{"roleArn": "arn:aws:iam::123456789012:role/ads", "serviceAccounts":
/// ["system:serviceaccount:ads-system:ads-export-operator"], "principals":
/// ["arn:aws:iam::123456789012:role/other", "arn:aws:iam::111111111111:root"],
/// "externalId"?: "tenant-42"}`; both lists default to empty.
///
/// The role is in the account of its ARN; that account needs no registration (see
/// `POST /_emulator/accounts` in [`crate::emulator`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// Subjects (`sub` claims) allowed to call `AssumeRoleWithWebIdentity`, as an IRSA
    /// trust policy's `<issuer>:sub` condition names them.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// Caller ARNs allowed to call `AssumeRole` (a role ARN for credentials issued for
    /// that role, a static key's `arn`).
    /// The trust policy's `AWSPrincipal` list: an entry `arn:aws:iam::<account>:root`
    /// trusts every caller of that account, as in IAM.
    #[serde(default)]
    pub principals: Vec<String>,
    /// The trust policy's `sts:ExternalId` condition: when set, `AssumeRole` must carry
    /// this `ExternalId` (else `AccessDenied`); when `None`, an `ExternalId` sent is
    /// ignored, as AWS does. 2 to 1224 characters of `[\w+=,.@:/-]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl Role {
    /// The account the role is in (that of its ARN; the default account for an ARN
    /// [`Self::validate`] would refuse).
    pub fn account(&self) -> &str {
        arn_account(&self.role_arn).unwrap_or(ACCOUNT_ID)
    }

    /// Whether the trust policy lets `caller_arn`, a caller of `caller_account`, call
    /// `AssumeRole`: the caller's ARN or its account's root is among the principals.
    pub fn trusts(&self, caller_arn: &str, caller_account: &str) -> bool {
        let root = account_root(caller_account);
        self.principals.iter().any(|p| p == caller_arn || *p == root)
    }

    /// Checks the ARN, the subjects and the external ID; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        role_name(&self.role_arn).ok_or_else(|| {
            format!(
                "field `roleArn`: {:?} is not a role ARN such as arn:aws:iam::123456789012:role/name",
                self.role_arn
            )
        })?;
        if let Some(bad) = self.service_accounts.iter().find(|s| !is_service_account_subject(s)) {
            return Err(format!(
                "field `serviceAccounts`: {bad:?} is not a subject such as system:serviceaccount:<namespace>:<name>"
            ));
        }
        match &self.external_id {
            Some(id) if !is_external_id(id) => {
                Err(format!("field `externalId`: {id:?} must be 2 to 1224 characters of letters, digits and +=,.@:/-_"))
            }
            _ => Ok(()),
        }
    }
}

/// Whether `id` satisfies STS's `ExternalId` constraints: length 2 to 1224, pattern
/// `[\w+=,.@:\/-]*` (AWS STS API reference, `AssumeRole`).
pub fn is_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.chars().count()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

/// An EKS Pod Identity association: the role a ServiceAccount's pods get.
///
/// JSON: `{"namespace": "ads-system", "serviceAccount": "ads-export-operator", "roleArn": "arn:..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentityAssociation {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// Name of the ServiceAccount.
    pub service_account: String,
    /// The role to issue credentials for.
    pub role_arn: String,
}

/// A long-term access key the emulator accepts in strict mode.
///
/// JSON: `{"accessKeyId": "AKIDTEST", "secretAccessKey": "test-secret", "arn"?: "arn:...",
/// "accountId"?: "111111111111"}`. The key's account is `accountId`, else the account of
/// `arn`, else the default account [`ACCOUNT_ID`]; `arn` defaults to
/// `arn:aws:iam::<account>:user/<accessKeyId>`. Calls signed with it (strict mode or
/// not) are in its account.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StaticKey {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key (used to verify signatures).
    pub secret_access_key: String,
    /// The caller's ARN, as `AssumeRole` trust policies name it.
    #[serde(default)]
    pub arn: Option<String>,
    /// The account the key belongs to (12 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl StaticKey {
    /// The account of this key: `accountId`, else that of `arn`, else [`ACCOUNT_ID`].
    pub fn account(&self) -> &str {
        self.account_id.as_deref().or_else(|| self.arn.as_deref().and_then(arn_account)).unwrap_or(ACCOUNT_ID)
    }

    /// The caller ARN of this key.
    pub fn caller_arn(&self) -> String {
        self.arn.clone().unwrap_or_else(|| format!("arn:aws:iam::{}:user/{}", self.account(), self.access_key_id))
    }

    /// Checks `accessKeyId` is not empty, `accountId` is an account ID and, with both
    /// `accountId` and `arn`, that the ARN is in that account; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.access_key_id.is_empty() {
            return Err("field `accessKeyId`: must not be empty".into());
        }
        let Some(account) = &self.account_id else { return Ok(()) };
        check_account_id("accountId", account)?;
        match self.arn.as_deref().and_then(arn_account) {
            Some(other) if other != account => {
                Err(format!("field `arn`: {other} is not the key's account (`accountId` {account})"))
            }
            _ => Ok(()),
        }
    }
}

/// An OpenID Connect provider to register: issuer URL and its JWKS (inline or a file).
///
/// JSON: `{"issuer": "https://kubernetes.default.svc.cluster.local", "jwks": {"keys": [...]}}`
/// or `{"issuer": "...", "jwksFile": "/path/jwks.json"}` (file only in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProviderSpec {
    /// `iss` of the tokens, e.g. `https://kubernetes.default.svc.cluster.local`.
    pub issuer: String,
    /// The key set, as `/openid/v1/jwks` answers it.
    #[serde(default)]
    pub jwks: Option<JwkSet>,
    /// A file holding the key set.
    #[serde(default)]
    pub jwks_file: Option<String>,
}

/// The `--identity-config` file: everything at once.
///
/// JSON: `{"strict": true, "credentialsLifetimeSeconds": 60, "oidcProviders": [OidcProviderSpec],
/// "roles": [Role], "podIdentityAssociations": [PodIdentityAssociation], "staticKeys": [StaticKey]}`,
/// every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConfig {
    /// Strict credentials mode for ADS calls.
    #[serde(default)]
    pub strict: bool,
    /// Lifetime of issued credentials in seconds (default 3600).
    #[serde(default)]
    pub credentials_lifetime_seconds: Option<u64>,
    /// OpenID Connect providers.
    #[serde(default)]
    pub oidc_providers: Vec<OidcProviderSpec>,
    /// Roles and their trust policies.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Pod Identity associations.
    #[serde(default)]
    pub pod_identity_associations: Vec<PodIdentityAssociation>,
    /// Long-term keys accepted in strict mode.
    #[serde(default)]
    pub static_keys: Vec<StaticKey>,
}

impl IdentityConfig {
    /// Reads and checks the file; the error names the file, the field and the fix.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("identity config {}: {e}", path.display()))?;
        let mut cfg: IdentityConfig =
            serde_json::from_str(&text).map_err(|e| format!("identity config {}: {e}", path.display()))?;
        for p in &mut cfg.oidc_providers {
            if let Some(file) = p.jwks_file.take() {
                p.jwks =
                    Some(load_jwks(Path::new(&file)).map_err(|e| format!("identity config {}: {e}", path.display()))?);
            }
        }
        cfg.validate().map_err(|e| format!("identity config {}: {e}", path.display()))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        for p in &self.oidc_providers {
            if p.jwks.is_none() {
                return Err(format!("oidcProviders[{}]: one of `jwks` or `jwksFile` is required", p.issuer));
            }
        }
        for r in &self.roles {
            r.validate()?;
        }
        for (i, k) in self.static_keys.iter().enumerate() {
            k.validate().map_err(|e| format!("staticKeys[{i}]: {e}"))?;
        }
        if self.credentials_lifetime_seconds == Some(0) {
            return Err("field `credentialsLifetimeSeconds`: must be at least 1".into());
        }
        Ok(())
    }
}

/// Reads a JWKS document (`{"keys": [...]}`) from `path`.
pub fn load_jwks(path: &Path) -> Result<JwkSet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("jwks file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!("jwks file {}: {e} (expected the JSON of /openid/v1/jwks: {{\"keys\": [...]}})", path.display())
    })
}

/// How temporary credentials were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialSource {
    /// STS `AssumeRoleWithWebIdentity` (IRSA).
    AssumeRoleWithWebIdentity,
    /// STS `AssumeRole`.
    AssumeRole,
    /// The EKS Pod Identity Agent endpoint.
    PodIdentity,
}

/// Temporary credentials the emulator issued.
#[derive(Clone)]
pub struct Issued {
    /// `ASIA...` access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token (sent by the client as `X-Amz-Security-Token`).
    pub session_token: String,
    /// The role they act as.
    pub role_arn: String,
    /// The role's account: the account of every call signed with them.
    pub account_id: String,
    /// `arn:aws:sts::<account>:assumed-role/<role name>/<session name>`.
    pub assumed_role_arn: String,
    /// Issue time.
    pub issued_at: SystemTime,
    /// Expiry time (whole seconds).
    pub expires_at: SystemTime,
    /// How they were obtained.
    pub source: CredentialSource,
    /// The token subject (web identity, Pod Identity) or caller ARN (`AssumeRole`).
    pub subject: String,
    usage: Usage,
}

#[derive(Clone, Default)]
struct Usage {
    calls: u64,
    last_used: Option<SystemTime>,
    min_remaining: Option<Duration>,
}

/// What the admin API shows of issued credentials: never the secret or the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedView {
    /// Access key ID.
    pub access_key_id: String,
    /// Role ARN.
    pub role_arn: String,
    /// How they were obtained.
    pub source: CredentialSource,
    /// Token subject or caller ARN.
    pub subject: String,
    /// Issue time, ms since the epoch (UTC).
    pub issued_at_ms: u64,
    /// Expiry, ms since the epoch (UTC).
    pub expires_at_ms: u64,
    /// ADS calls accepted with them.
    pub calls: u64,
    /// Last accepted ADS call, ms since the epoch (UTC).
    pub last_used_ms: Option<u64>,
    /// Shortest remaining lifetime at an accepted ADS call, in ms: how close to expiry
    /// the client used them.
    pub min_remaining_ms: Option<u64>,
}

/// How ADS calls were signed: counts per class, e.g.
/// `{"temporary": 12, "static": 0, "unverified": 0, "rejected:expired": 1}`.
///
/// Classes: `temporary` (issued credentials, valid), `static` (a configured static key),
/// `unverified` (strict mode off and the key unknown: accepted unchecked), and
/// `rejected:<why>` with why one of `unknownKey`, `expired`, `tokenMismatch`,
/// `badSignature`, `unsigned`.
pub type CallClasses = BTreeMap<String, u64>;

/// The shared IAM state.
#[derive(Default)]
pub(crate) struct IdentityState {
    pub strict: bool,
    pub lifetime: Option<Duration>,
    pub oidc: OidcProviders,
    pub roles: BTreeMap<String, Role>,
    pub associations: BTreeMap<(String, String), String>,
    pub static_keys: BTreeMap<String, StaticKey>,
    pub issued: BTreeMap<String, Issued>,
    pub calls: CallClasses,
}

/// Handle on the IAM state; cheap to clone.
#[derive(Clone, Default)]
pub struct Identity {
    state: Arc<Mutex<IdentityState>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut IdentityState) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Applies a whole [`IdentityConfig`] (adds to what is there).
    pub fn configure(&self, cfg: IdentityConfig) {
        self.set_strict(cfg.strict);
        if let Some(secs) = cfg.credentials_lifetime_seconds {
            self.set_lifetime(Duration::from_secs(secs));
        }
        for p in cfg.oidc_providers {
            if let Some(jwks) = p.jwks {
                self.set_oidc_provider(p.issuer, jwks);
            }
        }
        for r in cfg.roles {
            self.set_role(r);
        }
        for a in cfg.pod_identity_associations {
            self.set_association(a);
        }
        for k in cfg.static_keys {
            self.add_static_key(k);
        }
    }

    /// Strict credentials mode on or off (see [`crate::emulator`]).
    pub fn set_strict(&self, on: bool) {
        self.with(|s| s.strict = on);
    }

    /// Lifetime of credentials issued from now on (at least one second).
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.with(|s| s.lifetime = Some(lifetime.max(Duration::from_secs(1))));
    }

    /// Registers an OpenID Connect provider (replacing its keys if known).
    pub fn set_oidc_provider(&self, issuer: String, jwks: JwkSet) {
        self.with(|s| s.oidc.set(issuer, jwks));
    }

    /// Creates a role or replaces its trust policy.
    pub fn set_role(&self, role: Role) {
        self.with(|s| s.roles.insert(role.role_arn.clone(), role));
    }

    /// Creates or replaces the Pod Identity association of a ServiceAccount.
    pub fn set_association(&self, a: PodIdentityAssociation) {
        self.with(|s| s.associations.insert((a.namespace, a.service_account), a.role_arn));
    }

    /// Accepts this long-term key in strict mode.
    pub fn add_static_key(&self, key: StaticKey) {
        self.with(|s| s.static_keys.insert(key.access_key_id.clone(), key));
    }

    /// Issued credentials, oldest first, without secrets.
    pub fn issued(&self) -> Vec<IssuedView> {
        self.with(|s| {
            let mut all: Vec<IssuedView> = s.issued.values().map(Issued::view).collect();
            all.sort_by_key(|v| (v.issued_at_ms, v.access_key_id.clone()));
            all
        })
    }

    /// The secret access keys and session tokens of all issued credentials, for tests
    /// that check none of them leaks into logs or events.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.with(|s| s.issued.values().flat_map(|i| [i.secret_access_key.clone(), i.session_token.clone()]).collect())
    }

    /// How ADS calls were signed (see [`CallClasses`]).
    pub fn call_classes(&self) -> CallClasses {
        self.with(|s| s.calls.clone())
    }

    /// The accounts named by roles and static keys (besides [`ACCOUNT_ID`]), sorted.
    pub fn accounts(&self) -> std::collections::BTreeSet<String> {
        self.with(|s| {
            let roles = s.roles.values().map(|r| r.account().to_owned());
            roles.chain(s.static_keys.values().map(|k| k.account().to_owned())).collect()
        })
    }

    /// Forgets issued credentials and call classes; keeps configuration.
    pub fn reset(&self) {
        self.with(|s| {
            s.issued.clear();
            s.calls.clear();
        });
    }
}

impl IdentityState {
    /// Issues credentials for `role_arn`, valid for the configured lifetime capped at
    /// `max` (an `AssumeRole` `DurationSeconds`).
    pub fn issue(
        &mut self,
        role_arn: &str,
        session_name: &str,
        source: CredentialSource,
        subject: &str,
        max: Option<Duration>,
    ) -> Issued {
        let lifetime = self.lifetime.unwrap_or(DEFAULT_LIFETIME).min(max.unwrap_or(Duration::MAX));
        let now = SystemTime::now();
        // Whole seconds, as STS's `Expiration` is written.
        let expires_at =
            UNIX_EPOCH + Duration::from_secs((now + lifetime).duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
        let account_id = arn_account(role_arn).unwrap_or(ACCOUNT_ID).to_owned();
        let issued = Issued {
            access_key_id: format!("ASIA{}", &random_hex()[..16]).to_uppercase(),
            secret_access_key: format!("{}{}", random_hex(), &random_hex()[..8]),
            session_token: format!("IQoJb3JpZ2luX2VjE{}{}{}", random_hex(), random_hex(), random_hex()),
            role_arn: role_arn.to_owned(),
            assumed_role_arn: format!(
                "arn:aws:sts::{account_id}:assumed-role/{}/{session_name}",
                role_name(role_arn).unwrap_or("role")
            ),
            account_id,
            issued_at: now,
            expires_at,
            source,
            subject: subject.to_owned(),
            usage: Usage::default(),
        };
        self.issued.insert(issued.access_key_id.clone(), issued.clone());
        issued
    }

    /// The account of access key `akid`: its role's for issued credentials (even
    /// expired ones), its own for a static key; `None` for a key the emulator does not know.
    pub fn account_of_key(&self, akid: &str) -> Option<&str> {
        match self.issued.get(akid) {
            Some(issued) => Some(&issued.account_id),
            None => self.static_keys.get(akid).map(StaticKey::account),
        }
    }

    /// Records an accepted ADS call signed with issued key `akid` at `now`.
    pub fn record_use(&mut self, akid: &str, now: SystemTime) {
        if let Some(i) = self.issued.get_mut(akid) {
            let remaining = i.expires_at.duration_since(now).unwrap_or_default();
            i.usage.calls += 1;
            i.usage.last_used = Some(now);
            i.usage.min_remaining = Some(i.usage.min_remaining.map_or(remaining, |m| m.min(remaining)));
        }
    }

    /// Counts one ADS call in `class`.
    pub fn count(&mut self, class: &str) {
        *self.calls.entry(class.to_owned()).or_default() += 1;
    }
}

impl Issued {
    fn view(&self) -> IssuedView {
        IssuedView {
            access_key_id: self.access_key_id.clone(),
            role_arn: self.role_arn.clone(),
            source: self.source,
            subject: self.subject.clone(),
            issued_at_ms: epoch_ms(self.issued_at),
            expires_at_ms: epoch_ms(self.expires_at),
            calls: self.usage.calls,
            last_used_ms: self.usage.last_used.map(epoch_ms),
            min_remaining_ms: self.usage.min_remaining.map(|d| d.as_millis() as u64),
        }
    }
}

/// Milliseconds since the epoch (UTC).
pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// The name of `arn:aws:iam::<account>:role/<path/><name>`.
pub fn role_name(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty()).then_some(name)
}

fn is_service_account_subject(s: &str) -> bool {
    s.strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
        .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
}

fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns() {
        assert_eq!(role_name("arn:aws:iam::123456789012:role/ads"), Some("ads"));
        assert_eq!(role_name("arn:aws:iam::123456789012:role/path/to/ads"), Some("ads"));
        for bad in [
            "",
            "ads",
            "arn:aws:iam::12:role/ads",
            "arn:aws:iam::123456789012:user/ads",
            "arn:aws:iam::123456789012:role/",
        ] {
            assert_eq!(role_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn issued_credentials_expire_after_the_lifetime_and_track_use() {
        let mut s = IdentityState { lifetime: Some(Duration::from_secs(30)), ..IdentityState::default() };
        let i = s.issue("arn:aws:iam::123456789012:role/ads", "sess", CredentialSource::AssumeRole, "me", None);
        assert!(i.access_key_id.starts_with("ASIA") && i.access_key_id.len() == 20, "{}", i.access_key_id);
        assert_eq!(i.secret_access_key.len(), 40);
        let life = i.expires_at.duration_since(i.issued_at).unwrap();
        assert!(life <= Duration::from_secs(30) && life > Duration::from_secs(28), "{life:?}");
        assert_eq!(i.assumed_role_arn, "arn:aws:sts::123456789012:assumed-role/ads/sess");
        s.record_use(&i.access_key_id, i.issued_at);
        let v = s.issued[&i.access_key_id].view();
        assert_eq!(v.calls, 1);
        assert_eq!(v.min_remaining_ms, Some(life.as_millis() as u64));
        // AssumeRole's DurationSeconds caps the lifetime.
        let j = s.issue(
            "arn:aws:iam::123456789012:role/ads",
            "s",
            CredentialSource::AssumeRole,
            "me",
            Some(Duration::from_secs(5)),
        );
        assert!(j.expires_at.duration_since(j.issued_at).unwrap() <= Duration::from_secs(5));
    }

    #[test]
    fn bad_roles_name_the_field() {
        let role =
            |arn: &str, sa: &str| Role { role_arn: arn.into(), service_accounts: vec![sa.into()], ..Role::default() };
        assert!(role("arn:aws:iam::123456789012:role/a", "system:serviceaccount:ns:sa").validate().is_ok());
        assert!(role("nope", "system:serviceaccount:ns:sa").validate().unwrap_err().contains("`roleArn`"));
        assert!(
            role("arn:aws:iam::123456789012:role/a", "ns:sa").validate().unwrap_err().contains("`serviceAccounts`")
        );
    }

    #[test]
    fn accounts_of_arns() {
        assert_eq!(arn_account("arn:aws:iam::111111111111:role/a"), Some("111111111111"));
        assert_eq!(arn_account("arn:aws:sts::222222222222:assumed-role/a/s"), Some("222222222222"));
        assert_eq!(arn_account("arn:aws:iam::333333333333:root"), Some("333333333333"));
        for bad in ["", "arn:aws:iam::1111:role/a", "arn:aws:s3:::bucket", "arn:aws:iam::111111111111:", "x"] {
            assert_eq!(arn_account(bad), None, "{bad:?}");
        }
        assert!(is_account_id("000000000000") && !is_account_id("12345678901a") && !is_account_id("1234567890123"));
        assert!(check_account_id("accountId", "12").unwrap_err().contains("field `accountId`"));
    }

    #[test]
    fn static_keys_carry_their_account() {
        let key = |account: Option<&str>, arn: Option<&str>| StaticKey {
            access_key_id: "AKIDA".into(),
            secret_access_key: "s".into(),
            arn: arn.map(str::to_owned),
            account_id: account.map(str::to_owned),
        };
        assert_eq!(key(None, None).account(), ACCOUNT_ID);
        assert_eq!(key(None, None).caller_arn(), "arn:aws:iam::123456789012:user/AKIDA");
        let a = key(Some("111111111111"), None);
        assert_eq!((a.account(), a.caller_arn().as_str()), ("111111111111", "arn:aws:iam::111111111111:user/AKIDA"));
        assert_eq!(key(None, Some("arn:aws:iam::222222222222:user/bob")).account(), "222222222222");
        assert!(a.validate().is_ok());
        let mismatch = key(Some("111111111111"), Some("arn:aws:iam::222222222222:user/bob")).validate();
        assert!(mismatch.unwrap_err().contains("field `arn`"));
        assert!(key(Some("1111"), None).validate().unwrap_err().contains("field `accountId`"));
    }

    #[test]
    fn trust_policies_name_callers_or_their_account_root() {
        let role = Role {
            role_arn: "arn:aws:iam::111111111111:role/ads".into(),
            principals: vec!["arn:aws:iam::123456789012:user/ops".into(), "arn:aws:iam::222222222222:root".into()],
            ..Role::default()
        };
        assert_eq!(role.account(), "111111111111");
        assert!(role.trusts("arn:aws:iam::123456789012:user/ops", "123456789012"));
        assert!(!role.trusts("arn:aws:iam::123456789012:user/other", "123456789012"));
        assert!(role.trusts("arn:aws:iam::222222222222:role/anyone", "222222222222"));
        let with_id = |id: &str| Role { external_id: Some(id.into()), ..role.clone() };
        assert!(with_id("tenant-42:a/b").validate().is_ok());
        for bad in ["x", "has space", &"x".repeat(1225)] {
            assert!(with_id(bad).validate().unwrap_err().contains("field `externalId`"), "{bad:?}");
        }
    }

    #[test]
    fn issued_credentials_are_in_their_roles_account() {
        let mut s = IdentityState::default();
        let i = s.issue("arn:aws:iam::111111111111:role/ads", "sess", CredentialSource::AssumeRole, "me", None);
        assert_eq!(i.assumed_role_arn, "arn:aws:sts::111111111111:assumed-role/ads/sess");
        assert_eq!(s.account_of_key(&i.access_key_id), Some("111111111111"));
        s.static_keys.insert(
            "AKIDB".into(),
            StaticKey {
                access_key_id: "AKIDB".into(),
                account_id: Some("222222222222".into()),
                ..StaticKey::default()
            },
        );
        assert_eq!(s.account_of_key("AKIDB"), Some("222222222222"));
        assert_eq!(s.account_of_key("AKIDNOPE"), None);
    }
}
