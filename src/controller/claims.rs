//! What other `ContinuousExport`s claim (indexed in [`super::claim_index`]), and
//! the `start-pending` annotation's meaning: pure functions over objects.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Resource, ResourceExt};

use crate::api::{ContinuousExport, START_PENDING_ANNOTATION};

/// How far before the `start-pending` time an export's `startTime` may lie and still
/// be taken as the one that start created (clock skew between this host and AWS).
pub const PENDING_SKEW: SignedDuration = SignedDuration::from_secs(300);

/// Another object's claim on an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The export ID.
    pub id: String,
    /// `namespace/name` of the claiming object.
    pub owner: String,
    /// How: in `status.exportId` (it manages the export), only in `spec.exportId`, or
    /// as an observer (`managementPolicy: ObserveOnly`).
    pub hold: Hold,
    /// Whether the claiming object is older than this one (creation time, then
    /// namespace and name): the tie-breaker when two objects adopted one export at once.
    pub age: Age,
    /// Whether the claiming object is being deleted (its finalizer may still stop the export).
    pub lifecycle: Lifecycle,
}

/// How an object claims an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// In `status.exportId`: it manages the export.
    Manages,
    /// Only in `spec.exportId`: it means to adopt it.
    Wants,
    /// It only observes the export (`managementPolicy: ObserveOnly`, or a status last
    /// written under it): no claim to manage it, but a sign that someone else started
    /// it, so it is never taken for a lost start's export.
    Observes,
}

/// Another object's age relative to this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// Created before this one (or at the same second, with a smaller namespace/name).
    Older,
    /// Created after this one.
    Younger,
}

/// Whether an object is live or being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// No `deletionTimestamp`.
    Live,
    /// Marked for deletion; its finalizer still runs.
    Deleting,
}

/// Which other objects a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Among {
    /// Every other object.
    All,
    /// Only objects older than this one.
    Older,
}

impl Among {
    fn admits(self, age: Age) -> bool {
        self == Among::All || age == Age::Older
    }
}

/// What the other objects in the watch cache claim, as one reconcile sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Others {
    /// Their claims on exports, those being deleted included.
    pub claims: Vec<Claim>,
    /// The others whose start may be pending in this object's region (they carry
    /// `start-pending` and no `status.exportId`).
    pub pending_starts: Vec<PendingStart>,
}

/// Another object whose start may be pending in the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingStart {
    /// Its `namespace/name`.
    pub owner: String,
    /// Older or younger than this object.
    pub age: Age,
}

impl Others {
    /// The object (among `among`) that manages export `id`, if any.
    pub fn manager_of(&self, id: &str, among: Among) -> Option<&Claim> {
        self.claims.iter().find(|c| c.id == id && c.hold == Hold::Manages && among.admits(c.age))
    }

    /// Whether any other object claims `id`, by status or by spec.
    pub fn claimed(&self, id: &str) -> bool {
        self.claims.iter().any(|c| c.id == id)
    }

    /// The object naming `id`: the one managing it, else one that wants it (an
    /// observer is no owner).
    pub fn named_owner(&self, id: &str) -> Option<&str> {
        let managing = self.claims.iter().find(|c| c.id == id && c.hold == Hold::Manages);
        let wanting = || self.claims.iter().find(|c| c.id == id && c.hold == Hold::Wants);
        managing.or_else(wanting).map(|c| c.owner.as_str())
    }

    /// Another object (among `among`) whose start is pending in the region:
    /// its unanswered Start may have created any export that shows up there.
    pub fn pending_start(&self, among: Among) -> Option<&str> {
        self.pending_starts.iter().find(|p| among.admits(p.age)).map(|p| p.owner.as_str())
    }
}

/// `namespace/name` of `o`.
pub fn owner(o: &ContinuousExport) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// The per-object key of backoff state and metrics: the UID (namespace/name if none).
pub fn key(obj: &ContinuousExport) -> String {
    obj.uid().unwrap_or_else(|| owner(obj))
}

/// The export ID `o` manages (`status.exportId`, unless written under `ObserveOnly`), if any.
pub fn managed_id(o: &ContinuousExport) -> Option<&str> {
    o.status.as_ref().and_then(|s| s.managed_export_id())
}

/// How `o` claims an export, if at all: it manages `status.exportId` (written under
/// `Full`); it observes (`ObserveOnly` in its spec, or its status written under it); or
/// it wants to adopt `spec.exportId`. What the status says wins over the spec: a
/// policy change takes effect once a pass has written it.
pub fn claim_of(o: &ContinuousExport) -> Option<(String, Hold)> {
    if let Some(id) = managed_id(o) {
        return Some((id.to_owned(), Hold::Manages));
    }
    let observed = o.status.as_ref().and_then(|s| s.export_id.clone());
    if let Some(id) = observed {
        return Some((id, Hold::Observes));
    }
    let hold = if o.spec.observe_only() { Hold::Observes } else { Hold::Wants };
    o.spec.export_id.clone().map(|id| (id, hold))
}

/// Since when a start of this object may be pending, from its `start-pending`
/// annotation; `None` when no start can be: no annotation, an adopting object
/// (`spec.exportId`: it never sends Start), or a time from before the object existed (a
/// value copied with a manifest). An unparsable or future time (later than `now` plus
/// [`PENDING_SKEW`]) still means "a start may have happened", looked for from the
/// object's creation on.
pub fn pending_since(obj: &ContinuousExport, now: Timestamp) -> Option<Timestamp> {
    if obj.spec.export_id.is_some() {
        return None;
    }
    let raw = obj.annotations().get(START_PENDING_ANNOTATION)?;
    let created = obj.meta().creation_timestamp.as_ref().map(|t| t.0);
    let from_creation = Some(created.unwrap_or(Timestamp::UNIX_EPOCH));
    let Ok(t) = raw.parse::<Timestamp>() else { return from_creation };
    let latest = now.checked_add(PENDING_SKEW).unwrap_or(Timestamp::MAX);
    match created.and_then(|c| c.checked_sub(PENDING_SKEW).ok()) {
        Some(earliest) if t < earliest => None,
        _ if t > latest => from_creation,
        _ => Some(t),
    }
}
