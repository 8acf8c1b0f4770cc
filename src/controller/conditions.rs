//! Condition bookkeeping: `Ready`, `Synced`, `Reconciling`, `Stalled` as
//! Kubernetes `metav1.Condition`s (kstatus-compatible, so `kubectl wait` and Flux work).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CONDITION_SYNCED};

/// One desired condition, before `lastTransitionTime` and `observedGeneration` are filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Condition type.
    pub type_: &'static str,
    /// `true` for `"True"`, `false` for `"False"`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Desired {
    /// A condition with the given fields.
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// The order conditions are written in.
pub const ORDER: [&str; 4] = [CONDITION_READY, CONDITION_SYNCED, CONDITION_RECONCILING, CONDITION_STALLED];

/// Builds the condition list from `desired`, keeping each existing condition's
/// `lastTransitionTime` unless its status flips (`metav1.Condition` semantics);
/// `now` stamps the flipped or new ones. Conditions of other types in `existing`
/// (written by someone else) are kept as they are.
pub fn merge(existing: &[Condition], desired: &[Desired], generation: i64, now: Timestamp) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_owned();
            let last_transition_time = existing
                .iter()
                .find(|c| c.type_ == d.type_ && c.status == status)
                .map_or(Time(now), |c| c.last_transition_time.clone());
            Condition {
                type_: d.type_.to_owned(),
                status,
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation: Some(generation),
                last_transition_time,
            }
        })
        .collect();
    out.extend(existing.iter().filter(|c| !desired.iter().any(|d| d.type_ == c.type_)).cloned());
    out.sort_by_key(|c| ORDER.iter().position(|t| *t == c.type_).unwrap_or(ORDER.len()));
    out
}

/// Truncates `Time` to whole seconds, as the apiserver stores it, so a condition
/// read back compares equal to the one computed.
pub fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let first = merge(&[], &[Desired::new(CONDITION_READY, false, "Starting", "a")], 1, t(100));
        assert_eq!(first[0].last_transition_time, Time(t(100)));
        assert_eq!(first[0].observed_generation, Some(1));

        let same = merge(&first, &[Desired::new(CONDITION_READY, false, "Other", "b")], 2, t(200));
        assert_eq!(same[0].last_transition_time, Time(t(100)), "reason change is not a transition");
        assert_eq!(same[0].reason, "Other");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(&same, &[Desired::new(CONDITION_READY, true, "Active", "c")], 2, t(300));
        assert_eq!(flipped[0].last_transition_time, Time(t(300)));
        assert_eq!(flipped[0].status, "True");
    }

    #[test]
    fn keeps_foreign_conditions_and_orders() {
        let foreign = Condition {
            type_: "Custom".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(t(1)),
        };
        let out = merge(
            std::slice::from_ref(&foreign),
            &[Desired::new(CONDITION_STALLED, false, "A", ""), Desired::new(CONDITION_READY, true, "B", "")],
            3,
            t(5),
        );
        let types: Vec<_> = out.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [CONDITION_READY, CONDITION_STALLED, "Custom"]);
        assert_eq!(out[2], foreign);
    }

    #[test]
    fn now_has_whole_seconds() {
        assert_eq!(now_seconds().subsec_nanosecond(), 0);
    }
}
