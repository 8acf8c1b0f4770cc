//! The seam between the controller and AWS Application Discovery Service (ADS).
//!
//! The controller talks to ADS only through [`ExportService`], so its logic is
//! unit-tested with a fake; [`aws::AwsExportService`] is the real implementation on
//! `aws-sdk-applicationdiscovery`. The SDK's types stop at this module: callers see
//! [`ExportDescription`], [`StartedExport`], [`StopTimes`] and [`AdsError`], in the
//! vocabulary of [`Operation`] and [`ExportStatus`] ([`model`], shared with the emulator).

pub mod assume;
pub mod aws;
pub mod classify;
pub mod credentials;
mod error;
pub mod home_region;
pub mod limit;
pub mod model;
pub mod shared;

pub use error::{AdsError, ErrorClass, Reason};
pub use model::{ExportStatus, Operation};

use std::future::Future;
use std::time::Duration;

/// An instant as ADS reports it: UTC, millisecond precision (ADS's awsJson1.1
/// answers carry epoch seconds with a fraction; see [`timestamp_from_epoch`]).
pub type Timestamp = k8s_openapi::jiff::Timestamp;

/// Formats an instant as RFC 3339 UTC with exactly three fractional digits,
/// e.g. `2017-04-28T18:43:25.639Z` (the form `status.startTime`/`stopTime` use).
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Converts ADS epoch seconds (with a fraction) to a [`Timestamp`], rounded to the
/// nearest millisecond, since ADS sends millisecond values such as `1493405005.639`
/// that are not exact in binary floating point.
///
/// Returns `None` when the value is outside the range a timestamp can hold.
pub fn timestamp_from_epoch(secs: i64, nanos: u32) -> Option<Timestamp> {
    let millis = i128::from(secs) * 1000 + (i128::from(nanos) + 500_000) / 1_000_000;
    Timestamp::from_millisecond(i64::try_from(millis).ok()?).ok()
}

/// A `status` as ADS reported it: one of the seven documented [`ExportStatus`]es, or a
/// value AWS may add later (or an empty string when AWS omits it), kept verbatim so it
/// passes through to `status.exportStatus` unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportedStatus {
    /// A documented status.
    Known(ExportStatus),
    /// Anything else, verbatim (empty when AWS omitted the member).
    Unknown(String),
}

impl ReportedStatus {
    /// Reads a wire value: a documented name becomes [`ReportedStatus::Known`].
    pub fn from_wire(s: &str) -> Self {
        s.parse().map_or_else(|_| ReportedStatus::Unknown(s.to_owned()), ReportedStatus::Known)
    }

    /// The wire value, e.g. `"ACTIVE"`.
    pub fn as_str(&self) -> &str {
        match self {
            ReportedStatus::Known(st) => st.as_str(),
            ReportedStatus::Unknown(s) => s,
        }
    }

    /// The documented status, if it is one.
    pub fn known(&self) -> Option<ExportStatus> {
        match self {
            ReportedStatus::Known(st) => Some(*st),
            ReportedStatus::Unknown(_) => None,
        }
    }

    /// Whether it is `status`.
    pub fn is(&self, status: ExportStatus) -> bool {
        self.known() == Some(status)
    }
}

impl Default for ReportedStatus {
    fn default() -> Self {
        ReportedStatus::Unknown(String::new())
    }
}

impl From<ExportStatus> for ReportedStatus {
    fn from(st: ExportStatus) -> Self {
        ReportedStatus::Known(st)
    }
}

/// One continuous export as DescribeContinuousExports reports it: one
/// `ContinuousExportDescription` member of the answer's `descriptions` list
/// (AWS Application Discovery Service API reference, "ContinuousExportDescription").
///
/// Times are UTC instants converted from the epoch seconds with a fraction that the
/// awsJson1.1 protocol carries (e.g. `1493405005.639`), rounded to the millisecond by
/// [`timestamp_from_epoch`]. Any member AWS omits becomes `None` (for `status`: an
/// empty string), except `exportId`: [`aws::AwsExportService`] drops an entry
/// without one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportDescription {
    /// `exportId`: the unique ID ADS assigned to the export. Never empty.
    pub export_id: String,
    /// `status` (`ContinuousExportStatus`): one of the seven [`ExportStatus`]es, or a
    /// value AWS adds later verbatim ([`ReportedStatus::Unknown`], empty when AWS omits it).
    pub status: ReportedStatus,
    /// `statusDetail`: what went wrong, if anything (e.g. `ACCESS_DENIED`,
    /// `FIREHOSE_ROLE_MISSING`), verbatim; `None` when omitted.
    pub status_detail: Option<String>,
    /// `s3Bucket`: name of the S3 bucket the export writes its Parquet files to;
    /// `None` when omitted.
    pub s3_bucket: Option<String>,
    /// `dataSource` (`DataSource`): the collector type, e.g. `AGENT`, verbatim; `None`
    /// when omitted.
    pub data_source: Option<String>,
    /// `schemaStorageConfig["databaseName"]`: the Glue database holding the schema
    /// (queried with Athena); `None` when AWS omits `schemaStorageConfig` or the map
    /// has no `databaseName` key.
    pub database_name: Option<String>,
    /// `startTime`: when the export was started (UTC, millisecond precision); `None`
    /// when omitted or outside [`Timestamp`]'s range.
    pub start_time: Option<Timestamp>,
    /// `stopTime`: when the export was stopped (UTC, millisecond precision); `None`
    /// when omitted (an export never stopped has none) or out of range.
    pub stop_time: Option<Timestamp>,
}

/// What StartContinuousExport returns: the members of its answer
/// (`StartContinuousExportResponse`; AWS Application Discovery Service API reference,
/// "StartContinuousExport", Response Elements).
///
/// The time is a UTC instant converted from epoch seconds with a fraction, rounded to
/// the millisecond by [`timestamp_from_epoch`]. Optional members AWS omits become
/// `None`; an answer without `exportId` is an error, never a `StartedExport` (see
/// [`ExportService::start`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartedExport {
    /// `exportId`: the unique ID ADS assigned to the new export. Never empty.
    pub export_id: String,
    /// `s3Bucket`: name of the S3 bucket the export writes its Parquet files to;
    /// `None` when omitted.
    pub s3_bucket: Option<String>,
    /// `dataSource` (`DataSource`): the collector type, e.g. `AGENT`, verbatim; `None`
    /// when omitted.
    pub data_source: Option<String>,
    /// `schemaStorageConfig["databaseName"]`: the Glue database holding the schema
    /// (queried with Athena); `None` when AWS omits `schemaStorageConfig` or the map
    /// has no `databaseName` key.
    pub database_name: Option<String>,
    /// `startTime`: when the export started (UTC, millisecond precision); `None` when
    /// omitted or outside [`Timestamp`]'s range.
    pub start_time: Option<Timestamp>,
}

/// What StopContinuousExport returns: the members of its answer
/// (`StopContinuousExportResponse`; AWS Application Discovery Service API reference,
/// "StopContinuousExport", Response Elements).
///
/// Both are UTC instants converted from epoch seconds with a fraction, rounded to the
/// millisecond by [`timestamp_from_epoch`]. Both are optional because the public docs
/// show a sample response with neither; callers fall back to Describe.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StopTimes {
    /// `startTime`: when the stopped export had started (UTC, millisecond
    /// precision); `None` when omitted or out of range.
    pub start_time: Option<Timestamp>,
    /// `stopTime`: when the export was stopped (UTC, millisecond precision); `None`
    /// when omitted or out of range.
    pub stop_time: Option<Timestamp>,
}

/// The three ADS calls the controller needs, each in a named AWS region.
///
/// Implementations must be cheap to share across reconciles (`Send + Sync`), and
/// return every failure as a classified [`AdsError`].
pub trait ExportService: Send + Sync + 'static {
    /// StartContinuousExport in `region`, sent once (never retried by the client:
    /// Start is not idempotent).
    ///
    /// # Errors
    /// [`AdsError`] with reason e.g. `Conflict` when another export is active, or
    /// `ServerError` with `ambiguous: true` when ADS answered a server error (HTTP 5xx,
    /// `ServerInternalErrorException`) or the answer carries no (or an empty)
    /// `exportId`: an export may exist whose ID the caller must find by listing.
    fn start(&self, region: &str) -> impl Future<Output = Result<StartedExport, AdsError>> + Send;

    /// DescribeContinuousExports for one ID in `region`.
    ///
    /// # Errors
    /// [`AdsError`] with reason `NotFound` when ADS does not know the ID (or answers
    /// only entries without an `exportId`, which are dropped).
    fn describe(
        &self,
        region: &str,
        export_id: &str,
    ) -> impl Future<Output = Result<ExportDescription, AdsError>> + Send;

    /// DescribeContinuousExports without a filter in `region`, following `nextToken`
    /// through every page. Entries without an `exportId` (or with an empty one) are
    /// dropped, so every returned [`ExportDescription::export_id`] is non-empty.
    ///
    /// # Errors
    /// [`AdsError`] from any page.
    fn list(&self, region: &str) -> impl Future<Output = Result<Vec<ExportDescription>, AdsError>> + Send;

    /// StopContinuousExport in `region`.
    ///
    /// # Errors
    /// [`AdsError`] with reason `NotFound`, `ResourceInUse` (still starting) or
    /// `OperationNotPermitted` (already stopping or stopped), among others.
    fn stop(&self, region: &str, export_id: &str) -> impl Future<Output = Result<StopTimes, AdsError>> + Send;

    /// DescribeContinuousExports for several IDs in `region` at once (`exportIds`, at
    /// most [`shared::MAX_IDS_PER_DESCRIBE`] = 100, ADS's `maxResults` ceiling), in
    /// the order ADS answers. The default describes them one by one.
    ///
    /// # Errors
    /// [`AdsError`] with reason `NotFound` when ADS does not know one of the IDs (ADS
    /// then answers `ResourceNotFoundException` for the whole call), as [`Self::describe`]
    /// otherwise.
    fn describe_many(
        &self,
        region: &str,
        export_ids: &[String],
    ) -> impl Future<Output = Result<Vec<ExportDescription>, AdsError>> + Send {
        async move {
            let mut found = Vec::with_capacity(export_ids.len());
            for id in export_ids {
                found.push(self.describe(region, id).await?);
            }
            Ok(found)
        }
    }

    /// Export `export_id` as last seen (by the region's transition watch, a Describe or a
    /// listing), when that is at most `max_age` ago; otherwise described by ID. Read for
    /// an export in transition (`START_IN_PROGRESS`, `STOP_IN_PROGRESS`):
    /// [`shared::SharedListing`] keeps such exports under watch (250 ms doubling to 30 s)
    /// and reports their changes, so the reconciles of their objects read, not call; and
    /// before a Stop, whose answer settles what the look missed. The default is
    /// [`Self::describe`].
    ///
    /// # Errors
    /// As [`Self::describe`].
    fn describe_watched(
        &self,
        region: &str,
        export_id: &str,
        max_age: Duration,
    ) -> impl Future<Output = Result<ExportDescription, AdsError>> + Send {
        let _ = max_age;
        self.describe(region, export_id)
    }

    /// Export `export_id` as last seen at most `max_age` ago (by a Describe, the watch or
    /// a listing; an `INACTIVE` export, terminal in ADS, at any age), else as a listing of
    /// `region` at most `max_age` old reports it (a steady-state read:
    /// [`shared::SharedListing`] serves all objects of a region from one listing); an ID
    /// the listing lacks is described by ID. The default is [`Self::describe`].
    ///
    /// # Errors
    /// As [`Self::describe`] (and [`Self::list`] when the listing is taken).
    fn describe_shared(
        &self,
        region: &str,
        export_id: &str,
        max_age: Duration,
    ) -> impl Future<Output = Result<ExportDescription, AdsError>> + Send {
        let _ = max_age;
        self.describe(region, export_id)
    }

    /// The exports of `region` from a listing at most `max_age` old (the pre-Start
    /// check; see [`Self::describe_shared`]). The default is [`Self::list`].
    ///
    /// # Errors
    /// As [`Self::list`].
    fn list_shared(
        &self,
        region: &str,
        max_age: Duration,
    ) -> impl Future<Output = Result<Vec<ExportDescription>, AdsError>> + Send {
        let _ = max_age;
        self.list(region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_round_to_milliseconds() {
        // 1493405005.639 as f64 decodes to ...638999999 ns; it must print .639
        let t = timestamp_from_epoch(1_493_405_005, 638_999_999).unwrap();
        assert_eq!(format_time(t), "2017-04-28T18:43:25.639Z");
        let t = timestamp_from_epoch(1_493_405_005, 0).unwrap();
        assert_eq!(format_time(t), "2017-04-28T18:43:25.000Z");
        let t = timestamp_from_epoch(1_493_405_005, 999_600_000).unwrap();
        assert_eq!(format_time(t), "2017-04-28T18:43:26.000Z");
        assert!(timestamp_from_epoch(i64::MAX, 0).is_none());
    }
}
