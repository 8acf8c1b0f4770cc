//! Prometheus metrics of the operator (`--metrics-addr`; README "Running the operator").
//!
//! [`Metrics`] owns a [`Registry`] whose families all carry the prefix
//! `ads_export_operator`; [`crate::http::serve`] exposes it as OpenMetrics text on
//! `GET /metrics`. It is fed through the two observer seams:
//! [`CallObserver`] (every ADS call and every Migration Hub Config `GetHomeRegion`)
//! and [`ReconcileObserver`] (every reconcile and every `exportStatus` write).
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `ads_export_operator_reconciles_total` | counter | `result` (`ok`, `error`) |
//! | `ads_export_operator_reconcile_duration_seconds` | histogram | |
//! | `ads_export_operator_aws_calls_total` | counter | `operation` (an ADS operation or `GetHomeRegion`), `outcome` (`ok` or a condition reason) |
//! | `ads_export_operator_aws_call_duration_seconds` | histogram | `operation` |
//! | `ads_export_operator_aws_rate_limit_waits_total` | counter | |
//! | `ads_export_operator_aws_rate_limit_wait_seconds_total` | counter | |
//! | `ads_export_operator_objects` | gauge | `export_status` (an ADS status or `NONE`) |
//! | `ads_export_operator_leader` | gauge | |

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::ads::aws::CallObserver;
use crate::ads::home_region;
use crate::ads::{ExportStatus, Operation};
use crate::controller::ReconcileObserver;

/// Prefix of every metric family name.
pub const PREFIX: &str = "ads_export_operator";

/// The `export_status` label of objects that have no export (yet).
pub const NO_EXPORT_STATUS: &str = "NONE";

/// Upper bounds (seconds) of the duration histograms' buckets: 1 ms to 60 s, in
/// 1-2.5-5 steps (the `+Inf` bucket is implicit).
pub const DURATION_BUCKETS_SECONDS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// The statuses whose `objects` series exist from the start (at 0), so that
/// dashboards and alerts see a zero rather than no series.
const KNOWN_EXPORT_STATUSES: [&str; 8] = [
    NO_EXPORT_STATUS,
    ExportStatus::StartInProgress.as_str(),
    ExportStatus::StartFailed.as_str(),
    ExportStatus::Active.as_str(),
    ExportStatus::Error.as_str(),
    ExportStatus::StopInProgress.as_str(),
    ExportStatus::StopFailed.as_str(),
    ExportStatus::Inactive.as_str(),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    operation: &'static str,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    export_status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS_SECONDS)
}

/// Last written `exportStatus` per object UID, and every status ever given a series.
#[derive(Debug, Default)]
struct ObjectStatuses {
    by_uid: HashMap<String, String>,
    seen: BTreeSet<String>,
}

/// The operator's metrics and their registry. Cheap to share as `Arc<Metrics>`;
/// all methods take `&self` and are safe to call from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    aws_calls: Family<CallLabels, Counter>,
    aws_call_duration: HistogramFamily<OperationLabels>,
    objects: Family<StatusLabels, Gauge>,
    leader: Gauge<i64, AtomicI64>,
    rate_limit_waits: Counter,
    rate_limit_wait_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    statuses: Mutex<ObjectStatuses>,
}

impl Metrics {
    /// A registry with all families registered (prefix [`PREFIX`]). Series that are
    /// known in advance (both reconcile results, the `ok` outcome of each ADS
    /// operation and of `GetHomeRegion`, every ADS export status, `leader`) start at 0.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix(PREFIX);

        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of ContinuousExport objects finished, by result (ok, error)",
            reconciles.clone(),
        );
        let reconcile_duration = duration_histogram();
        registry.register_with_unit(
            "reconcile_duration",
            "Wall-clock duration of one reconcile, in seconds",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let aws_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS calls (Application Discovery Service operations and Migration Hub Config GetHomeRegion), by operation \
             and outcome (ok or the condition reason of the error)",
            aws_calls.clone(),
        );
        let aws_call_duration: HistogramFamily<OperationLabels> = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "aws_call_duration",
            "Wall-clock duration of one AWS call (as in aws_calls) including SDK retries, in seconds",
            Unit::Seconds,
            aws_call_duration.clone(),
        );
        let objects = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "objects",
            "Watched ContinuousExport objects by last written exportStatus (NONE: no export yet)",
            objects.clone(),
        );
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "leader",
            "1 when this replica holds the leader lease and runs the controller, 0 on standby",
            leader.clone(),
        );

        let rate_limit_waits = Counter::default();
        registry.register(
            "aws_rate_limit_waits",
            "AWS requests (ADS and GetHomeRegion) that waited for the client-side rate limit (--aws-max-requests-per-second)",
            rate_limit_waits.clone(),
        );
        let rate_limit_wait_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "aws_rate_limit_wait",
            "Time AWS requests (ADS and GetHomeRegion) waited for the client-side rate limit, in seconds",
            Unit::Seconds,
            rate_limit_wait_seconds.clone(),
        );

        let metrics = Self {
            registry,
            reconciles,
            reconcile_duration,
            aws_calls,
            aws_call_duration,
            objects,
            leader,
            rate_limit_waits,
            rate_limit_wait_seconds,
            statuses: Mutex::new(ObjectStatuses::default()),
        };
        metrics.seed();
        Arc::new(metrics)
    }

    /// Creates the series known in advance at 0 (`get_or_create` alone does; the
    /// returned guard is not needed).
    fn seed(&self) {
        for result in ["ok", "error"] {
            let _ = self.reconciles.get_or_create(&ResultLabels { result });
        }
        for operation in Operation::ALL.map(Operation::name).into_iter().chain([home_region::OPERATION]) {
            let _ = self.aws_calls.get_or_create(&CallLabels { operation, outcome: "ok".into() });
            let _ = self.aws_call_duration.get_or_create(&OperationLabels { operation });
        }
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        for status in KNOWN_EXPORT_STATUSES {
            let _ = self.objects.get_or_create(&StatusLabels { export_status: status.into() });
            statuses.seen.insert(status.into());
        }
    }

    /// The registry as OpenMetrics text (ending in `# EOF`), the body of `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            // Writing into a String cannot fail; this is an encoder bug. Serve a valid,
            // empty exposition rather than a truncated one.
            tracing::error!(error = %e, "encoding metrics failed");
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    /// Sets the `leader` gauge: `true` when this replica holds the lease and runs the
    /// controller, `false` on standby.
    ///
    /// Losing leadership also forgets every object's status (all `objects` series drop
    /// to 0): a standby replica does not reconcile, so what it last saw goes stale,
    /// and summing `objects` over replicas must count each object once. The next
    /// leader's reconciles fill the gauges again.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
        if !leader {
            let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
            statuses.by_uid.clear();
            for status in &statuses.seen {
                self.objects_in(status).set(0);
            }
        }
    }

    /// The `objects` series of `status` (a handle sharing the series' value).
    fn objects_in(&self, status: &str) -> Gauge {
        self.objects.get_or_create(&StatusLabels { export_status: status.to_owned() }).clone()
    }

    /// One AWS call of `operation` (its API name) in `aws_calls` and `aws_call_duration`.
    fn count_call(&self, operation: &'static str, outcome: &str, elapsed: Duration) {
        self.aws_calls.get_or_create(&CallLabels { operation, outcome: outcome.to_owned() }).inc();
        self.aws_call_duration.get_or_create(&OperationLabels { operation }).observe(elapsed.as_secs_f64());
    }
}

impl CallObserver for Metrics {
    fn observe(&self, operation: Operation, outcome: &str, elapsed: Duration) {
        self.count_call(operation.name(), outcome, elapsed);
    }

    fn observe_home_region(&self, outcome: &str, elapsed: Duration) {
        self.count_call(home_region::OPERATION, outcome, elapsed);
    }

    fn rate_limited(&self, _region: &str, waited: Duration) {
        self.rate_limit_waits.inc();
        self.rate_limit_wait_seconds.inc_by(waited.as_secs_f64());
    }
}

impl ReconcileObserver for Metrics {
    fn reconciled(&self, result: &'static str, elapsed: Duration) {
        self.reconciles.get_or_create(&ResultLabels { result }).inc();
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    fn export_status(&self, uid: &str, status: Option<&str>) {
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        let status = status.filter(|s| !s.is_empty()).unwrap_or(NO_EXPORT_STATUS);
        if !statuses.seen.contains(status) {
            statuses.seen.insert(status.to_owned());
        }
        // One object moves between two series: O(1), not a count over all objects (the
        // lock keeps the two steps of concurrent updates in order).
        match statuses.by_uid.insert(uid.to_owned(), status.to_owned()) {
            Some(old) if old == status => {}
            Some(old) => {
                self.objects_in(&old).dec();
                self.objects_in(status).inc();
            }
            None => {
                self.objects_in(status).inc();
            }
        }
    }

    fn deleted(&self, uid: &str) {
        let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = statuses.by_uid.remove(uid) {
            self.objects_in(&old).dec();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
