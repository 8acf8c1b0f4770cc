//! A scripted fake [`ExportService`]: each operation answers from its own queue, in
//! order, and every call is recorded.

use super::*;

/// One call the controller made to ADS (the region is checked on the way in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Start,
    Describe(String),
    List,
    Stop(String),
}

pub(super) fn describe(id: &str) -> Call {
    Call::Describe(id.into())
}

pub(super) fn stop(id: &str) -> Call {
    Call::Stop(id.into())
}

#[derive(Default)]
pub(super) struct Script {
    pub(super) region: String,
    pub(super) start: VecDeque<Result<StartedExport, AdsError>>,
    pub(super) describe: VecDeque<Result<ExportDescription, AdsError>>,
    pub(super) list: VecDeque<Result<Vec<ExportDescription>, AdsError>>,
    pub(super) stop: VecDeque<Result<StopTimes, AdsError>>,
    pub(super) calls: Vec<Call>,
}

/// A scripted [`ExportService`]: each operation answers from its own queue, in order;
/// a call with nothing queued fails the test.
#[derive(Clone)]
pub(super) struct FakeAds(Arc<Mutex<Script>>);

impl FakeAds {
    pub(super) fn new() -> Self {
        Self(Arc::new(Mutex::new(Script { region: REGION.into(), ..Script::default() })))
    }

    pub(super) fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn on_start(&self, r: Result<StartedExport, AdsError>) -> &Self {
        self.script().start.push_back(r);
        self
    }

    pub(super) fn on_describe(&self, r: Result<ExportDescription, AdsError>) -> &Self {
        self.script().describe.push_back(r);
        self
    }

    pub(super) fn on_list(&self, r: Result<Vec<ExportDescription>, AdsError>) -> &Self {
        self.script().list.push_back(r);
        self
    }

    pub(super) fn on_stop(&self, r: Result<StopTimes, AdsError>) -> &Self {
        self.script().stop.push_back(r);
        self
    }

    /// The calls made so far, and forgets them.
    pub(super) fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.script().calls)
    }

    /// Every scripted answer was used.
    pub(super) fn assert_drained(&self) {
        let s = self.script();
        let left = (s.start.len(), s.describe.len(), s.list.len(), s.stop.len());
        assert_eq!(left, (0, 0, 0, 0), "scripted ADS answers left unused (start, describe, list, stop)");
    }

    pub(super) fn answer<T>(
        &self,
        region: &str,
        call: Call,
        queue: impl FnOnce(&mut Script) -> &mut VecDeque<Result<T, AdsError>>,
    ) -> Result<T, AdsError> {
        let mut s = self.script();
        assert_eq!(region, s.region, "{call:?} went to the wrong region");
        s.calls.push(call.clone());
        let answer = queue(&mut s).pop_front();
        let calls = s.calls.clone();
        drop(s);
        answer.unwrap_or_else(|| panic!("unexpected ADS call {call:?} (nothing scripted); calls so far: {calls:?}"))
    }
}

impl ExportService for FakeAds {
    async fn start(&self, region: &str) -> Result<StartedExport, AdsError> {
        self.answer(region, Call::Start, |s| &mut s.start)
    }

    async fn describe(&self, region: &str, export_id: &str) -> Result<ExportDescription, AdsError> {
        self.answer(region, describe(export_id), |s| &mut s.describe)
    }

    async fn list(&self, region: &str) -> Result<Vec<ExportDescription>, AdsError> {
        self.answer(region, Call::List, |s| &mut s.list)
    }

    async fn stop(&self, region: &str, export_id: &str) -> Result<StopTimes, AdsError> {
        self.answer(region, stop(export_id), |s| &mut s.stop)
    }
}

pub(super) fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
}

pub(super) fn export(id: &str, status: &str) -> ExportDescription {
    ExportDescription {
        export_id: id.into(),
        status: ReportedStatus::from_wire(status),
        status_detail: Some(format!("{status} detail")),
        s3_bucket: Some("aws-application-discovery-service-abc".into()),
        data_source: Some("AGENT".into()),
        database_name: Some("application_discovery_service_database".into()),
        start_time: Some(ts(SAMPLE_START)),
        stop_time: None,
    }
}

pub(super) fn started(id: &str) -> StartedExport {
    StartedExport {
        export_id: id.into(),
        s3_bucket: Some("aws-application-discovery-service-abc".into()),
        data_source: Some("AGENT".into()),
        database_name: Some("application_discovery_service_database".into()),
        start_time: Some(ts(SAMPLE_START)),
    }
}

pub(super) fn ads_error(operation: Operation, reason: Reason, message: &str) -> AdsError {
    AdsError::new(operation, reason, message)
}
