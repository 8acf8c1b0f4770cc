//! Where an object's calls go: its *scope* (which AWS account's start gate, claims and
//! listings it shares) and its *region*, in one order used by every reader (the pass,
//! `observe::region_of`, and the claim index). Pure.

/// The scope of the objects without `spec.accountRef`: the operator's own identity.
/// (An account's scope is the 12-digit AWS account ID of its role, so it can never
/// equal this.)
pub const OWN_SCOPE: &str = "operator";

/// The inputs of [`region_order`], each `None` when not set.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegionInputs<'a> {
    /// `spec.region` of the `ContinuousExport`.
    pub spec: Option<&'a str>,
    /// `spec.region` of its `ExportAccount` (`None` without `spec.accountRef`).
    pub account: Option<&'a str>,
    /// The operator's `--aws-region` (or the SDK chain's region).
    pub operator: Option<&'a str>,
    /// `status.region`, only when `status.exportId` is set (the export stays where it was started).
    pub managed: Option<&'a str>,
}

/// Which of [`RegionInputs`] names the region, in [`region_order`]'s order; `Home`:
/// none of them (the account's Migration Hub home region).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionStep {
    /// `spec.region`.
    Spec,
    /// The `ExportAccount`'s `spec.region`.
    Account,
    /// `--aws-region`.
    Operator,
    /// `status.region` of the managed export.
    Managed,
    /// The Migration Hub home region of the object's account.
    Home,
}

/// The step of the region order that applies: `spec.region`, else the account's
/// `spec.region`, else `--aws-region`, else `status.region` with `status.exportId`, else
/// the home region.
pub fn region_step(inputs: &RegionInputs<'_>) -> RegionStep {
    match inputs {
        RegionInputs { spec: Some(_), .. } => RegionStep::Spec,
        RegionInputs { account: Some(_), .. } => RegionStep::Account,
        RegionInputs { operator: Some(_), .. } => RegionStep::Operator,
        RegionInputs { managed: Some(_), .. } => RegionStep::Managed,
        _ => RegionStep::Home,
    }
}

/// The region of an object (the one order, docs/architecture.md "Accounts"): the first
/// of `inputs` that is set ([`region_step`]), else `home()` (the account's home region as
/// last looked up; `None` when not known).
pub fn region_order(inputs: &RegionInputs<'_>, home: impl FnOnce() -> Option<String>) -> Option<String> {
    let named = match region_step(inputs) {
        RegionStep::Spec => inputs.spec,
        RegionStep::Account => inputs.account,
        RegionStep::Operator => inputs.operator,
        RegionStep::Managed => inputs.managed,
        RegionStep::Home => None,
    };
    named.map(str::to_owned).or_else(home)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_order_is_spec_account_operator_managed_home() {
        let all = RegionInputs { spec: Some("s"), account: Some("a"), operator: Some("o"), managed: Some("m") };
        let home = || Some("h".to_owned());
        let cases = [
            (all, "s", RegionStep::Spec),
            (RegionInputs { spec: None, ..all }, "a", RegionStep::Account),
            (RegionInputs { spec: None, account: None, ..all }, "o", RegionStep::Operator),
            (RegionInputs { spec: None, account: None, operator: None, ..all }, "m", RegionStep::Managed),
            (RegionInputs::default(), "h", RegionStep::Home),
        ];
        for (inputs, region, step) in cases {
            assert_eq!(region_order(&inputs, home).as_deref(), Some(region), "{inputs:?}");
            assert_eq!(region_step(&inputs), step, "{inputs:?}");
        }
        assert_eq!(region_order(&RegionInputs::default(), || None), None);
    }
}
