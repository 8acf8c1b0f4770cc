//! The failures the reconcile rules produce, with their one-line messages (what went
//! wrong and what fixes it). Pure: the rules in [`super::decide`] pick one.

use super::accounts::Refusal;
use super::claims::Others;
use super::failure::{Cause, Failure, Step};
use crate::ads::home_region::{HomeRegion, Lookup};
use crate::ads::{AdsError, ExportDescription, Operation, Reason};
use crate::api::NotAllowed;

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

/// Why the object cannot use its `spec.accountRef`, and what a cluster administrator
/// does about it (`AccountNotFound`, `AccountNotAllowed`); no AWS call was made.
pub fn account_refused(refusal: &Refusal) -> Failure {
    match refusal {
        Refusal::NotSynced => Failure::new(
            Step::Configuration,
            Cause::Waiting,
            "waiting for the first list of ExportAccounts and Namespaces (does the operator's RBAC grant list and \
             watch on exportaccounts and namespaces?)",
        ),
        Refusal::NotFound { account } => Failure::new(
            Step::Configuration,
            Cause::AccountNotFound,
            format!(
                "ExportAccount {account} (spec.accountRef.name) does not exist: a cluster administrator must create \
                 it (kubectl get exportaccounts lists those that do), or recreate this ContinuousExport naming an \
                 existing one; no AWS call was made"
            ),
        ),
        Refusal::NotAllowed { account, namespace, why } => {
            let fix = match why {
                NotAllowed::NotGranted => "ask a cluster administrator to add it to spec.allowedNamespaces or \
                                           label the namespace to match spec.namespaceSelector"
                    .to_owned(),
                NotAllowed::BadSelector(e) => format!(
                    "its spec.namespaceSelector cannot be read ({e}) and selects nothing; a cluster administrator \
                     must fix it or list {namespace} in spec.allowedNamespaces"
                ),
            };
            Failure::new(
                Step::Configuration,
                Cause::AccountNotAllowed,
                format!("ExportAccount {account} does not allow namespace {namespace}: {fix}; no AWS call was made"),
            )
        }
    }
}

/// Where the region of a pass comes from (see `observe::region_of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionSource {
    /// `spec.region`.
    Spec,
    /// The operator's `--aws-region` (or the SDK chain's region).
    Operator,
    /// Neither: the account's Migration Hub home region, when one is known.
    HomeRegion,
}

/// Whether `failure` is one the account's home region explains: ADS's
/// `HomeRegionNotSetException`, or no region at all.
pub fn home_region_explains(failure: &Failure) -> bool {
    matches!(failure.cause, Cause::Ads(Reason::HomeRegionNotSet) | Cause::NoRegion)
}

/// The command that sets the home region (AWS CLI, Migration Hub Config), with
/// `<region>` and `<account-id>` placeholders for what is not known.
pub fn create_home_region_control(region: Option<&str>, account: Option<&str>) -> String {
    format!(
        "aws migrationhub-config create-home-region-control --home-region {} --target Type=ACCOUNT,Id={}",
        region.unwrap_or("<region>"),
        account.unwrap_or("<account-id>")
    )
}

/// `failure` ([`home_region_explains`]) with a message that says what to do, from what
/// Migration Hub Config's `GetHomeRegion` answered (`lookup`): the home region to set
/// as `spec.region` when one is set elsewhere, or the command that sets one. A failed
/// lookup (e.g. no `mgh:GetHomeRegion` permission) leaves the failure as it was; so does
/// a home region equal to `region` (ADS and Migration Hub Config disagree for a moment).
/// With no home region set, no region at all becomes `HomeRegionNotSet` too.
pub fn explain_home_region(failure: Failure, region: Option<&str>, source: RegionSource, lookup: &Lookup) -> Failure {
    if !home_region_explains(&failure) {
        return failure;
    }
    let was = match failure.cause {
        Cause::NoRegion => String::new(),
        _ => format!(" ({})", failure.message),
    };
    let message = match &lookup.home_region {
        Ok(HomeRegion::Set(home)) if region == Some(home.as_str()) => return failure,
        Ok(HomeRegion::Set(home)) => match source {
            RegionSource::Spec => format!(
                "the Migration Hub home region of this account is {home}; set spec.region: {home} (spec.region is \
                 immutable: recreate this ContinuousExport with it){was}"
            ),
            RegionSource::Operator => format!(
                "the Migration Hub home region of this account is {home}; create a new ContinuousExport with \
                 spec.region: {home} (spec.region is immutable), or start the operator with --aws-region {home}{was}"
            ),
            RegionSource::HomeRegion => {
                format!("the Migration Hub home region of this account is now {home}; the next attempt runs there{was}")
            }
        },
        Ok(HomeRegion::NotSet) => format!(
            "the Migration Hub home region of this account is not set: set it with `{}`{was}",
            create_home_region_control(region, lookup.account_id.as_deref())
        ),
        Err(_) => return failure,
    };
    Failure::new(failure.step, Cause::Ads(Reason::HomeRegionNotSet), message)
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
    let detail = "StartContinuousExport not sent";
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

/// `managementPolicy: ObserveOnly` without `spec.exportId` (the CRD's rule rejects it;
/// an object stored under an older CRD may still have it).
pub fn observe_without_id() -> Failure {
    Failure::new(
        Step::Configuration,
        Cause::InvalidSpec,
        "spec.managementPolicy ObserveOnly requires spec.exportId (the export to observe); spec.exportId can only be \
         set at creation: create a new ContinuousExport with both, or set managementPolicy: Full",
    )
}

/// The export an observer's `spec.exportId` names is unknown in the region.
pub fn observed_not_found(mut e: AdsError, id: &str, region: &str) -> AdsError {
    if e.reason == Reason::NotFound {
        e.message = format!(
            "cannot observe export {id}: not found in {region}; spec.exportId and spec.region are immutable, so \
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
    use super::*;
    use crate::ads::home_region::LookupError;

    fn not_set(message: &str) -> Failure {
        Failure::new(Step::Ads(Operation::Start), Cause::Ads(Reason::HomeRegionNotSet), message)
    }

    fn lookup(home_region: Result<HomeRegion, LookupError>, account: Option<&str>) -> Lookup {
        Lookup { home_region, account_id: account.map(str::to_owned) }
    }

    #[test]
    fn a_home_region_set_elsewhere_is_named_with_the_fix() {
        let set = lookup(Ok(HomeRegion::Set("eu-central-1".into())), None);
        let f =
            explain_home_region(not_set("The home region is us-west-2"), Some("us-west-2"), RegionSource::Spec, &set);
        assert_eq!((f.step, f.cause), (Step::Ads(Operation::Start), Cause::Ads(Reason::HomeRegionNotSet)));
        assert!(
            f.message.starts_with(
                "the Migration Hub home region of this account is eu-central-1; set spec.region: eu-central-1 "
            ),
            "{}",
            f.message
        );
        assert!(f.message.ends_with("(The home region is us-west-2)"), "{}", f.message);
        let f = explain_home_region(not_set("x"), Some("us-west-2"), RegionSource::Operator, &set);
        assert!(
            f.message.contains(
                "create a new ContinuousExport with spec.region: eu-central-1 (spec.region is immutable), or start \
                 the operator with --aws-region eu-central-1"
            ),
            "{}",
            f.message
        );
        let f = explain_home_region(not_set("x"), Some("us-west-2"), RegionSource::HomeRegion, &set);
        assert!(f.message.contains("is now eu-central-1; the next attempt runs there"), "{}", f.message);
        // the same region: nothing to explain
        assert_eq!(explain_home_region(not_set("x"), Some("eu-central-1"), RegionSource::Spec, &set), not_set("x"));
    }

    #[test]
    fn no_home_region_gives_the_command_that_sets_one() {
        let none = lookup(Ok(HomeRegion::NotSet), Some("123456789012"));
        let f = explain_home_region(not_set("not set"), Some("eu-west-1"), RegionSource::Spec, &none);
        assert_eq!(
            f.message,
            "the Migration Hub home region of this account is not set: set it with `aws migrationhub-config \
             create-home-region-control --home-region eu-west-1 --target Type=ACCOUNT,Id=123456789012` (not set)"
        );
        // no region at all, no account ID: placeholders, and the reason says why
        let f = explain_home_region(no_region(), None, RegionSource::HomeRegion, &lookup(Ok(HomeRegion::NotSet), None));
        assert_eq!((f.step, f.cause), (Step::Configuration, Cause::Ads(Reason::HomeRegionNotSet)));
        assert!(f.message.ends_with("--home-region <region> --target Type=ACCOUNT,Id=<account-id>`"), "{}", f.message);
    }

    #[test]
    fn a_failed_lookup_or_another_failure_keeps_the_old_message() {
        let denied = lookup(Err(LookupError::AccessDenied("no".into())), None);
        assert_eq!(explain_home_region(not_set("old"), Some("us-west-2"), RegionSource::Spec, &denied), not_set("old"));
        assert_eq!(explain_home_region(no_region(), None, RegionSource::HomeRegion, &denied), no_region());
        let none = lookup(Ok(HomeRegion::NotSet), None);
        let other = Failure::new(Step::Ads(Operation::Start), Cause::Ads(Reason::Conflict), "busy");
        assert_eq!(explain_home_region(other.clone(), Some("us-west-2"), RegionSource::Spec, &none), other);
    }

    #[test]
    fn camel_case_reasons() {
        assert_eq!(super::camel("START_IN_PROGRESS"), "StartInProgress");
        assert_eq!(super::camel("ERROR"), "Error");
    }
}
