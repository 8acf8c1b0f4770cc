//! Why a reconcile pass did not reach its spec: an ADS answer ([`AdsError`]) or one of
//! the controller's own rules. Each [`Failure`] becomes the `Synced`/`Stalled`
//! conditions and a Warning event; its [`Cause`] says which condition reason, and
//! whether it is retried, polled or stalls (docs/architecture.md, "Failures").

use std::fmt;

use crate::ads::{AdsError, ErrorClass, Operation, Reason};

/// Where a failure happened: an ADS operation, or the object's configuration (found
/// before any call). Shown at the start of condition messages and as the events' `action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// An ADS operation failed, or was not sent because of what the controller saw.
    Ads(Operation),
    /// The object's spec or settings, before any call (`"Configuration"`).
    Configuration,
}

impl Step {
    /// `StartContinuousExport`, ..., or `Configuration`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Ads(op) => op.name(),
            Step::Configuration => "Configuration",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cause of a [`Failure`], with its condition reason and retry class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// ADS (or the SDK) answered this error.
    Ads(Reason),
    /// No region for the object (no `spec.region`, no `--aws-region`): `UnknownError`,
    /// retried with backoff until the operator is restarted with a region.
    NoRegion,
    /// `spec.exportId` differs from the export the object manages: `InvalidParameter`, terminal.
    SpecMismatch,
    /// A combination the CRD's rules reject (an object stored before they existed):
    /// `InvalidParameter`, terminal.
    InvalidSpec,
    /// Another object manages the export: `AlreadyManaged`, terminal, but looked at
    /// again every resync period (the other object may go away).
    AlreadyManaged,
    /// Waiting for something else to settle (another object's pending start, an owner
    /// being deleted, an export still starting): `ResourceInUse`, polled, not backed off.
    Waiting,
    /// A running export in the region would make Start fail; Start was not sent:
    /// `Conflict`, recoverable.
    RegionBusy,
    /// An export this object started reports `START_FAILED`; a new one is started on
    /// the failure schedule ("To recover, call start-continuous-export again").
    StartFailed,
    /// The export reports `STOP_FAILED`; Stop was sent again, on the failure schedule.
    StopFailed,
    /// `spec.writeInfoTo` names a ConfigMap this object does not control: nothing is
    /// written there. `InfoTargetConflict`, terminal, but looked at again every resync
    /// period (the ConfigMap may be deleted).
    InfoTargetConflict,
    /// `spec.accountRef` names no `ExportAccount`: `AccountNotFound`, terminal, looked
    /// at again when one of that name is created (and every resync period).
    AccountNotFound,
    /// The `ExportAccount` does not allow the object's namespace: `AccountNotAllowed`,
    /// terminal, looked at again when the account or the namespace changes.
    AccountNotAllowed,
}

impl Cause {
    /// The condition reason, e.g. `HomeRegionNotSet`, `AlreadyManaged`.
    pub fn reason(self) -> &'static str {
        match self {
            Cause::Ads(r) => r.as_str(),
            Cause::NoRegion => Reason::Unknown.as_str(),
            Cause::SpecMismatch | Cause::InvalidSpec => Reason::InvalidParameter.as_str(),
            Cause::AlreadyManaged => "AlreadyManaged",
            Cause::Waiting => Reason::ResourceInUse.as_str(),
            Cause::RegionBusy => Reason::Conflict.as_str(),
            Cause::StartFailed => "StartFailed",
            Cause::StopFailed => "StopFailed",
            Cause::InfoTargetConflict => "InfoTargetConflict",
            Cause::AccountNotFound => "AccountNotFound",
            Cause::AccountNotAllowed => "AccountNotAllowed",
        }
    }

    /// Whether retrying can help without a change by a human.
    pub fn class(self) -> ErrorClass {
        match self {
            Cause::Ads(r) => r.class(),
            Cause::SpecMismatch
            | Cause::InvalidSpec
            | Cause::AlreadyManaged
            | Cause::InfoTargetConflict
            | Cause::AccountNotFound
            | Cause::AccountNotAllowed => ErrorClass::Terminal,
            _ => ErrorClass::Recoverable,
        }
    }

    /// A wait for something else to settle (polled on the short transition schedule),
    /// rather than a failure (backed off): ADS's `ResourceInUseException` too.
    pub fn is_wait(self) -> bool {
        matches!(self, Cause::Waiting | Cause::Ads(Reason::ResourceInUse))
    }
}

/// A pass's failure: where, why, and a one-line message for conditions and events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Where it happened.
    pub step: Step,
    /// Why, with the condition reason and the retry class.
    pub cause: Cause,
    /// One line, human-readable (ADS's own text for ADS errors).
    pub message: String,
}

impl Failure {
    /// A failure of one of the controller's rules.
    pub fn new(step: Step, cause: Cause, message: impl Into<String>) -> Self {
        Self { step, cause, message: message.into() }
    }

    /// The condition reason ([`Cause::reason`]).
    pub fn reason(&self) -> &'static str {
        self.cause.reason()
    }
}

impl From<AdsError> for Failure {
    fn from(e: AdsError) -> Self {
        Self { step: Step::Ads(e.operation), cause: Cause::Ads(e.reason), message: e.message }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.step, self.reason(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_causes_keep_their_condition_reasons_and_classes() {
        use ErrorClass::*;
        let table = [
            (Cause::NoRegion, "UnknownError", Recoverable, false),
            (Cause::SpecMismatch, "InvalidParameter", Terminal, false),
            (Cause::InvalidSpec, "InvalidParameter", Terminal, false),
            (Cause::AlreadyManaged, "AlreadyManaged", Terminal, false),
            (Cause::Waiting, "ResourceInUse", Recoverable, true),
            (Cause::RegionBusy, "Conflict", Recoverable, false),
            (Cause::StartFailed, "StartFailed", Recoverable, false),
            (Cause::StopFailed, "StopFailed", Recoverable, false),
            (Cause::InfoTargetConflict, "InfoTargetConflict", Terminal, false),
            (Cause::AccountNotFound, "AccountNotFound", Terminal, false),
            (Cause::AccountNotAllowed, "AccountNotAllowed", Terminal, false),
            (Cause::Ads(Reason::ResourceInUse), "ResourceInUse", Recoverable, true),
            (Cause::Ads(Reason::NotFound), "NotFound", Terminal, false),
        ];
        for (cause, reason, class, wait) in table {
            assert_eq!((cause.reason(), cause.class(), cause.is_wait()), (reason, class, wait), "{cause:?}");
        }
    }
}
