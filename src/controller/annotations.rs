//! The annotations users set to steer reconciliation (README, "Reconcile now and
//! pause"): `adsexport.io/paused` (Crossplane's `crossplane.io/paused`) and
//! `adsexport.io/reconcile-requested-at` (Flux's `reconcile.fluxcd.io/requestedAt`).
//! Pure functions over the object; the watch filter in [`super::run`] lets their
//! changes through, although they do not bump `metadata.generation`.

use kube::ResourceExt;

use crate::api::{ContinuousExport, ContinuousExportStatus, PAUSED_ANNOTATION, RECONCILE_REQUESTED_ANNOTATION};

/// The condition reason of a paused object's `Synced=False`.
pub const PAUSED_REASON: &str = "Paused";

/// Whether reconciliation is paused: `adsexport.io/paused` is exactly `"true"` (as
/// Crossplane's `meta.IsPaused`; any other value, `"True"` included, does not pause).
pub fn is_paused(obj: &ContinuousExport) -> bool {
    obj.annotations().get(PAUSED_ANNOTATION).is_some_and(|v| v == "true")
}

/// The `adsexport.io/reconcile-requested-at` value not yet handled: present and
/// different from `status.lastHandledReconcileAt`.
pub fn reconcile_request(obj: &ContinuousExport) -> Option<String> {
    let value = obj.annotations().get(RECONCILE_REQUESTED_ANNOTATION)?;
    let handled = obj.status.as_ref().and_then(|s| s.last_handled_reconcile_at.as_deref());
    (handled != Some(value.as_str())).then(|| value.clone())
}

/// The values of the steering annotations, for the watch filter: a change of either
/// triggers a reconcile, while the operator's own writes (the status, `start-pending`)
/// leave them as they are.
pub fn steering(obj: &ContinuousExport) -> [Option<&str>; 2] {
    let value = |k| obj.annotations().get(k).map(String::as_str);
    [value(PAUSED_ANNOTATION), value(RECONCILE_REQUESTED_ANNOTATION)]
}

/// Whether the stored status is a paused one (`Synced=False`, reason `Paused`).
pub fn status_paused(status: &ContinuousExportStatus) -> bool {
    status.condition(crate::api::CONDITION_SYNCED).is_some_and(|c| c.status == "False" && c.reason == PAUSED_REASON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ContinuousExportSpec;

    fn annotated(pairs: &[(&str, &str)]) -> ContinuousExport {
        let mut o = ContinuousExport::new("x", ContinuousExportSpec::default());
        o.metadata.annotations = Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
        o
    }

    #[test]
    fn only_true_pauses() {
        assert!(is_paused(&annotated(&[(PAUSED_ANNOTATION, "true")])));
        for v in ["True", "false", "", "yes"] {
            assert!(!is_paused(&annotated(&[(PAUSED_ANNOTATION, v)])), "{v:?}");
        }
        assert!(!is_paused(&annotated(&[])));
    }

    #[test]
    fn a_request_is_pending_until_its_value_is_recorded() {
        let mut o = annotated(&[(RECONCILE_REQUESTED_ANNOTATION, "2026-03-01T12:00:00Z")]);
        assert_eq!(reconcile_request(&o).as_deref(), Some("2026-03-01T12:00:00Z"));
        o.status = Some(ContinuousExportStatus {
            last_handled_reconcile_at: Some("2026-03-01T12:00:00Z".into()),
            ..Default::default()
        });
        assert_eq!(reconcile_request(&o), None);
        assert_eq!(reconcile_request(&annotated(&[])), None);
    }
}
