//! One shared view of ADS per region: [`SharedListing`] wraps an [`ExportService`] and
//! serves the reads of all reconciles from
//!
//! - one `DescribeContinuousExports` listing of the region (100 per page, following
//!   `nextToken`), taken at most once per `max_age` and by one caller at a time, for the
//!   steady-state reads ([`ExportService::describe_shared`], [`ExportService::list_shared`]);
//! - one Describe-by-ID queue per region: every read by ID (after Start, before Stop,
//!   an ID the listing lacks) joins the next call, which carries up to
//!   [`MAX_IDS_PER_DESCRIBE`] `exportIds`. A call is sent as soon as the previous one
//!   returned, so a lone read waits for nothing and reads arriving together share one call;
//! - a transition watch on that queue: an export seen in `START_IN_PROGRESS` or
//!   `STOP_IN_PROGRESS`, or just stopped, is looked at again (at once after a Stop, else
//!   after 250 ms), the delay doubling to 30 s, all due exports of the region in one call,
//!   until it leaves the transition. Each change it sees is sent to
//!   [`SharedListing::changes`] (the controller reconciles the objects that claim the
//!   export at once), and the reconciles of objects in transition read its latest look
//!   ([`ExportService::describe_watched`]) instead of calling ADS on their own timers.
//!   Describing the few exports in transition by ID costs one call per look, where a
//!   listing would cost one per 100 exports of the region.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use tokio::sync::{Notify, oneshot};

use super::limit::in_background;
use super::{
    AdsError, ExportDescription, ExportService, ExportStatus, Operation, Reason, ReportedStatus, StartedExport,
    StopTimes,
};

/// Most export IDs in one DescribeContinuousExports call (its `maxResults` ceiling).
pub const MAX_IDS_PER_DESCRIBE: usize = 100;

/// The transition watch's first delay (after a look that found the export in
/// transition); it doubles on every look.
pub const WATCH_MIN: Duration = Duration::from_millis(250);

/// The transition watch's longest delay between two looks of an export.
pub const WATCH_MAX: Duration = Duration::from_secs(30);

/// An export whose status the transition watch saw change (or vanish).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// The AWS region, e.g. `us-west-2`.
    pub region: String,
    /// The export's `exportId`.
    pub export_id: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `START_IN_PROGRESS` or `STOP_IN_PROGRESS`.
fn in_transition(status: &ReportedStatus) -> bool {
    matches!(status.known(), Some(ExportStatus::StartInProgress | ExportStatus::StopInProgress))
}

/// What is known of one export, and since when (`description: None`: known to be
/// stale, e.g. just stopped; the next read asks ADS).
#[derive(Debug)]
struct Entry {
    description: Option<ExportDescription>,
    seen: Instant,
}

/// A region's exports as last seen, and when the region was last listed.
#[derive(Debug, Default)]
struct Snapshot {
    listed: Option<Instant>,
    /// How many listings have been taken (see [`SharedListing::read`]).
    listings: u64,
    exports: HashMap<String, Entry>,
}

impl Snapshot {
    /// A listing taken at `taken` replaces every entry older than it; entries seen
    /// after it (a Describe or Stop answered meanwhile) are newer and kept.
    fn replace(&mut self, exports: &[ExportDescription], taken: Instant) {
        let mut fresh: HashMap<String, Entry> = exports
            .iter()
            .map(|d| (d.export_id.clone(), Entry { description: Some(d.clone()), seen: taken }))
            .collect();
        fresh.extend(self.exports.drain().filter(|(_, e)| e.seen > taken));
        self.exports = fresh;
        self.listed = Some(taken);
        self.listings += 1;
    }

    /// What is known of `id` since `seen` (`None`: the description is stale).
    fn set(&mut self, id: &str, description: Option<&ExportDescription>, seen: Instant) {
        if self.exports.get(id).is_some_and(|e| e.seen > seen) {
            return; // a newer answer is in already
        }
        self.exports.insert(id.to_owned(), Entry { description: description.cloned(), seen });
    }

    fn known(&self, id: &str) -> Option<&ExportDescription> {
        self.exports.get(id)?.description.as_ref()
    }
}

/// The transition watch's record of one export: its status at the last look, when
/// the next look is due, how many looks it had, and whether the next look is prompt
/// (the first after a Stop: in the foreground lane, see [`super::limit`]).
#[derive(Debug)]
struct Watch {
    last: ReportedStatus,
    due: Instant,
    looks: u32,
    prompt: bool,
}

/// The delay after the `looks`-th look: 250 ms doubling to 30 s.
fn watch_delay(looks: u32) -> Duration {
    let factor = 1u32.checked_shl(looks.saturating_sub(1)).unwrap_or(u32::MAX);
    WATCH_MIN.saturating_mul(factor).min(WATCH_MAX)
}

type Answer = Result<ExportDescription, AdsError>;
type Waiters = Vec<oneshot::Sender<Answer>>;

/// The Describe-by-ID queue of a region: reads waiting for the next call, the
/// exports under watch, and whether a background look is in flight.
#[derive(Debug, Default)]
struct Queue {
    asked: HashMap<String, Waiters>,
    watched: HashMap<String, Watch>,
    looking: bool,
    closed: bool,
}

/// One Describe-by-ID call: the IDs, who waits for each, and its lane.
struct Call {
    ids: Vec<String>,
    waiting: HashMap<String, Waiters>,
    background: bool,
}

/// What the region's worker does next: one call, sleep until a watched export is due
/// (or a read is queued, or the background look returned), or end.
enum Turn {
    Call(Call),
    Sleep(Option<Instant>),
    Close,
}

impl Queue {
    /// In the foreground: the waiting reads, with the watched exports that are due
    /// (they share the call), or the prompt looks when they are due. In the background,
    /// when no background look is in flight: the watched exports that are due. At most
    /// [`MAX_IDS_PER_DESCRIBE`] IDs in a call; an ID in a call is not due again until
    /// its answer is in.
    fn turn(&mut self, now: Instant) -> Turn {
        if self.closed {
            return Turn::Close;
        }
        let mut ids: Vec<String> = self.asked.keys().take(MAX_IDS_PER_DESCRIBE).cloned().collect();
        let waiting: HashMap<String, Waiters> =
            ids.iter().map(|id| (id.clone(), self.asked.remove(id).unwrap_or_default())).collect();
        let prompt = self.watched.values().any(|w| w.prompt && w.due <= now);
        let background = ids.is_empty() && !prompt;
        if background && self.looking {
            // Woken when the look in flight returns or a read is queued.
            return Turn::Sleep(self.watched.values().filter(|w| w.prompt).map(|w| w.due).min());
        }
        let room = MAX_IDS_PER_DESCRIBE - ids.len();
        let due = self.watched.iter_mut().filter(|(id, w)| w.due <= now && !waiting.contains_key(*id));
        for (id, w) in due.take(room) {
            w.due = now + WATCH_MAX; // until its answer sets the next look
            ids.push(id.clone());
        }
        if ids.is_empty() {
            return Turn::Sleep(self.watched.values().map(|w| w.due).min());
        }
        self.looking |= background;
        Turn::Call(Call { ids, waiting, background })
    }

    /// Watches `id` (unless it is already) from status `last`, first looking at `due`.
    fn watch(&mut self, id: &str, last: &ReportedStatus, due: Instant) {
        let new = || Watch { last: last.clone(), due, looks: 0, prompt: false };
        self.watched.entry(id.to_owned()).or_insert_with(new);
    }

    /// Watches `id` just stopped: a prompt look at once.
    fn watch_stopped(&mut self, id: &str, now: Instant) {
        let last: ReportedStatus = ExportStatus::StopInProgress.into();
        let w = self.watched.entry(id.to_owned()).or_insert_with(|| Watch { last, due: now, looks: 0, prompt: true });
        w.due = now;
        w.prompt = true;
    }

    /// Follows one answer about `id`; `true` when it is watched and its status changed
    /// (or it vanished). An export found in transition is watched from then on; one
    /// that left the transition is no longer.
    fn looked(&mut self, id: &str, answer: &Answer, now: Instant) -> bool {
        let Some(w) = self.watched.get_mut(id) else {
            if let Some(d) = answer.as_ref().ok().filter(|d| in_transition(&d.status)) {
                self.watch(id, &d.status, now + WATCH_MIN);
            }
            return false;
        };
        w.looks = w.looks.saturating_add(1);
        w.due = now + watch_delay(w.looks);
        w.prompt = false;
        match answer {
            Ok(d) => {
                let changed = d.status != w.last;
                w.last = d.status.clone();
                if !in_transition(&d.status) {
                    self.watched.remove(id);
                }
                changed
            }
            Err(e) if e.reason == Reason::NotFound => {
                self.watched.remove(id);
                true
            }
            Err(_) => false,
        }
    }
}

/// One region: its snapshot, the lock that makes one caller at a time list it, and
/// its Describe-by-ID queue with the worker's wake-up.
#[derive(Debug)]
struct Region {
    name: String,
    snapshot: Mutex<Snapshot>,
    refresh: tokio::sync::Mutex<()>,
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Region {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            snapshot: Mutex::default(),
            refresh: tokio::sync::Mutex::new(()),
            queue: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Reads the snapshot with `f` when its listing is at most `max_age` old.
    fn fresh<T>(&self, max_age: Duration, f: impl FnOnce(&Snapshot) -> T) -> Option<T> {
        let s = lock(&self.snapshot);
        s.listed.filter(|t| t.elapsed() <= max_age).map(|_| f(&s))
    }

    /// The export as last seen, when that was at most `max_age` ago.
    fn seen_within(&self, id: &str, max_age: Duration) -> Option<ExportDescription> {
        let s = lock(&self.snapshot);
        let e = s.exports.get(id).filter(|e| e.seen.elapsed() <= max_age)?;
        e.description.clone()
    }

    /// A listing taken at `taken`; its exports in transition are watched.
    fn replace(&self, exports: &[ExportDescription], taken: Instant) {
        lock(&self.snapshot).replace(exports, taken);
        for d in exports.iter().filter(|d| in_transition(&d.status)) {
            self.watch(&d.export_id, &d.status, taken + WATCH_MIN);
        }
    }

    fn watch(&self, id: &str, last: &ReportedStatus, due: Instant) {
        lock(&self.queue).watch(id, last, due);
        self.wake.notify_one();
    }

    /// The export as last seen, when that was at most `max_age` ago or it is
    /// `INACTIVE` (terminal in ADS: it never changes again).
    fn last_look(&self, id: &str, max_age: Duration) -> Option<ExportDescription> {
        let s = lock(&self.snapshot);
        let e = s.exports.get(id)?;
        let d = e.description.as_ref()?;
        (e.seen.elapsed() <= max_age || d.status.known().is_some_and(ExportStatus::is_terminal)).then(|| d.clone())
    }

    /// Queues a read of `id` for the next call.
    fn ask(&self, id: &str) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        lock(&self.queue).asked.entry(id.to_owned()).or_default().push(tx);
        self.wake.notify_one();
        rx
    }

    fn close(&self) {
        lock(&self.queue).closed = true;
        self.wake.notify_one();
    }
}

/// Whether a shared read may use a listing older than its `max_age` while a new one is
/// taken in the background (`Refresh`), or waits for the new one (`Wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Staleness {
    Wait,
    Refresh,
}

/// Whether a shared read's listing was taken by that read or earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Taken {
    Now,
    Earlier,
}

/// What the regions' workers share with [`SharedListing`].
#[derive(Debug)]
struct Core<S> {
    inner: S,
    changes: Mutex<Option<mpsc::UnboundedSender<Changed>>>,
}

impl<S> Core<S> {
    fn changed(&self, region: &str, export_id: String) {
        if let Some(tx) = lock(&self.changes).as_ref() {
            let _ = tx.unbounded_send(Changed { region: region.to_owned(), export_id });
        }
    }
}

/// An [`ExportService`] whose reads are shared per region (see the module docs); Start
/// and Stop go to the wrapped service, and every answer keeps the shared view current
/// (a Describe updates an entry, a listing the snapshot, a Stop marks the stopped
/// export's entry stale and puts it under watch).
#[derive(Debug)]
pub struct SharedListing<S> {
    core: Arc<Core<S>>,
    regions: Mutex<HashMap<String, Arc<Region>>>,
}

impl<S: ExportService> SharedListing<S> {
    /// Wraps `inner`; no listing is taken until a shared read asks for one. A region's
    /// Describe-by-ID worker (a tokio task) starts with its first call, so the methods
    /// must run inside a tokio runtime; the workers end when this value is dropped.
    pub fn new(inner: S) -> Self {
        Self { core: Arc::new(Core { inner, changes: Mutex::default() }), regions: Mutex::default() }
    }

    /// The wrapped service.
    pub fn inner(&self) -> &S {
        &self.core.inner
    }

    /// The changes the transition watch sees from now on: one [`Changed`] per export
    /// whose status moved (or which vanished) between two looks. A second call
    /// replaces the first receiver (which then ends).
    pub fn changes(&self) -> mpsc::UnboundedReceiver<Changed> {
        let (tx, rx) = mpsc::unbounded();
        *lock(&self.core.changes) = Some(tx);
        rx
    }

    fn region(&self, name: &str) -> Arc<Region> {
        let mut regions = lock(&self.regions);
        if let Some(r) = regions.get(name) {
            return r.clone();
        }
        let r = Arc::new(Region::new(name));
        tokio::spawn(work(Arc::downgrade(&self.core), r.clone()));
        regions.insert(name.to_owned(), r.clone());
        r
    }

    /// Reads the region's snapshot with `f`, listing the region first when the
    /// listing is older than `max_age` (one caller lists; the others wait and read
    /// it, whatever its age by then). With `Staleness::Refresh`, a listing older than
    /// that is read as it is while a new one is taken in the background. Also says
    /// whether this call took the listing.
    async fn read<T>(
        &self,
        region: &str,
        max_age: Duration,
        staleness: Staleness,
        f: impl Fn(&Snapshot) -> T,
    ) -> Result<(T, Taken), AdsError> {
        let listing = self.region(region);
        if let Some(v) = listing.fresh(max_age, &f) {
            return Ok((v, Taken::Earlier));
        }
        if staleness == Staleness::Refresh
            && let Some(v) = listing.fresh(Duration::MAX, &f)
        {
            self.refresh_in_background(listing, max_age);
            return Ok((v, Taken::Earlier));
        }
        let before = lock(&listing.snapshot).listings;
        let _one = listing.refresh.lock().await;
        if let Some(v) = listing.fresh(max_age, &f) {
            return Ok((v, Taken::Earlier));
        }
        {
            let s = lock(&listing.snapshot);
            if s.listings != before {
                // Taken while this caller waited: as fresh as a listing it would start
                // now, though older than `max_age` when the region's pages take longer
                // than that to list (100 pages at 5 requests per second: 20 s). Listing
                // again would never end the wait.
                return Ok((f(&s), Taken::Earlier));
            }
        }
        let taken = Instant::now();
        let exports = in_background(self.core.inner.list(region)).await?;
        listing.replace(&exports, taken);
        let v = f(&lock(&listing.snapshot));
        Ok((v, Taken::Now))
    }
}

impl<S: ExportService> SharedListing<S> {
    /// Takes a new listing of `region` in the background lane, unless one is being
    /// taken or was taken within `max_age` meanwhile.
    fn refresh_in_background(&self, region: Arc<Region>, max_age: Duration) {
        let core = self.core.clone();
        tokio::spawn(async move {
            let Ok(_one) = region.refresh.try_lock() else { return };
            if region.fresh(max_age, |_| ()).is_some() {
                return;
            }
            let taken = Instant::now();
            if let Ok(exports) = in_background(core.inner.list(&region.name)).await {
                region.replace(&exports, taken);
            }
        });
    }
}

impl<S> Drop for SharedListing<S> {
    fn drop(&mut self) {
        for r in lock(&self.regions).values() {
            r.close();
        }
    }
}

fn not_found(region: &str, id: &str) -> AdsError {
    AdsError::new(Operation::Describe, Reason::NotFound, format!("export {id} not found in {region}"))
}

/// One Describe of `ids`; when ADS does not know one of several IDs (it then fails
/// the whole call), each is described on its own so the others still get answers.
async fn describe_ids<S: ExportService>(inner: &S, region: &str, ids: &[String]) -> HashMap<String, Answer> {
    if let [id] = ids {
        return HashMap::from([(id.clone(), inner.describe(region, id).await)]);
    }
    match inner.describe_many(region, ids).await {
        Ok(found) => {
            let mut answers: HashMap<String, Answer> =
                found.into_iter().map(|d| (d.export_id.clone(), Ok(d))).collect();
            for id in ids {
                answers.entry(id.clone()).or_insert_with(|| Err(not_found(region, id)));
            }
            answers
        }
        Err(e) if e.reason == Reason::NotFound => {
            let mut answers = HashMap::with_capacity(ids.len());
            for id in ids {
                answers.insert(id.clone(), inner.describe(region, id).await);
            }
            answers
        }
        Err(e) => ids.iter().map(|id| (id.clone(), Err(e.clone()))).collect(),
    }
}

/// A region's worker: sends the queue's foreground calls one after the other and its
/// background looks (one at a time) beside them, records what they answer, reports
/// the watch's changes, until the [`SharedListing`] is dropped.
async fn work<S: ExportService>(core: Weak<Core<S>>, region: Arc<Region>) {
    loop {
        let turn = lock(&region.queue).turn(Instant::now());
        let call = match turn {
            Turn::Close => return,
            Turn::Sleep(None) => {
                region.wake.notified().await;
                continue;
            }
            Turn::Sleep(Some(due)) => {
                tokio::select! {
                    () = region.wake.notified() => {}
                    () = tokio::time::sleep_until(due.into()) => {}
                }
                continue;
            }
            Turn::Call(call) => call,
        };
        let Some(core) = core.upgrade() else { return };
        if call.background {
            let region = region.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let answers = in_background(describe_ids(&core.inner, &region.name, &call.ids)).await;
                record(&core, &region, call, answers, sent);
                lock(&region.queue).looking = false;
                region.wake.notify_one();
            });
            continue;
        }
        let sent = Instant::now();
        let answers = describe_ids(&core.inner, &region.name, &call.ids).await;
        record(&core, &region, call, answers, sent);
    }
}

/// Records the answers of `call` (sent at `sent`): the snapshot's entries, the watch's
/// next looks and changes, and the waiting reads' answers.
fn record<S>(core: &Core<S>, region: &Region, call: Call, mut answers: HashMap<String, Answer>, sent: Instant) {
    let Call { ids, mut waiting, .. } = call;
    let now = Instant::now();
    for id in ids {
        let answer = answers.remove(&id).unwrap_or_else(|| Err(not_found(&region.name, &id)));
        if let Ok(d) = &answer {
            lock(&region.snapshot).set(&id, Some(d), sent);
        }
        if lock(&region.queue).looked(&id, &answer, now) {
            core.changed(&region.name, id.clone());
        }
        for tx in waiting.remove(&id).unwrap_or_default() {
            let _ = tx.send(answer.clone());
        }
    }
}

impl<S: ExportService> ExportService for SharedListing<S> {
    async fn start(&self, region: &str) -> Result<StartedExport, AdsError> {
        self.core.inner.start(region).await
    }

    /// Joins the region's next Describe-by-ID call (sent at once when none is in flight).
    async fn describe(&self, region: &str, export_id: &str) -> Result<ExportDescription, AdsError> {
        let answer = self.region(region).ask(export_id).await;
        answer.unwrap_or_else(|_| {
            Err(AdsError::new(Operation::Describe, Reason::ServerError, "the operator is shutting down".to_owned()))
        })
    }

    async fn describe_many(&self, region: &str, export_ids: &[String]) -> Result<Vec<ExportDescription>, AdsError> {
        let asked: Vec<_> = export_ids.iter().map(|id| self.describe(region, id)).collect();
        futures::future::join_all(asked).await.into_iter().collect()
    }

    async fn list(&self, region: &str) -> Result<Vec<ExportDescription>, AdsError> {
        let taken = Instant::now();
        let answer = self.core.inner.list(region).await;
        if let Ok(exports) = &answer {
            self.region(region).replace(exports, taken);
        }
        answer
    }

    /// Stops the export; its entry is stale from then on, and the watch looks at it at
    /// once, in the foreground lane (it is `STOP_IN_PROGRESS` or already `INACTIVE`).
    async fn stop(&self, region: &str, export_id: &str) -> Result<StopTimes, AdsError> {
        let answer = self.core.inner.stop(region, export_id).await;
        let r = self.region(region);
        lock(&r.snapshot).set(export_id, None, Instant::now());
        if answer.is_ok() {
            lock(&r.queue).watch_stopped(export_id, Instant::now());
            r.wake.notify_one();
        }
        answer
    }

    async fn describe_shared(
        &self,
        region: &str,
        export_id: &str,
        max_age: Duration,
    ) -> Result<ExportDescription, AdsError> {
        if let Some(d) = self.region(region).last_look(export_id, max_age) {
            return Ok(d);
        }
        match self.read(region, max_age, Staleness::Wait, |s| s.known(export_id).cloned()).await?.0 {
            Some(d) => Ok(d),
            // Not in the listing: an export this listing predates, or an unknown ID.
            None => self.describe(region, export_id).await,
        }
    }

    /// The latest look when it is at most `max_age` old (an export in transition is
    /// kept under watch; see the module docs), else a Describe by ID.
    async fn describe_watched(
        &self,
        region: &str,
        export_id: &str,
        max_age: Duration,
    ) -> Result<ExportDescription, AdsError> {
        let r = self.region(region);
        match r.seen_within(export_id, max_age) {
            Some(d) => {
                if in_transition(&d.status) {
                    r.watch(export_id, &d.status, Instant::now() + WATCH_MIN);
                }
                Ok(d)
            }
            None => self.describe(region, export_id).await,
        }
    }

    /// The listing as [`SharedListing`] holds it; when it was taken earlier, each
    /// export it shows running (usually none or one) is described afresh, so a stale
    /// entry cannot hold the region busy for a whole `max_age`. A listing older than
    /// `max_age` is read as it is while a new one is taken in the background: the
    /// check before a Start waits for no listing once there is one (an export started
    /// elsewhere since makes Start answer `ConflictErrorException`, read as before).
    async fn list_shared(&self, region: &str, max_age: Duration) -> Result<Vec<ExportDescription>, AdsError> {
        let all = |s: &Snapshot| -> Vec<ExportDescription> {
            s.exports.values().filter_map(|e| e.description.clone()).collect()
        };
        let (exports, taken) = self.read(region, max_age, Staleness::Refresh, all).await?;
        if taken == Taken::Now {
            return Ok(exports);
        }
        let (running, mut confirmed): (Vec<_>, Vec<_>) =
            exports.into_iter().partition(|d| d.status.known().is_some_and(ExportStatus::is_running));
        let ids: Vec<String> = running.into_iter().map(|d| d.export_id).collect();
        let fresh = futures::future::join_all(ids.iter().map(|id| self.describe(region, id))).await;
        for answer in fresh {
            match answer {
                Ok(d) => confirmed.push(d),
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
    use crate::ads::limit::{Lane, current_lane};
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A region of exports; counts the calls per kind (a Describe of several IDs is one
    /// call). Each call takes 5 ms; a Stop leaves the export `STOP_IN_PROGRESS` for
    /// `stop_takes`.
    #[derive(Default)]
    struct Counting {
        exports: Mutex<Vec<ExportDescription>>,
        stopping: Mutex<HashMap<String, Instant>>,
        stop_takes: Duration,
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

        /// The export as ADS would answer now.
        fn find(&self, id: &str) -> Option<ExportDescription> {
            let mut found = self.exports.lock().unwrap().iter().find(|d| d.export_id == id).cloned()?;
            if let Some(since) = self.stopping.lock().unwrap().get(id) {
                let settled = since.elapsed() >= self.stop_takes;
                found.status = if settled { ExportStatus::Inactive } else { ExportStatus::StopInProgress }.into();
            }
            Some(found)
        }
    }

    async fn takes_a_while() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    impl ExportService for Counting {
        async fn start(&self, _: &str) -> Result<StartedExport, AdsError> {
            let id = format!("e-{}", self.exports.lock().unwrap().len());
            self.exports.lock().unwrap().push(export(&id, ExportStatus::Active));
            Ok(StartedExport { export_id: id, ..Default::default() })
        }
        async fn describe(&self, _: &str, id: &str) -> Result<ExportDescription, AdsError> {
            self.describes.fetch_add(1, Ordering::SeqCst);
            takes_a_while().await;
            self.find(id).ok_or_else(|| not_found("r", id))
        }
        async fn describe_many(&self, _: &str, ids: &[String]) -> Result<Vec<ExportDescription>, AdsError> {
            self.describes.fetch_add(1, Ordering::SeqCst);
            assert!(ids.len() <= MAX_IDS_PER_DESCRIBE, "{} IDs in one call", ids.len());
            takes_a_while().await;
            ids.iter().map(|id| self.find(id).ok_or_else(|| not_found("r", id))).collect()
        }
        async fn list(&self, _: &str) -> Result<Vec<ExportDescription>, AdsError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            takes_a_while().await;
            let ids: Vec<String> = self.exports.lock().unwrap().iter().map(|d| d.export_id.clone()).collect();
            Ok(ids.iter().filter_map(|id| self.find(id)).collect())
        }
        async fn stop(&self, _: &str, id: &str) -> Result<StopTimes, AdsError> {
            self.stopping.lock().unwrap().insert(id.to_owned(), Instant::now());
            Ok(StopTimes::default())
        }
    }

    const PERIOD: Duration = Duration::from_secs(600);

    #[tokio::test]
    async fn reads_waiting_for_a_listing_longer_than_the_period_take_it_and_do_not_list_again() {
        // The listing takes 5 ms, the period is 1 ms: by the time it is in, it is stale.
        let shared = Arc::new(SharedListing::new(Counting::with(20)));
        let reads = (0..20).map(|i| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.describe_shared("r", &format!("e-{i}"), Duration::from_millis(1)).await })
        });
        for read in futures::future::join_all(reads).await {
            assert!(read.unwrap().unwrap().status.is(ExportStatus::Inactive));
        }
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 1, "the waiters read the listing they waited for");
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst), 0);
    }

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
        // An INACTIVE export is terminal in ADS: read from the listing at any age.
        shared.describe_shared("r", "e-1", Duration::ZERO).await.unwrap();
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 1, "INACTIVE never goes stale");
        // Anything else is not: a listing older than the period is taken anew.
        let id = shared.start("r").await.unwrap().export_id;
        assert!(shared.describe_shared("r", &id, Duration::ZERO).await.unwrap().status.is(ExportStatus::Active));
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 2);
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_stale_listing_is_read_before_a_start_while_a_new_one_is_taken() {
        let shared = SharedListing::new(Counting::with(3));
        assert_eq!(shared.list_shared("r", PERIOD).await.unwrap().len(), 3);
        shared.inner().exports.lock().unwrap().push(export("e-new", ExportStatus::Inactive));
        // Older than max_age: read as it is (3 exports), a new listing in the background.
        assert_eq!(shared.list_shared("r", Duration::ZERO).await.unwrap().len(), 3);
        let refreshed = tokio::time::timeout(Duration::from_secs(10), async {
            while shared.list_shared("r", PERIOD).await.unwrap().len() < 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        refreshed.await.expect("the new listing within the deadline");
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 2, "one listing in the background");
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

    #[tokio::test]
    async fn reads_by_id_at_once_share_calls_of_up_to_100_ids() {
        const N: usize = 250;
        let shared = Arc::new(SharedListing::new(Counting::with(N)));
        let reads = (0..N).map(|i| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.describe("r", &format!("e-{i}")).await })
        });
        for (i, read) in futures::future::join_all(reads).await.into_iter().enumerate() {
            assert_eq!(read.unwrap().unwrap().export_id, format!("e-{i}"));
        }
        let calls = shared.inner().describes.load(Ordering::SeqCst);
        let ceiling = N.div_ceil(MAX_IDS_PER_DESCRIBE) + 1;
        assert!(calls <= ceiling, "{calls} Describe calls for {N} reads at once, at most {ceiling} wanted");
    }

    #[tokio::test]
    async fn an_unknown_id_among_several_fails_alone() {
        let shared = Arc::new(SharedListing::new(Counting::with(3)));
        let ids = ["e-0", "e-nope", "e-1", "e-2"];
        let reads = ids.map(|id| {
            let shared = shared.clone();
            tokio::spawn(async move { shared.describe("r", id).await })
        });
        let answers: Vec<_> = futures::future::join_all(reads).await.into_iter().map(Result::unwrap).collect();
        for (id, answer) in ids.iter().zip(&answers) {
            match *id {
                "e-nope" => assert_eq!(answer.as_ref().unwrap_err().reason, Reason::NotFound),
                _ => assert_eq!(answer.as_ref().unwrap().export_id, *id),
            }
        }
    }

    /// [`Counting`] whose background Describe calls wait for the test's permit, and
    /// which records each Describe call's lane.
    struct Gated {
        fake: Counting,
        gate: tokio::sync::Semaphore,
        lanes: Mutex<Vec<Lane>>,
    }

    impl Gated {
        async fn pass(&self) {
            let lane = current_lane();
            self.lanes.lock().unwrap().push(lane);
            if lane == Lane::Background {
                self.gate.acquire().await.unwrap().forget();
            }
        }

        fn lanes(&self) -> Vec<Lane> {
            self.lanes.lock().unwrap().clone()
        }
    }

    impl ExportService for Gated {
        async fn start(&self, region: &str) -> Result<StartedExport, AdsError> {
            self.fake.start(region).await
        }
        async fn describe(&self, region: &str, id: &str) -> Result<ExportDescription, AdsError> {
            self.pass().await;
            self.fake.describe(region, id).await
        }
        async fn describe_many(&self, region: &str, ids: &[String]) -> Result<Vec<ExportDescription>, AdsError> {
            self.pass().await;
            self.fake.describe_many(region, ids).await
        }
        async fn list(&self, region: &str) -> Result<Vec<ExportDescription>, AdsError> {
            self.fake.list(region).await
        }
        async fn stop(&self, region: &str, id: &str) -> Result<StopTimes, AdsError> {
            self.fake.stop(region, id).await
        }
    }

    #[tokio::test]
    async fn background_looks_never_hold_up_a_stop_or_a_read() {
        let fake = Counting { stop_takes: Duration::from_secs(3600), ..Counting::with(3) };
        let shared = SharedListing::new(Gated { fake, gate: tokio::sync::Semaphore::new(0), lanes: Mutex::default() });
        let deadline = Duration::from_secs(10);
        // A stop: one prompt look at once (foreground), then the watch's looks in the
        // background; the next one is held by the gate.
        shared.stop("r", "e-0").await.unwrap();
        let waited = tokio::time::timeout(deadline, async {
            while !shared.inner().lanes().contains(&Lane::Background) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        waited.await.expect("a background look within the deadline");
        assert_eq!(shared.inner().lanes(), [Lane::Foreground, Lane::Background]);
        // While that look is held, a second stop's prompt look and a reconcile's read
        // are sent in the foreground, each in one call, without waiting for it.
        shared.stop("r", "e-1").await.unwrap();
        let read = tokio::time::timeout(deadline, shared.describe("r", "e-2")).await;
        assert!(read.expect("a read while a background look is held").unwrap().status.is(ExportStatus::Inactive));
        let lanes = shared.inner().lanes();
        assert_eq!(lanes[..2], [Lane::Foreground, Lane::Background]);
        assert!(lanes[2..].iter().all(|l| *l == Lane::Foreground), "{lanes:?}");
        assert!((1..=2).contains(&lanes[2..].len()), "{lanes:?}: the prompt look and the read, in one or two calls");
        shared.inner().gate.add_permits(1000);
        assert_eq!(shared.inner().fake.lists.load(Ordering::SeqCst), 0, "the watch describes, it does not list");
    }

    #[tokio::test]
    async fn a_stop_is_watched_until_it_settles_and_its_change_reported() {
        let fake = Counting { stop_takes: Duration::from_millis(600), ..Counting::with(250) };
        let shared = SharedListing::new(fake);
        let mut changes = shared.changes();
        let id = shared.start("r").await.unwrap().export_id;
        shared.list_shared("r", PERIOD).await.unwrap();
        let d0 = shared.inner().describes.load(Ordering::SeqCst);
        shared.stop("r", &id).await.unwrap();
        let changed = tokio::time::timeout(Duration::from_secs(10), changes.next()).await.expect("a change");
        assert_eq!(changed, Some(Changed { region: "r".into(), export_id: id.clone() }));
        // Looks at 0, 250 and 750 ms (250 ms doubling): the third sees INACTIVE.
        let looks = shared.inner().describes.load(Ordering::SeqCst) - d0;
        assert!((2..=4).contains(&looks), "{looks} looks for a 600 ms stop, 3 expected");
        // The reconcile the change triggers reads the look, without a call of its own.
        let read = shared.describe_watched("r", &id, WATCH_MAX).await.unwrap();
        assert!(read.status.is(ExportStatus::Inactive), "{read:?}");
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst) - d0, looks);
        assert_eq!(shared.inner().lists.load(Ordering::SeqCst), 1, "the watch describes by ID, it does not list");
        // Settled: the watch ends (no further looks).
        tokio::time::sleep(Duration::from_millis(600)).await; // a window in which no call may happen
        assert_eq!(shared.inner().describes.load(Ordering::SeqCst) - d0, looks);
    }
}
