//! Which AWS account a `ContinuousExport`'s calls use (docs/architecture.md,
//! "Accounts"): without `spec.accountRef` the operator's own identity, with it the
//! `ExportAccount` of that name, when it exists and allows the object's namespace.
//!
//! [`Accounts`] holds the watch caches of `ExportAccount`s and Namespaces (metadata
//! only) and the registry of connected accounts: one service per `ExportAccount` name,
//! made by a [`Connector`] and made anew when the role, external ID or session name
//! changes. [`Accounts::bind`] is a pass's answer: a [`Binding`] (scope, service, home
//! region, the account's region) or a [`Refusal`] (no AWS call is made then).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use super::placement::{OWN_SCOPE, RegionInputs, region_order};
use crate::ads::home_region::HomeRegionCache;
use crate::api::{ContinuousExport, ExportAccount, ExportAccountSpec, NotAllowed};

/// What a [`Connector`] makes for one account.
pub struct Connection<S> {
    /// The account's ADS service (its own credentials, rate limits, shared listing).
    pub ads: S,
    /// The account's Migration Hub home region (`None`: never looked up).
    pub home_region: Option<Arc<HomeRegionCache>>,
}

/// Makes an account's services from its spec; the operator's is
/// `operator::AccountConnector` (STS `AssumeRole`), the unit tests' a fake.
pub trait Connector<S>: Send + Sync + 'static {
    /// The services of the account `name` (`spec`). Makes no AWS call: credentials are
    /// assumed by the first call that needs them.
    fn connect<'a>(&'a self, name: &'a str, spec: &'a ExportAccountSpec) -> BoxFuture<'a, Connection<S>>;
}

/// The fields of an account's spec its connection is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    role_arn: String,
    external_id: Option<String>,
    session_name: String,
}

impl Identity {
    fn of(spec: &ExportAccountSpec) -> Self {
        Self {
            role_arn: spec.role_arn.clone(),
            external_id: spec.external_id.clone(),
            session_name: spec.session_name_or_default().to_owned(),
        }
    }
}

/// One connected account in the registry.
struct Connected<S> {
    identity: Identity,
    connection: Arc<Connection<S>>,
}

/// Why an object cannot use the account it names (no AWS call is made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The watch caches of `ExportAccount`s and Namespaces have not had their first
    /// list yet: nothing can be said (the pass waits; a deletion must not release an
    /// object whose account is merely not seen yet).
    NotSynced,
    /// No `ExportAccount` of that name (reason `AccountNotFound`).
    NotFound {
        /// `spec.accountRef.name`.
        account: String,
    },
    /// The account does not allow the object's namespace (reason `AccountNotAllowed`).
    NotAllowed {
        /// `spec.accountRef.name`.
        account: String,
        /// The object's namespace.
        namespace: String,
        /// Not granted, or an unreadable `namespaceSelector`.
        why: NotAllowed,
    },
}

/// The account a pass uses.
pub struct Binding<S> {
    /// The scope of the start gate and claims: [`OWN_SCOPE`], or the account's AWS
    /// account ID (from `spec.roleArn`).
    pub scope: String,
    /// The `ExportAccount` (`None`: the operator's own identity).
    pub account: Option<BoundAccount<S>>,
}

/// An `ExportAccount` a pass uses.
pub struct BoundAccount<S> {
    /// Its name.
    pub name: String,
    /// Its `spec.roleArn`.
    pub role_arn: String,
    /// Its `spec.region`.
    pub region: Option<String>,
    /// Its services.
    pub connection: Arc<Connection<S>>,
}

impl<S> Binding<S> {
    /// The operator's own identity.
    pub fn own() -> Self {
        Self { scope: OWN_SCOPE.to_owned(), account: None }
    }

    /// The service to call: the account's, else `own`.
    pub fn ads<'a>(&'a self, own: &'a S) -> &'a S {
        self.account.as_ref().map_or(own, |a| &a.connection.ads)
    }

    /// The home region cache: the account's, else `own`.
    pub fn home_region<'a>(&'a self, own: Option<&'a Arc<HomeRegionCache>>) -> Option<&'a Arc<HomeRegionCache>> {
        match &self.account {
            Some(a) => a.connection.home_region.as_ref(),
            None => own,
        }
    }

    /// The account's `spec.region`.
    pub fn account_region(&self) -> Option<&str> {
        self.account.as_ref().and_then(|a| a.region.as_deref())
    }
}

/// The scope of an account: the AWS account ID in its `spec.roleArn` (two
/// `ExportAccount`s of one AWS account share it), else (a malformed ARN, which the CRD
/// rejects) its name.
pub fn scope_of(name: &str, spec: &ExportAccountSpec) -> String {
    spec.role_account_id().map_or_else(|| format!("account:{name}"), str::to_owned)
}

/// The `ExportAccount`s and Namespaces the operator watches, and the connected accounts.
pub struct Accounts<S> {
    /// The `ExportAccount`s (cluster-scoped), without `managedFields`.
    pub store: Store<ExportAccount>,
    /// The Namespaces' metadata (labels), for `spec.namespaceSelector`.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    connector: Arc<dyn Connector<S>>,
    registry: Mutex<HashMap<String, Connected<S>>>,
    /// Home region caches by account name, for [`Accounts::placement`] (the claim index).
    homes: Mutex<HashMap<String, Arc<HomeRegionCache>>>,
    /// Whether each watch cache had its first full list: `[ExportAccounts, Namespaces]`.
    synced: [AtomicBool; 2],
}

/// Which watch cache of [`Accounts`] had its first full list.
#[derive(Clone, Copy, Debug)]
pub enum Cache {
    /// The `ExportAccount`s.
    Accounts = 0,
    /// The Namespaces.
    Namespaces = 1,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<S> Accounts<S> {
    /// Accounts read from `store` and `namespaces`, connected by `connector`.
    pub fn new(
        store: Store<ExportAccount>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        connector: Arc<dyn Connector<S>>,
    ) -> Self {
        Self {
            store,
            namespaces,
            connector,
            registry: Mutex::default(),
            homes: Mutex::default(),
            synced: [AtomicBool::new(false), AtomicBool::new(false)],
        }
    }

    /// Records that `cache` had its first full list (its watch's `InitDone`).
    pub fn mark_synced(&self, cache: Cache) {
        self.synced[cache as usize].store(true, Ordering::Release);
    }

    /// Whether both watch caches had their first full list.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// The `ExportAccount` named `name`, from the watch cache.
    pub fn get(&self, name: &str) -> Option<Arc<ExportAccount>> {
        self.store.get(&ObjectRef::new(name))
    }

    /// The labels of `namespace`, from the watch cache (none when it is not there).
    pub fn namespace_labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces.get(&ObjectRef::new(namespace)).map(|n| n.labels().clone()).unwrap_or_default()
    }

    /// Whether `account` lets objects of `namespace` use it (the namespace's labels from
    /// the watch cache).
    ///
    /// # Errors
    /// [`Refusal::NotAllowed`].
    pub fn check_allowed(&self, name: &str, account: &ExportAccountSpec, namespace: &str) -> Result<(), Refusal> {
        account.allows(namespace, &self.namespace_labels(namespace)).map_err(|why| Refusal::NotAllowed {
            account: name.to_owned(),
            namespace: namespace.to_owned(),
            why,
        })
    }

    /// The scope and region of `obj` as the claim index places it: the account's
    /// scope and region order with its home region as last looked up; `None` when the
    /// account is not in the cache (the object makes no call until it is).
    pub fn placement(&self, obj: &ContinuousExport, operator: Option<&str>) -> Option<(String, Option<String>)> {
        let name = &obj.spec.account_ref.as_ref()?.name;
        let account = self.get(name)?;
        let home = lock(&self.homes).get(name.as_str()).cloned();
        let inputs = RegionInputs {
            spec: obj.spec.region.as_deref(),
            account: account.spec.region.as_deref(),
            operator,
            managed: managed_region(obj),
        };
        let region = region_order(&inputs, || home.and_then(|h| h.region()));
        Some((scope_of(name, &account.spec), region))
    }

    /// Forgets the connection of `name` (its `ExportAccount` is gone).
    pub fn forget(&self, name: &str) {
        lock(&self.registry).remove(name);
        lock(&self.homes).remove(name);
    }
}

/// `status.region` when `status.exportId` is set (the export stays where it was started).
pub fn managed_region(obj: &ContinuousExport) -> Option<&str> {
    obj.status.as_ref().filter(|s| s.export_id.is_some()).and_then(|s| s.region.as_deref())
}

impl<S: Send + Sync + 'static> Accounts<S> {
    /// The account `obj` uses: its own identity without `spec.accountRef`; else the named
    /// `ExportAccount` when it exists and allows the namespace, connected (from the
    /// registry, or anew when its role, external ID or session name changed).
    ///
    /// # Errors
    /// [`Refusal`]: the account is missing or does not allow the namespace.
    pub async fn bind(&self, obj: &ContinuousExport) -> Result<Binding<S>, Refusal> {
        let Some(reference) = &obj.spec.account_ref else { return Ok(Binding::own()) };
        if !self.synced() {
            return Err(Refusal::NotSynced);
        }
        let name = reference.name.as_str();
        let account = self.get(name).ok_or_else(|| Refusal::NotFound { account: name.to_owned() })?;
        self.check_allowed(name, &account.spec, &obj.namespace().unwrap_or_default())?;
        let connection = self.connection(name, &account.spec).await;
        Ok(Binding {
            scope: scope_of(name, &account.spec),
            account: Some(BoundAccount {
                name: name.to_owned(),
                role_arn: account.spec.role_arn.clone(),
                region: account.spec.region.clone(),
                connection,
            }),
        })
    }

    /// The connection of account `name`: the registry's when made from the same
    /// identity, else a new one (which replaces it).
    pub async fn connection(&self, name: &str, spec: &ExportAccountSpec) -> Arc<Connection<S>> {
        let identity = Identity::of(spec);
        if let Some(c) = lock(&self.registry).get(name).filter(|c| c.identity == identity) {
            return c.connection.clone();
        }
        let connection = Arc::new(self.connector.connect(name, spec).await);
        let mut registry = lock(&self.registry);
        // Another pass may have connected meanwhile: keep the first, so one account has
        // one service (one listing, one rate limit) per identity.
        if let Some(c) = registry.get(name).filter(|c| c.identity == identity) {
            return c.connection.clone();
        }
        if let Some(home) = &connection.home_region {
            lock(&self.homes).insert(name.to_owned(), home.clone());
        }
        tracing::info!(account = name, role_arn = %spec.role_arn, "connected ExportAccount");
        registry.insert(name.to_owned(), Connected { identity, connection: connection.clone() });
        connection
    }
}
