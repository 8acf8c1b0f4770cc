//! Condition bookkeeping: `Ready`, `Synced`, `Reconciling`, `Stalled` as
//! Kubernetes `metav1.Condition`s (kstatus-compatible, so `kubectl wait` and Flux work).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED, CONDITION_SYNCED};

/// A condition's `status` (`metav1.ConditionStatus`; this controller never writes `"Unknown"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// `"True"`
    True,
    /// `"False"`
    False,
}

impl ConditionStatus {
    /// The wire value, `"True"` or `"False"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
        }
    }
}

/// One condition as a reconcile sets it: type, status, reason and message, before
/// [`merge`] stamps `lastTransitionTime` and `observedGeneration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Condition type, e.g. `Ready`.
    pub type_: &'static str,
    /// `True` or `False`.
    pub status: ConditionStatus,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl ConditionUpdate {
    /// `type_` is `True` for `reason`.
    pub fn is_true(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status: ConditionStatus::True, reason: reason.into(), message: message.into() }
    }

    /// `type_` is `False` for `reason`.
    pub fn is_false(type_: &'static str, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status: ConditionStatus::False, reason: reason.into(), message: message.into() }
    }
}

/// The order conditions are written in.
pub const ORDER: [&str; 4] = [CONDITION_READY, CONDITION_SYNCED, CONDITION_RECONCILING, CONDITION_STALLED];

/// Builds the condition list from `updates`, keeping each existing condition's
/// `lastTransitionTime` unless its status flips (`metav1.Condition` semantics);
/// `now` stamps the flipped or new ones. Conditions of other types in `existing`
/// (written by someone else) are kept as they are.
pub fn merge(existing: &[Condition], updates: &[ConditionUpdate], generation: i64, now: Timestamp) -> Vec<Condition> {
    let mut out: Vec<Condition> = updates
        .iter()
        .map(|d| {
            let status = d.status.as_str().to_owned();
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
    out.extend(existing.iter().filter(|c| !updates.iter().any(|d| d.type_ == c.type_)).cloned());
    out.sort_by_key(|c| ORDER.iter().position(|t| *t == c.type_).unwrap_or(ORDER.len()));
    out
}

/// `now` truncated to whole seconds, as the apiserver stores a `Time`, so a condition
/// read back compares equal to the one computed.
pub fn whole_seconds(now: Timestamp) -> Timestamp {
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
        let first = merge(&[], &[ConditionUpdate::is_false(CONDITION_READY, "Starting", "a")], 1, t(100));
        assert_eq!(first[0].last_transition_time, Time(t(100)));
        assert_eq!(first[0].observed_generation, Some(1));

        let same = merge(&first, &[ConditionUpdate::is_false(CONDITION_READY, "Other", "b")], 2, t(200));
        assert_eq!(same[0].last_transition_time, Time(t(100)), "reason change is not a transition");
        assert_eq!(same[0].reason, "Other");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(&same, &[ConditionUpdate::is_true(CONDITION_READY, "Active", "c")], 2, t(300));
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
            &[
                ConditionUpdate::is_false(CONDITION_STALLED, "A", ""),
                ConditionUpdate::is_true(CONDITION_READY, "B", ""),
            ],
            3,
            t(5),
        );
        let types: Vec<_> = out.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [CONDITION_READY, CONDITION_STALLED, "Custom"]);
        assert_eq!(out[2], foreign);
    }

    #[test]
    fn now_has_whole_seconds() {
        assert_eq!(whole_seconds(Timestamp::now()).subsec_nanosecond(), 0);
    }
}
