//! The failures the reconcile rules produce, with their one-line messages (what went
//! wrong and what fixes it). Pure: the rules in [`super::decide`] pick one.

use super::claims::Others;
use super::failure::{Cause, Failure, Step};
use crate::ads::{AdsError, ExportDescription, Operation, Reason};

/// No region: restarting the operator with `--aws-region` fixes it (`spec.region`
/// cannot be added to an existing object).
pub fn no_region() -> Failure {
    Failure::new(
        Step::Configuration,
        Cause::NoRegion,
        "no AWS region: start the operator with --aws-region (or AWS_REGION), or recreate this ContinuousExport \
         with spec.region set to the Migration Hub home region",
    )
}

/// `spec.exportId` names another export than the one the object manages.
pub fn spec_mismatch(spec_id: &str, managed: &str) -> Failure {
    Failure::new(
        Step::Configuration,
        Cause::SpecMismatch,
        format!(
            "spec.exportId {spec_id} differs from the export this object already manages ({managed}); create a new \
             ContinuousExport to manage {spec_id}"
        ),
    )
}

/// Export `id` is managed by `owner` already.
pub fn already_managed(id: &str, owner: &str) -> Failure {
    Failure::new(
        Step::Configuration,
        Cause::AlreadyManaged,
        format!(
            "export {id} is already managed by ContinuousExport {owner}; one export has one managing object: this \
             one adopts it once {owner} is gone, or delete this one"
        ),
    )
}

/// Export `id` is managed by `owner`, which is being deleted: adopted after it.
pub fn owner_deleting(id: &str, owner: &str) -> Failure {
    Failure::new(
        Step::Configuration,
        Cause::Waiting,
        format!(
            "export {id} is still managed by ContinuousExport {owner}, which is being deleted; adopting it once that \
             object is gone"
        ),
    )
}

/// Wait until `owner`'s pending start in `region` has settled.
pub fn pending_elsewhere(owner: &str, region: &str) -> Failure {
    Failure::new(
        Step::Ads(Operation::Start),
        Cause::Waiting,
        format!(
            "waiting for the pending start of ContinuousExport {owner} in {region} to settle: until it does, an \
             export showing up there may be that one's"
        ),
    )
}

/// An export this object started reports `START_FAILED`: it is let go and a new one started.
pub fn start_failed(id: &str, detail: &str) -> Failure {
    Failure::new(
        Step::Ads(Operation::Start),
        Cause::StartFailed,
        format!("export {id} is START_FAILED ({detail}); a new export will be started"),
    )
}

/// The export reported `STOP_FAILED` and Stop was sent again.
pub fn stop_failed(detail: &str) -> Failure {
    Failure::new(
        Step::Ads(Operation::Stop),
        Cause::StopFailed,
        format!("ADS reported STOP_FAILED ({detail}); StopContinuousExport sent again"),
    )
}

/// Deletion waits: the export is still starting and is stopped once ACTIVE.
pub fn still_starting(id: &str) -> Failure {
    Failure::new(
        Step::Ads(Operation::Stop),
        Cause::Waiting,
        format!("export {id} is still starting; it is stopped once ACTIVE"),
    )
}

/// `spec.writeInfoTo` names ConfigMap `ns/name`, which this object does not control
/// (`controller`: its controller, `Kind/name`, if it has one).
pub fn info_target_conflict(ns: &str, name: &str, controller: Option<&str>) -> Failure {
    let whose = controller.map_or_else(|| "it has no controller".to_owned(), |c| format!("its controller is {c}"));
    Failure::new(
        Step::Configuration,
        Cause::InfoTargetConflict,
        format!(
            "ConfigMap {ns}/{name} exists and is not this ContinuousExport's ({whose}), so the connection info is not \
             written there: delete that ConfigMap, or set spec.writeInfoTo.configMapName to a name not in use"
        ),
    )
}

/// A running export was found before Start: Start was not sent.
pub fn region_busy(region: &str, active: &ExportDescription, others: &Others) -> Failure {
    let detail = "StartContinuousExport not sent: ADS allows one active export per region";
    Failure::new(Step::Ads(Operation::Start), Cause::RegionBusy, conflict(region, active, detail, others))
}

/// Names the running export `active` that makes a Start conflict: the object managing
/// it, or how to adopt it. `detail` (ADS's message, or why Start was not sent) is appended.
pub fn conflict(region: &str, active: &ExportDescription, detail: &str, others: &Others) -> String {
    let (id, state) = (&active.export_id, active.status.as_str());
    match others.named_owner(id) {
        Some(owner) => format!(
            "export {id} is already {state} in {region}, managed by ContinuousExport {owner}: ADS allows one active \
             export per region; stop that one first ({detail})"
        ),
        None => format!(
            "export {id} is already {state} in {region}; recreate this ContinuousExport with spec.exportId: {id} to \
             adopt it, or stop it first ({detail})"
        ),
    }
}

/// A managed export ADS no longer knows (Describe answered `ResourceNotFoundException`):
/// the message says what to do. Other errors pass unchanged.
pub fn managed_gone(mut e: AdsError, id: &str, region: &str) -> AdsError {
    if e.reason == Reason::NotFound {
        e.message = format!("export {id} no longer exists in {region}: delete this ContinuousExport ({})", e.message);
    }
    e
}

/// The export `spec.exportId` names is unknown in the region.
pub fn adoption_not_found(mut e: AdsError, id: &str, region: &str) -> AdsError {
    if e.reason == Reason::NotFound {
        e.message = format!(
            "cannot adopt export {id}: not found in {region}; spec.exportId and spec.region are immutable, so \
             recreate this ContinuousExport with the right ones"
        );
    }
    e
}

/// `START_IN_PROGRESS` -> `StartInProgress` (the `Ready` reason for an export status).
pub fn camel(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn camel_case_reasons() {
        assert_eq!(super::camel("START_IN_PROGRESS"), "StartInProgress");
        assert_eq!(super::camel("ERROR"), "Error");
    }
}
