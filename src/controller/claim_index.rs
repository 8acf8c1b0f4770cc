//! The claims of all watched objects, indexed by export ID and by region's pending
//! starts, kept current from the watch events: a reconcile asks about the few export
//! IDs it needs instead of walking the whole watch cache (cost per object flat in the
//! object count).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use super::claims::{Age, Claim, Hold, Lifecycle, Others, PendingStart, claim_of, key, managed_id, pending_since};
use crate::ads::home_region::HomeRegionCache;
use crate::api::ContinuousExport;

/// The order in which objects count as older: creation time, then namespace and name.
type AgeKey = (Option<Timestamp>, String, String);

/// What the index keeps of one object: only what [`Others`] is built from.
#[derive(Clone, Debug)]
struct Entry {
    age: AgeKey,
    claim: Option<(String, Hold)>,
    lifecycle: Lifecycle,
    /// The region of a start that may be pending (`start-pending`, no `status.exportId`).
    pending_in: Option<String>,
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
    /// Export ID -> keys of the objects claiming it (status or spec).
    by_export: HashMap<String, HashSet<String>>,
    /// Region -> keys of the objects whose start may be pending there.
    pending: HashMap<String, HashSet<String>>,
}

impl Tables {
    fn insert(&mut self, k: String, entry: Entry) {
        self.remove(&k);
        if let Some((id, _)) = &entry.claim {
            self.by_export.entry(id.clone()).or_default().insert(k.clone());
        }
        if let Some(region) = &entry.pending_in {
            self.pending.entry(region.clone()).or_default().insert(k.clone());
        }
        self.objects.insert(k, entry);
    }

    fn remove(&mut self, k: &str) {
        let Some(old) = self.objects.remove(k) else { return };
        if let Some((id, _)) = old.claim {
            unlink(&mut self.by_export, &id, k);
        }
        if let Some(region) = old.pending_in {
            unlink(&mut self.pending, &region, k);
        }
    }
}

fn unlink(map: &mut HashMap<String, HashSet<String>>, at: &str, k: &str) {
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
#[derive(Debug, Default)]
pub struct ClaimIndex {
    /// The region of objects without `spec.region` (the operator's `--aws-region`).
    default_region: Option<String>,
    /// Without `default_region`: the account's Migration Hub home region, as last looked
    /// up, is the region of objects without `spec.region` (a pending start is marked
    /// after its region was found, so its watch event sees it).
    home_region: Option<Arc<HomeRegionCache>>,
    inner: Mutex<Generations>,
}

impl ClaimIndex {
    /// An empty index; objects without `spec.region` are in `default_region`.
    pub fn new(default_region: Option<String>) -> Self {
        Self { default_region, home_region: None, inner: Mutex::default() }
    }

    /// The same index, placing objects without `spec.region` in the home region of
    /// `cache` when there is no default region.
    #[must_use]
    pub fn with_home_region(mut self, cache: Option<Arc<HomeRegionCache>>) -> Self {
        self.home_region = cache;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry(&self, o: &ContinuousExport) -> Entry {
        let claim = claim_of(o);
        // Whether a start may be pending does not depend on `now` (only its time does).
        let pending = pending_since(o, Timestamp::now()).is_some() && managed_id(o).is_none();
        let home = || self.home_region.as_ref().and_then(|c| c.region());
        let region = o.spec.region.clone().or_else(|| self.default_region.clone()).or_else(home);
        Entry {
            age: age_key(o),
            claim,
            lifecycle: if o.meta().deletion_timestamp.is_some() { Lifecycle::Deleting } else { Lifecycle::Live },
            pending_in: region.filter(|_| pending),
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
    /// `region` (`obj`'s region; `None`: no pending start counts).
    pub fn others<'a>(
        &self,
        obj: &ContinuousExport,
        region: Option<&str>,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Others {
        let (me, my_age) = (key(obj), age_key(obj));
        let g = self.lock();
        let age = |e: &Entry| if e.age < my_age { Age::Older } else { Age::Younger };
        let pending = region.and_then(|r| g.live.pending.get(r)).into_iter().flatten();
        let pending_starts = pending
            .filter(|k| **k != me)
            .filter_map(|k| g.live.objects.get(k))
            .map(|e| PendingStart { owner: e.owner(), age: age(e) })
            .collect();
        Others { claims: claims_on(&g.live, &me, &my_age, ids), pending_starts }
    }

    /// The claims of objects other than `obj` on `ids`.
    pub fn claims_on<'a>(&self, obj: &ContinuousExport, ids: impl IntoIterator<Item = &'a str>) -> Vec<Claim> {
        claims_on(&self.lock().live, &key(obj), &age_key(obj), ids)
    }

    /// The objects (namespace, name) that claim export `id`: manage it
    /// (`status.exportId`) or want it (`spec.exportId`).
    pub fn claimants(&self, id: &str) -> Vec<(String, String)> {
        let g = self.lock();
        let keys = g.live.by_export.get(id).into_iter().flatten();
        keys.filter_map(|k| g.live.objects.get(k)).map(|e| (e.age.1.clone(), e.age.2.clone())).collect()
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

fn claims_on<'a>(t: &Tables, me: &str, my_age: &AgeKey, ids: impl IntoIterator<Item = &'a str>) -> Vec<Claim> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ids.into_iter().filter(|id| seen.insert(*id)) {
        for k in t.by_export.get(id).into_iter().flatten().filter(|k| *k != me) {
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
}
