//! The ADS continuous-export vocabulary shared by the controller, the SDK adapter
//! ([`super::aws`]) and the emulator ([`crate::emulator`]): the three operations and the
//! seven export statuses, each spelled once.
//!
//! Source: AWS Application Discovery Service API reference, actions
//! `StartContinuousExport`, `DescribeContinuousExports`, `StopContinuousExport`, and the
//! data type `ContinuousExportDescription` (member `status`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The ADS operations of continuous exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `StartContinuousExport`
    Start,
    /// `DescribeContinuousExports`
    Describe,
    /// `StopContinuousExport`
    Stop,
}

impl Operation {
    /// All three operations.
    pub const ALL: [Operation; 3] = [Operation::Start, Operation::Describe, Operation::Stop];

    /// The operation's API name, e.g. `"StartContinuousExport"` (the `X-Amz-Target`
    /// suffix, the metrics label and the events' `action`).
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Start => "StartContinuousExport",
            Operation::Describe => "DescribeContinuousExports",
            Operation::Stop => "StopContinuousExport",
        }
    }

    /// Looks an operation up by its API name; `None` for any other name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// ADS `ContinuousExportStatus`, as `ContinuousExportDescription.status` documents it.
/// (De)serializes as the wire name, e.g. `"START_IN_PROGRESS"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExportStatus {
    /// Starting.
    StartInProgress,
    /// Could not be started; AWS: "To recover, call start-continuous-export again".
    StartFailed,
    /// Running.
    Active,
    /// Broken; may still be stopped (`statusDetail` says why).
    Error,
    /// Stopping.
    StopInProgress,
    /// Could not be stopped; AWS: "To recover, call stop-continuous-export again".
    StopFailed,
    /// Stopped.
    Inactive,
}

impl ExportStatus {
    /// All seven statuses, in the order the API reference lists them.
    pub const ALL: [ExportStatus; 7] = [
        ExportStatus::StartInProgress,
        ExportStatus::StartFailed,
        ExportStatus::Active,
        ExportStatus::Error,
        ExportStatus::StopInProgress,
        ExportStatus::StopFailed,
        ExportStatus::Inactive,
    ];

    /// The wire name, e.g. `"START_IN_PROGRESS"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExportStatus::StartInProgress => "START_IN_PROGRESS",
            ExportStatus::StartFailed => "START_FAILED",
            ExportStatus::Active => "ACTIVE",
            ExportStatus::Error => "ERROR",
            ExportStatus::StopInProgress => "STOP_IN_PROGRESS",
            ExportStatus::StopFailed => "STOP_FAILED",
            ExportStatus::Inactive => "INACTIVE",
        }
    }

    /// Starting or running: such an export blocks a new Start in its region (ADS
    /// answers `ConflictErrorException`).
    pub const fn is_running(self) -> bool {
        matches!(self, ExportStatus::StartInProgress | ExportStatus::Active)
    }

    /// Final: ADS never moves an export out of it (`INACTIVE`, stopped; a new Start
    /// makes a new export), so there is nothing to look at again.
    pub const fn is_terminal(self) -> bool {
        matches!(self, ExportStatus::Inactive)
    }
}

impl fmt::Display for ExportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportStatus {
    type Err = String;

    /// Parses a wire name.
    ///
    /// # Errors
    /// A message naming the value and the seven accepted ones.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            format!(
                "unknown status {s:?}, expected one of START_IN_PROGRESS, START_FAILED, ACTIVE, \
                 ERROR, STOP_IN_PROGRESS, STOP_FAILED, INACTIVE"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
        }
        assert_eq!(Operation::from_name("ListExports"), None);
        for st in ExportStatus::ALL {
            assert_eq!(st.as_str().parse::<ExportStatus>(), Ok(st));
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        assert_eq!("STOP_FAILED".parse::<ExportStatus>(), Ok(ExportStatus::StopFailed));
        assert!("stopped".parse::<ExportStatus>().is_err());
    }
}
