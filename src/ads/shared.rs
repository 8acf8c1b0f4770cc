//! One shared listing per region: [`SharedListing`] wraps an [`ExportService`] and
//! answers the steady-state reads of all reconciles ([`ExportService::describe_shared`],
//! [`ExportService::list_shared`]) from one `DescribeContinuousExports` listing of the
//! region (100 per page, following `nextToken`), taken at most once per `max_age` and
//! by one caller at a time, instead of one Describe per object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{AdsError, ExportDescription, ExportService, ExportStatus, Reason, StartedExport, StopTimes};

/// A region's last listing: when it was taken and the exports by ID.
#[derive(Debug)]
struct Snapshot {
    taken: Instant,
    exports: HashMap<String, ExportDescription>,
}

/// One region: its snapshot, and the lock that makes one caller at a time refresh it.
#[derive(Debug, Default)]
struct RegionListing {
    snapshot: Mutex<Option<Snapshot>>,
    refresh: tokio::sync::Mutex<()>,
}

impl RegionListing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Snapshot>> {
        self.snapshot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the snapshot with `f` when it is at most `max_age` old.
    fn fresh<T>(&self, max_age: Duration, f: impl FnOnce(&Snapshot) -> T) -> Option<T> {
        self.lock().as_ref().filter(|s| s.taken.elapsed() <= max_age).map(f)
    }

    fn replace(&self, exports: &[ExportDescription], taken: Instant) {
        let exports = exports.iter().map(|d| (d.export_id.clone(), d.clone())).collect();
        *self.lock() = Some(Snapshot { taken, exports });
    }

    /// A newer answer about one export (a Describe by ID) replaces its entry.
    fn update(&self, d: &ExportDescription) {
        if let Some(s) = self.lock().as_mut() {
            s.exports.insert(d.export_id.clone(), d.clone());
        }
    }

    /// The entry is known to be stale (the export was just stopped).
    fn forget(&self, id: &str) {
        if let Some(s) = self.lock().as_mut() {
            s.exports.remove(id);
        }
    }
}

/// Whether a shared read's listing was taken by that read or earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Taken {
    Now,
    Earlier,
}

/// An [`ExportService`] whose shared reads come from one listing per region; every
/// other call goes to the wrapped service, and what its answers say keeps the
/// listing current (a Describe replaces an entry, a full listing the snapshot, a
/// Stop drops the stopped export's entry so the next read asks ADS).
#[derive(Debug, Default)]
pub struct SharedListing<S> {
    inner: S,
    regions: Mutex<HashMap<String, Arc<RegionListing>>>,
}

impl<S: ExportService> SharedListing<S> {
    /// Wraps `inner`; no listing is taken until a shared read asks for one.
    pub fn new(inner: S) -> Self {
        Self { inner, regions: Mutex::default() }
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn region(&self, region: &str) -> Arc<RegionListing> {
        let mut regions = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        regions.entry(region.to_owned()).or_default().clone()
    }

    /// Reads the region's snapshot with `f`, listing the region first when the
    /// snapshot is older than `max_age` (one caller lists; the others wait and read
    /// it). Also says whether this call took the listing.
    async fn read<T>(
        &self,
        region: &str,
        max_age: Duration,
        f: impl Fn(&Snapshot) -> T,
    ) -> Result<(T, Taken), AdsError> {
        let listing = self.region(region);
        if let Some(v) = listing.fresh(max_age, &f) {
            return Ok((v, Taken::Earlier));
        }
        let _one = listing.refresh.lock().await;
        if let Some(v) = listing.fresh(max_age, &f) {
            return Ok((v, Taken::Earlier));
        }
        let taken = Instant::now();
        let exports = self.inner.list(region).await?;
        listing.replace(&exports, taken);
        let v = listing.fresh(Duration::MAX, &f).unwrap_or_else(|| f(&Snapshot { taken, exports: HashMap::new() }));
        Ok((v, Taken::Now))
    }
}

impl<S: ExportService> ExportService for SharedListing<S> {
    async fn start(&self, region: &str) -> Result<StartedExport, AdsError> {
        self.inner.start(region).await
    }

    async fn describe(&self, region: &str, export_id: &str) -> Result<ExportDescription, AdsError> {
        let answer = self.inner.describe(region, export_id).await;
        if let Ok(d) = &answer {
            self.region(region).update(d);
        }
        answer
    }

    async fn list(&self, region: &str) -> Result<Vec<ExportDescription>, AdsError> {
        let taken = Instant::now();
        let answer = self.inner.list(region).await;
        if let Ok(exports) = &answer {
            self.region(region).replace(exports, taken);
        }
        answer
    }

    async fn stop(&self, region: &str, export_id: &str) -> Result<StopTimes, AdsError> {
        let answer = self.inner.stop(region, export_id).await;
        self.region(region).forget(export_id);
        answer
    }

    async fn describe_shared(
        &self,
        region: &str,
        export_id: &str,
        max_age: Duration,
    ) -> Result<ExportDescription, AdsError> {
        match self.read(region, max_age, |s| s.exports.get(export_id).cloned()).await?.0 {
            Some(d) => Ok(d),
            // Not in the listing: an export this listing predates, or an unknown ID.
            None => self.describe(region, export_id).await,
        }
    }

    /// The listing as [`SharedListing`] holds it; when it was taken earlier, each
    /// export it shows running (usually none or one) is described afresh, so a stale
    /// entry cannot hold the region busy for a whole `max_age`.
    async fn list_shared(&self, region: &str, max_age: Duration) -> Result<Vec<ExportDescription>, AdsError> {
        let (exports, taken): (Vec<ExportDescription>, _) =
            self.read(region, max_age, |s| s.exports.values().cloned().collect()).await?;
        if taken == Taken::Now {
            return Ok(exports);
        }
        let mut confirmed = Vec::with_capacity(exports.len());
        for d in exports {
            if !d.status.known().is_some_and(ExportStatus::is_running) {
                confirmed.push(d);
                continue;
            }
            match self.describe(region, &d.export_id).await {
                Ok(fresh) => confirmed.push(fresh),
                Err(e) if e.reason == Reason::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ads::{Operation, ReportedStatus};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A region of `n` exports; counts the calls per kind.
    #[derive(Default)]
    struct Counting {
        exports: Mutex<Vec<ExportDescription>>,
        lists: AtomicUsize,
        describes: AtomicUsize,
    }

    fn export(id: &str, status: ExportStatus) -> ExportDescription {
        ExportDescription { export_id: id.into(), status: ReportedStatus::Known(status), ..Default::default() }
    }

    impl Counting {
        fn with(n: usize) -> Self {
            let all = (0..n).map(|i| export(&format!("e-{i}"), ExportStatus::Inactive)).collect();
            Self { exports: Mutex::new(all), ..Self::default() }
        }
    }

    impl ExportService for Counting {
        async fn start(&self, _: &str) -> Result<StartedExport, AdsError> {
            let id = format!("e-{}", self.exports.lock().unwrap().len());
            self.exports.lock().unwrap().push(export(&id, ExportStatus::Active));
            Ok(StartedExport { export_id: id, ..Default::default() })
        }
        async fn describe(&self, _: &str, id: &str) -> Result<ExportDescription, AdsError> {
            self.describes.fetch_add(1, Ordering::SeqCst);
            let found = self.exports.lock().unwrap().iter().find(|d| d.export_id == id).cloned();
            found.ok_or_else(|| AdsError::new(Operation::Describe, Reason::NotFound, format!("{id} not found")))
        }
        async fn list(&self, _: &str) -> Result<Vec<ExportDescription>, AdsError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            Ok(self.exports.lock().unwrap().clone())
        }
        async fn stop(&self, _: &str, id: &str) -> Result<StopTimes, AdsError> {
            for d in self.exports.lock().unwrap().iter_mut().filter(|d| d.export_id == id) {
                d.status = ReportedStatus::Known(ExportStatus::Inactive);
            }
            Ok(StopTimes::default())
        }
    }

    const PERIOD: Duration = Duration::from_secs(600);

    #[tokio::test]
    async fn many_reads_in_one_period_make_one_listing() {
        let shared = Arc::new(SharedListing::new(Counting::with(250)));
        let reads = (0..250).map(|i| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.describe_shared("r", &format!("e-{i}"), PERIOD).await })
        });
        for read in futures::future::join_all(reads).await {
            assert!(read.unwrap().unwrap().status.is(ExportStatus::Inactive));
        }
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 1, "one listing for all 250 reads");
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst), 0);
        assert_eq!(shared.list_shared("r", PERIOD).await.unwrap().len(), 250);
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 1, "the pre-Start check reads the same listing");
        // A listing older than the period is taken anew.
        shared.describe_shared("r", "e-1", Duration::ZERO).await.unwrap();
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unknown_and_stopped_exports_are_described_by_id() {
        let shared = SharedListing::new(Counting::with(3));
        shared.list_shared("r", PERIOD).await.unwrap();
        let id = shared.start("r").await.unwrap().export_id;
        // Started after the listing: asked by ID, then known.
        assert!(shared.describe_shared("r", &id, PERIOD).await.unwrap().status.is(ExportStatus::Active));
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst), 1);
        shared.describe_shared("r", &id, PERIOD).await.unwrap();
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst), 1, "the Describe answer updated the listing");
        // After Stop the listing's entry is stale: the next read asks ADS.
        shared.stop("r", &id).await.unwrap();
        assert!(shared.describe_shared("r", &id, PERIOD).await.unwrap().status.is(ExportStatus::Inactive));
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst), 2);
        // A running export in an earlier listing is confirmed by ID before it holds
        // the region busy: here it was stopped meanwhile.
        let id = shared.start("r").await.unwrap().export_id;
        shared.describe("r", &id).await.unwrap();
        shared.inner().stop("r", &id).await.unwrap(); // out of band: the listing still says ACTIVE
        let busy = shared.list_shared("r", PERIOD).await.unwrap();
        assert!(busy.iter().all(|d| !d.status.is(ExportStatus::Active)), "{busy:?}");
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst), 4);
        let missing = shared.describe_shared("r", "e-nope", PERIOD).await.unwrap_err();
        assert_eq!(missing.reason, Reason::NotFound);
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 1);
    }
}
