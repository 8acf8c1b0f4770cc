//! What one reconcile pass knows before it acts: the [`Observation`] that
//! [`super::observe`] reads and [`super::decide`] decides on.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::backoff::{Attempts, Policy};
use super::claims::Others;
use crate::ads::{AdsError, ExportDescription};
use crate::api::ContinuousExportStatus;

/// Where the object a pass starts from was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The watch cache: it may lag behind this controller's own writes.
    Cache,
    /// The apiserver's answer to this pass's own write (the finalizer patch): as fresh
    /// as a read.
    Stored,
}

/// Everything the rules look at, read before any change is made.
#[derive(Clone, Debug)]
pub struct Observation {
    /// `spec.region`, else the operator's `--aws-region`; `None`: no call can be made.
    pub region: Option<String>,
    /// The object's `metadata.generation`.
    pub generation: i64,
    /// The object's status as stored (conditions included).
    pub status: ContinuousExportStatus,
    /// The `start-pending` annotation.
    pub pending: Pending,
    /// An `adsexport.io/reconcile-requested-at` value not handled yet: this pass reads
    /// ADS afresh and records it in `status.lastHandledReconcileAt`.
    pub request: Option<String>,
    /// What other objects claim (from the watch cache).
    pub others: Others,
    /// What ADS answered.
    pub ads: Reads,
    /// The schedule state: backoff counts and the random draw for jitter.
    pub schedule: Schedule,
    /// When this pass looked (UTC): the only clock the rules use.
    pub now: Timestamp,
}

/// The object's `start-pending` annotation (docs/architecture.md, "Crash safety").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// The object carries the annotation (whatever its value).
    pub marked: bool,
    /// Since when a start of this object may be pending (see
    /// [`super::claims::pending_since`]); `None` when none can be.
    pub since: Option<Timestamp>,
}

/// The ADS reads of one pass; which ones are made is itself a rule
/// ([`super::decide::reads`], [`super::deletion::reads`]).
#[derive(Clone, Debug, Default)]
pub struct Reads {
    /// DescribeContinuousExports of one ID (the managed, adopted or deleted export).
    pub described: Option<Result<ExportDescription, AdsError>>,
    /// DescribeContinuousExports of the whole region (own starts: a pending start's
    /// export, or the running one that would make Start fail).
    pub listed: Option<Result<Vec<ExportDescription>, AdsError>>,
}

/// The inputs of the requeue schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Steady-state resync period.
    pub resync: Duration,
    /// Failure backoff bounds.
    pub policy: Policy,
    /// The object's counts before this pass.
    pub attempts: Attempts,
    /// A random draw in `0.0..=1.0` for this pass's jitter.
    pub jitter: f64,
}
