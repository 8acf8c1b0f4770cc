//! The claims of all watched objects, indexed by export ID and by region's pending
//! starts, both per scope (the AWS account: docs/architecture.md, "Accounts"), and the
//! objects that reference each `ExportAccount`, kept current from the watch events: a
//! reconcile asks about the few export IDs it needs instead of walking the whole watch
//! cache (cost per object flat in the object count).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use super::claims::{Age, Claim, Hold, Lifecycle, Others, PendingStart, claim_of, key, managed_id, pending_since};
use super::placement::{OWN_SCOPE, RegionInputs, region_order};
use crate::ads::home_region::HomeRegionCache;
use crate::api::ContinuousExport;

/// The order in which objects count as older: creation time, then namespace and name.
type AgeKey = (Option<Timestamp>, String, String);

/// A scope ([`OWN_SCOPE`] or an AWS account ID) and a name in it (an export ID, a region).
type Scoped = (String, String);

/// Places an object with `spec.accountRef`: its scope and region (the account's, see
/// `Accounts::placement`); `None` when its account is unknown (it makes no call then).
pub type Placer = Arc<dyn Fn(&ContinuousExport) -> Option<(String, Option<String>)> + Send + Sync>;

/// What the index keeps of one object: only what [`Others`] is built from.
#[derive(Clone, Debug)]
struct Entry {
    age: AgeKey,
    scope: String,
    claim: Option<(String, Hold)>,
    lifecycle: Lifecycle,
    /// The region of a start that may be pending (`start-pending`, no `status.exportId`).
    pending_in: Option<String>,
    /// `spec.accountRef.name`.
    account: Option<String>,
}

impl Entry {
    fn owner(&self) -> String {
        format!("{}/{}", self.age.1, self.age.2)
    }
}

/// One generation of the index (the live one, or the one a relist is building).
#[derive(Debug, Default)]
struct Tables {
    /// By object key ([`key`]: the UID).
    objects: HashMap<String, Entry>,
    /// (Scope, export ID) -> keys of the objects claiming it (status or spec).
    by_export: HashMap<Scoped, HashSet<String>>,
    /// (Scope, region) -> keys of the objects whose start may be pending there.
    pending: HashMap<Scoped, HashSet<String>>,
    /// `ExportAccount` name -> keys of the objects referencing it (`spec.accountRef`).
    by_account: HashMap<String, HashSet<String>>,
}

impl Tables {
    fn insert(&mut self, k: String, entry: Entry) {
        self.remove(&k);
        if let Some((id, _)) = &entry.claim {
            self.by_export.entry((entry.scope.clone(), id.clone())).or_default().insert(k.clone());
        }
        if let Some(region) = &entry.pending_in {
            self.pending.entry((entry.scope.clone(), region.clone())).or_default().insert(k.clone());
        }
        if let Some(account) = &entry.account {
            self.by_account.entry(account.clone()).or_default().insert(k.clone());
        }
        self.objects.insert(k, entry);
    }

    fn remove(&mut self, k: &str) {
        let Some(old) = self.objects.remove(k) else { return };
        if let Some((id, _)) = old.claim {
            unlink(&mut self.by_export, &(old.scope.clone(), id), k);
        }
        if let Some(region) = old.pending_in {
            unlink(&mut self.pending, &(old.scope.clone(), region), k);
        }
        if let Some(account) = old.account {
            unlink(&mut self.by_account, &account, k);
        }
    }
}

fn unlink<K: std::hash::Hash + Eq>(map: &mut HashMap<K, HashSet<String>>, at: &K, k: &str) {
    if let Some(set) = map.get_mut(at) {
        set.remove(k);
        if set.is_empty() {
            map.remove(at);
        }
    }
}

#[derive(Debug, Default)]
struct Generations {
    live: Tables,
    /// Being filled by a relist (`Init` .. `InitDone`); replaces `live` when done.
    relist: Option<Tables>,
}

/// The claims of every watched object, updated from the controller's watch events
/// ([`ClaimIndex::apply`]) and queried per reconcile ([`ClaimIndex::others`],
/// [`ClaimIndex::claims_on`]). A query costs O(IDs asked + claims on them + pending
/// starts in the region), whatever the number of objects.
#[derive(Default)]
pub struct ClaimIndex {
    /// The region of objects without `spec.region` (the operator's `--aws-region`).
    default_region: Option<String>,
    /// Without `default_region`: the account's Migration Hub home region, as last looked
    /// up, is the region of objects without `spec.region` (a pending start is marked
    /// after its region was found, so its watch event sees it).
    home_region: Option<Arc<HomeRegionCache>>,
    /// Places the objects with `spec.accountRef` (`None`: they are in no scope).
    placer: Option<Placer>,
    inner: Mutex<Generations>,
}

impl std::fmt::Debug for ClaimIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimIndex")
            .field("default_region", &self.default_region)
            .field("placer", &self.placer.is_some())
            .field("objects", &self.len())
            .finish()
    }
}

impl ClaimIndex {
    /// An empty index; objects without `spec.region` are in `default_region`.
    pub fn new(default_region: Option<String>) -> Self {
        Self { default_region, home_region: None, placer: None, inner: Mutex::default() }
    }

    /// The same index, placing objects without `spec.region` in the home region of
    /// `cache` when there is no default region.
    #[must_use]
    pub fn with_home_region(mut self, cache: Option<Arc<HomeRegionCache>>) -> Self {
        self.home_region = cache;
        self
    }

    /// The same index, placing objects with `spec.accountRef` with `placer`.
    #[must_use]
    pub fn with_placer(mut self, placer: Placer) -> Self {
        self.placer = Some(placer);
        self
    }

    /// The scope and region of `o`: for the operator's own identity [`region_order`]
    /// with its default and home regions; for an account the placer's answer (an
    /// object whose account is unknown is in a scope of its own, `unplaced:<name>`, and
    /// no region).
    pub fn place(&self, o: &ContinuousExport) -> (String, Option<String>) {
        if let Some(reference) = &o.spec.account_ref {
            let placed = self.placer.as_ref().and_then(|p| p(o));
            return placed.unwrap_or_else(|| (format!("unplaced:{}", reference.name), None));
        }
        let home = || self.home_region.as_ref().and_then(|c| c.region());
        let inputs = RegionInputs {
            spec: o.spec.region.as_deref(),
            account: None,
            operator: self.default_region.as_deref(),
            managed: super::accounts::managed_region(o),
        };
        (OWN_SCOPE.to_owned(), region_order(&inputs, home))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry(&self, o: &ContinuousExport) -> Entry {
        let claim = claim_of(o);
        // Whether a start may be pending does not depend on `now` (only its time does).
        let pending = pending_since(o, Timestamp::now()).is_some() && managed_id(o).is_none();
        let (scope, region) = self.place(o);
        Entry {
            age: age_key(o),
            scope,
            claim,
            lifecycle: if o.meta().deletion_timestamp.is_some() { Lifecycle::Deleting } else { Lifecycle::Live },
            pending_in: region.filter(|_| pending),
            account: o.spec.account_ref.as_ref().map(|r| r.name.clone()),
        }
    }

    /// Follows one watch event, as the reflector's store does: `Apply`/`Delete` change
    /// the live index at once; a relist (`Init`, `InitApply`.., `InitDone`) builds a new
    /// one that replaces it when complete.
    pub fn apply(&self, event: &Event<ContinuousExport>) {
        let mut g = self.lock();
        match event {
            Event::Apply(o) => g.live.insert(key(o), self.entry(o)),
            Event::Delete(o) => g.live.remove(&key(o)),
            Event::Init => g.relist = Some(Tables::default()),
            Event::InitApply(o) => g.relist.get_or_insert_with(Tables::default).insert(key(o), self.entry(o)),
            Event::InitDone => {
                if let Some(fresh) = g.relist.take() {
                    g.live = fresh;
                }
            }
        }
    }

    /// What objects other than `obj` claim of `ids`, and their pending starts in
    /// `region` (`obj`'s region; `None`: no pending start counts), all in `obj`'s scope
    /// ([`ClaimIndex::place`]).
    pub fn others<'a>(
        &self,
        obj: &ContinuousExport,
        region: Option<&str>,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Others {
        let (me, my_age, scope) = (key(obj), age_key(obj), self.place(obj).0);
        let g = self.lock();
        let age = |e: &Entry| if e.age < my_age { Age::Older } else { Age::Younger };
        let pending = region.and_then(|r| g.live.pending.get(&(scope.clone(), r.to_owned()))).into_iter().flatten();
        let pending_starts = pending
            .filter(|k| **k != me)
            .filter_map(|k| g.live.objects.get(k))
            .map(|e| PendingStart { owner: e.owner(), age: age(e) })
            .collect();
        Others { claims: claims_on(&g.live, &scope, &me, &my_age, ids), pending_starts }
    }

    /// The claims of objects other than `obj` on `ids`, in `obj`'s scope.
    pub fn claims_on<'a>(&self, obj: &ContinuousExport, ids: impl IntoIterator<Item = &'a str>) -> Vec<Claim> {
        let scope = self.place(obj).0;
        claims_on(&self.lock().live, &scope, &key(obj), &age_key(obj), ids)
    }

    /// The objects (namespace, name) that claim export `id` in `scope`: manage it
    /// (`status.exportId`) or want it (`spec.exportId`).
    pub fn claimants(&self, scope: &str, id: &str) -> Vec<(String, String)> {
        let g = self.lock();
        let keys = g.live.by_export.get(&(scope.to_owned(), id.to_owned())).into_iter().flatten();
        keys.filter_map(|k| g.live.objects.get(k)).map(|e| (e.age.1.clone(), e.age.2.clone())).collect()
    }

    /// The objects (namespace, name) that reference the `ExportAccount` `account`,
    /// sorted.
    pub fn referencing(&self, account: &str) -> Vec<(String, String)> {
        let g = self.lock();
        let keys = g.live.by_account.get(account).into_iter().flatten();
        let mut out: Vec<_> =
            keys.filter_map(|k| g.live.objects.get(k)).map(|e| (e.age.1.clone(), e.age.2.clone())).collect();
        out.sort();
        out
    }

    /// The objects (namespace, name) in `namespace` that reference an `ExportAccount`
    /// (a change of the namespace's labels may grant or revoke it). O(accounts + their objects).
    pub fn referencing_in(&self, namespace: &str) -> Vec<(String, String)> {
        let g = self.lock();
        let keys = g.live.by_account.values().flatten();
        let entries = keys.filter_map(|k| g.live.objects.get(k)).filter(|e| e.age.1 == namespace);
        entries.map(|e| (e.age.1.clone(), e.age.2.clone())).collect()
    }

    /// How many objects the live index holds.
    pub fn len(&self) -> usize {
        self.lock().live.objects.len()
    }

    /// Whether the live index holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn claims_on<'a>(
    t: &Tables,
    scope: &str,
    me: &str,
    my_age: &AgeKey,
    ids: impl IntoIterator<Item = &'a str>,
) -> Vec<Claim> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ids.into_iter().filter(|id| seen.insert(*id)) {
        let claimants = t.by_export.get(&(scope.to_owned(), id.to_owned()));
        for k in claimants.into_iter().flatten().filter(|k| *k != me) {
            let Some(e) = t.objects.get(k) else { continue };
            let Some((id, hold)) = e.claim.clone() else { continue };
            let age = if e.age < *my_age { Age::Older } else { Age::Younger };
            out.push(Claim { id, owner: e.owner(), hold, age, lifecycle: e.lifecycle });
        }
    }
    out
}

fn age_key(o: &ContinuousExport) -> AgeKey {
    (o.meta().creation_timestamp.as_ref().map(|t| t.0), o.namespace().unwrap_or_default(), o.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContinuousExportSpec, ContinuousExportStatus, START_PENDING_ANNOTATION};
    use crate::controller::claims::Among;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn object(name: &str, created: &str) -> ContinuousExport {
        let mut o = ContinuousExport::new(name, ContinuousExportSpec::default());
        o.metadata.namespace = Some("ns".into());
        o.metadata.uid = Some(format!("{name}-uid"));
        o.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        o
    }

    fn managing(name: &str, created: &str, id: &str) -> ContinuousExport {
        let mut o = object(name, created);
        o.status = Some(ContinuousExportStatus { export_id: Some(id.into()), ..Default::default() });
        o
    }

    fn pending(name: &str, created: &str) -> ContinuousExport {
        let mut o = object(name, created);
        o.metadata.annotations = Some([(START_PENDING_ANNOTATION.to_owned(), created.to_owned())].into());
        o
    }

    #[test]
    fn answers_only_the_ids_asked_with_age_and_hold() {
        let index = ClaimIndex::new(Some("us-west-2".into()));
        let me = object("me", "2026-01-02T00:00:00Z");
        let mut wants = object("b", "2026-01-03T00:00:00Z");
        wants.spec.export_id = Some("e-1".into());
        for o in [managing("a", "2026-01-01T00:00:00Z", "e-1"), wants, managing("c", "2026-01-01T00:00:00Z", "e-2")] {
            index.apply(&Event::Apply(o));
        }
        let mut claims = index.claims_on(&me, ["e-1", "e-1"]);
        claims.sort_by(|x, y| x.owner.cmp(&y.owner));
        let summary: Vec<_> = claims.iter().map(|c| (c.owner.as_str(), c.hold, c.age)).collect();
        assert_eq!(summary, [("ns/a", Hold::Manages, Age::Older), ("ns/b", Hold::Wants, Age::Younger)]);
        assert!(index.claims_on(&me, ["e-3"]).is_empty());
        // An object's own claim is not another's.
        assert!(index.claims_on(&managing("c", "2026-01-01T00:00:00Z", "e-2"), ["e-2"]).is_empty());
    }

    #[test]
    fn observers_claim_nothing_to_manage_until_their_status_says_full() {
        use crate::api::ManagementPolicy;
        let index = ClaimIndex::new(Some("us-west-2".into()));
        let me = object("me", "2026-01-02T00:00:00Z");
        let mut observer = object("obs", "2026-01-01T00:00:00Z");
        observer.spec.export_id = Some("e-1".into());
        observer.spec.management_policy = ManagementPolicy::ObserveOnly;
        index.apply(&Event::Apply(observer.clone()));
        let others = index.others(&me, Some("us-west-2"), ["e-1"]);
        assert_eq!(others.claims[0].hold, Hold::Observes);
        assert!(others.manager_of("e-1", Among::All).is_none() && others.claimed("e-1"));
        assert_eq!(others.named_owner("e-1"), None, "an observer is named as nobody's owner");
        // Its status written under ObserveOnly; then changed to Full: observed until a pass takes over.
        observer.status = Some(ContinuousExportStatus {
            export_id: Some("e-1".into()),
            management_policy: Some(ManagementPolicy::ObserveOnly),
            ..Default::default()
        });
        observer.spec.management_policy = ManagementPolicy::Full;
        index.apply(&Event::Apply(observer.clone()));
        assert_eq!(index.claims_on(&me, ["e-1"])[0].hold, Hold::Observes);
        observer.status.as_mut().unwrap().management_policy = None;
        index.apply(&Event::Apply(observer));
        assert_eq!(index.claims_on(&me, ["e-1"])[0].hold, Hold::Manages, "taken over");
    }

    #[test]
    fn follows_changes_deletions_and_relists() {
        let index = ClaimIndex::new(Some("us-west-2".into()));
        let me = object("me", "2026-01-02T00:00:00Z");
        index.apply(&Event::Apply(managing("a", "2026-01-01T00:00:00Z", "e-1")));
        index.apply(&Event::Apply(managing("a", "2026-01-01T00:00:00Z", "e-2")));
        assert!(index.claims_on(&me, ["e-1"]).is_empty(), "the old claim is gone");
        assert_eq!(index.claims_on(&me, ["e-2"]).len(), 1);
        index.apply(&Event::Delete(managing("a", "2026-01-01T00:00:00Z", "e-2")));
        assert!(index.is_empty());

        index.apply(&Event::Apply(managing("gone", "2026-01-01T00:00:00Z", "e-9")));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(managing("kept", "2026-01-01T00:00:00Z", "e-5")));
        assert_eq!(index.claims_on(&me, ["e-9"]).len(), 1, "the live index serves until the relist is done");
        index.apply(&Event::InitDone);
        assert!(index.claims_on(&me, ["e-9"]).is_empty(), "an object missing from the relist is dropped");
        assert_eq!(index.claims_on(&me, ["e-5"]).len(), 1);
    }

    #[test]
    fn pending_starts_are_per_region_and_exclude_self() {
        let index = ClaimIndex::new(Some("us-west-2".into()));
        let mut elsewhere = pending("far", "2026-01-01T00:00:00Z");
        elsewhere.spec.region = Some("eu-west-1".into());
        let me = pending("me", "2026-01-02T00:00:00Z");
        for o in [pending("old", "2026-01-01T00:00:00Z"), elsewhere, me.clone()] {
            index.apply(&Event::Apply(o));
        }
        let others = index.others(&me, Some("us-west-2"), []);
        assert_eq!(others.pending_starts, [PendingStart { owner: "ns/old".into(), age: Age::Older }]);
        assert!(index.others(&me, None, []).pending_starts.is_empty());
        // Once the export ID is stored, the start is no longer pending.
        let mut settled = pending("old", "2026-01-01T00:00:00Z");
        settled.status = Some(ContinuousExportStatus { export_id: Some("e-1".into()), ..Default::default() });
        index.apply(&Event::Apply(settled));
        assert!(index.others(&me, Some("us-west-2"), []).pending_starts.is_empty());
    }

    #[tokio::test]
    async fn without_a_default_region_pending_starts_are_in_the_home_region() {
        use crate::ads::home_region::{FixedHomeRegion, HomeRegion};
        let lookup = FixedHomeRegion(HomeRegion::Set("eu-central-1".into()));
        let cache = Arc::new(HomeRegionCache::new(Arc::new(lookup)));
        let index = ClaimIndex::new(None).with_home_region(Some(cache.clone()));
        let me = pending("me", "2026-01-02T00:00:00Z");
        // before the home region is known, an object without spec.region is in no region
        index.apply(&Event::Apply(pending("early", "2026-01-01T00:00:00Z")));
        assert!(index.others(&me, Some("eu-central-1"), []).pending_starts.is_empty());
        cache.ensure().await;
        index.apply(&Event::Apply(pending("old", "2026-01-01T00:00:00Z")));
        let others = index.others(&me, Some("eu-central-1"), []);
        assert_eq!(others.pending_starts, [PendingStart { owner: "ns/old".into(), age: Age::Older }]);
        assert!(index.others(&me, Some("us-west-2"), []).pending_starts.is_empty());
    }

    #[test]
    fn claims_and_pending_starts_are_per_scope_and_accounts_index_their_users() {
        use crate::api::AccountRef;
        // objects of account `a-…` are in scope 111111111111, region us-east-1
        let placer: Placer = Arc::new(|o: &ContinuousExport| {
            o.spec
                .account_ref
                .as_ref()
                .filter(|r| r.name.starts_with("a-"))
                .map(|_| ("111111111111".to_owned(), Some("us-west-2".to_owned())))
        });
        let index = ClaimIndex::new(Some("us-west-2".into())).with_placer(placer);
        let with_account = |mut o: ContinuousExport, account: &str| {
            o.spec.account_ref = Some(AccountRef { name: account.into() });
            o
        };
        let theirs = with_account(pending("theirs", "2026-01-01T00:00:00Z"), "a-1");
        let managing_theirs = with_account(managing("m", "2026-01-01T00:00:00Z", "e-1"), "a-1");
        for o in [theirs, managing_theirs, with_account(object("lost", "2026-01-01T00:00:00Z"), "b-unknown")] {
            index.apply(&Event::Apply(o));
        }
        let me = pending("me", "2026-01-02T00:00:00Z");
        assert!(index.others(&me, Some("us-west-2"), ["e-1"]).pending_starts.is_empty(), "another account's start");
        assert!(index.claims_on(&me, ["e-1"]).is_empty(), "another account's export ID");
        let mine_too = with_account(object("me2", "2026-01-02T00:00:00Z"), "a-2");
        let others = index.others(&mine_too, Some("us-west-2"), ["e-1"]);
        assert_eq!((others.pending_starts.len(), others.claims.len()), (1, 1), "same AWS account, same scope");
        assert_eq!(index.claimants("111111111111", "e-1"), [("ns".to_owned(), "m".to_owned())]);
        assert!(index.claimants(OWN_SCOPE, "e-1").is_empty());
        assert_eq!(index.referencing("a-1").len(), 2);
        assert_eq!(index.referencing("b-unknown"), [("ns".to_owned(), "lost".to_owned())]);
        assert_eq!(index.referencing_in("ns").len(), 3);
        assert_eq!(
            index.place(&with_account(object("x", "2026-01-01T00:00:00Z"), "b-x")),
            ("unplaced:b-x".to_owned(), None)
        );
    }
}
