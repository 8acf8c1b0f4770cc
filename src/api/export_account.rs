//! The `ExportAccount` custom resource (`adsexport.io/v1alpha1`, cluster-scoped): an AWS
//! account that cluster administrators grant to namespaces, reached through STS
//! `AssumeRole` with the operator's own identity (README, "Many accounts").
//!
//! A `ContinuousExport` names one with `spec.accountRef.name`; only objects in the
//! namespaces the account allows (`spec.allowedNamespaces`, `spec.namespaceSelector`)
//! may use it. Being cluster-scoped, an `ExportAccount` can be written only by those
//! granted cluster-wide RBAC on `exportaccounts` (the chart's
//! `<release namespace>-<fullname>-accounts-admin` ClusterRole, bound to nobody by the
//! chart), never by a namespace's `admin` or `edit`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::core::{Selector, SelectorExt};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Finalizer the operator keeps on an `ExportAccount` while any `ContinuousExport`
/// references it (`spec.accountRef`), so the account's credentials stay available to
/// stop those exports; removed once the last one is gone.
pub const ACCOUNT_FINALIZER: &str = "adsexport.io/account-in-use";

/// An AWS account that `ContinuousExport`s in the allowed namespaces may use through
/// `spec.accountRef`: the operator assumes `roleArn` (STS `AssumeRole`, with
/// `externalId` when set) with its own credentials and makes the objects' ADS calls with
/// the role's temporary credentials, cached and refreshed before they expire.
// clippy reads the repeated `type_` keys of separate `printcolumn(...)` groups as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "adsexport.io",
    version = "v1alpha1",
    kind = "ExportAccount",
    plural = "exportaccounts",
    singular = "exportaccount",
    shortname = "exacct",
    category = "ads",
    status = "ExportAccountStatus",
    derive = "PartialEq",
    doc = "An AWS account, reached by assuming an IAM role, that ContinuousExports in the allowed namespaces may use \
           (cluster-scoped, written by cluster administrators).",
    printcolumn(
        name = "Role ARN",
        type_ = "string",
        json_path = ".spec.roleArn",
        description = "The IAM role the operator assumes"
    ),
    printcolumn(
        name = "Account",
        type_ = "string",
        json_path = ".status.accountId",
        description = "AWS account ID of the assumed role (STS GetCallerIdentity)"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".spec.region",
        description = "Default region of the account's exports",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the role can be assumed"
    ),
    printcolumn(
        name = "In Use",
        type_ = "integer",
        json_path = ".status.inUseBy",
        description = "Number of ContinuousExports that reference this account"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("(has(self.allowedNamespaces) && size(self.allowedNamespaces) > 0) || has(self.namespaceSelector)")
    .message("an ExportAccount must allow some namespaces: set spec.allowedNamespaces (namespace names) and/or \
              spec.namespaceSelector (namespace labels)"))]
#[serde(rename_all = "camelCase")]
pub struct ExportAccountSpec {
    /// The IAM role to assume, `arn:<partition>:iam::<12-digit account>:role/<path and
    /// name>`, e.g. `arn:aws:iam::111111111111:role/ads-export`. Its trust policy must let
    /// the operator's own identity call `sts:AssumeRole` (README, "Many accounts").
    #[schemars(length(min = 20, max = 2048), pattern(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$"))]
    pub role_arn: String,

    /// External ID passed to `AssumeRole` (the `sts:ExternalId` condition of the role's
    /// trust policy): 2 to 1224 characters of letters, digits and `+=,.@:/-_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 1224), pattern(r"^[\w+=,.@:/-]+$"))]
    pub external_id: Option<String>,

    /// Role session name (shown in CloudTrail as the assumed role's session): 2 to 64
    /// characters of letters, digits and `+=,.@-_`. Default: `ads-export-operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), pattern(r"^[\w+=,.@-]+$"))]
    pub session_name: Option<String>,

    /// Region of the `ContinuousExport`s using this account that set no `spec.region`,
    /// e.g. `us-west-2` (lower case: a 2 to 4 letter prefix, one or more words, a
    /// number). Without it they use the operator's `--aws-region`, else the account's
    /// Migration Hub home region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// Names of the namespaces whose `ContinuousExport`s may use this account (DNS-1123
    /// labels). A namespace is allowed when it is listed here or matches
    /// `namespaceSelector`; at least one of the two must be set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub allowed_namespaces: Vec<String>,

    /// Namespaces (by their labels) whose `ContinuousExport`s may use this account, e.g.
    /// `{matchLabels: {adsexport.io/account: team-a}}`. Grant the right to label
    /// namespaces with care: whoever can set a matching label gains the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// Observed state of an `ExportAccount`: whether the operator can assume its role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportAccountStatus {
    /// AWS account ID the assumed role's credentials belong to (STS `GetCallerIdentity`'s
    /// `Account`), e.g. `111111111111`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The assumed role session's ARN (`GetCallerIdentity`'s `Arn`), e.g.
    /// `arn:aws:sts::111111111111:assumed-role/ads-export/ads-export-operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_role_arn: Option<String>,
    /// When the role was last assumed successfully: RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<String>,
    /// The last failure to assume the role (STS's error code and message), cleared on
    /// success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Number of `ContinuousExport`s that reference this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use_by: Option<i64>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Condition `Ready`: `True` when the role was assumed (reason `Assumed`), `False`
    /// with reason `AuthorizationError` (STS refused) or `UnknownError` otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Why an account does not allow a namespace (the `AccountNotAllowed` message's cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAllowed {
    /// The namespace is neither listed nor selected.
    NotGranted,
    /// `spec.namespaceSelector` cannot be read as a label selector (e.g. an unknown
    /// operator); the message is kube's parse error. Nothing is selected by it.
    BadSelector(String),
}

impl ExportAccountSpec {
    /// Whether a `ContinuousExport` in `namespace`, whose labels are `labels`, may use
    /// this account: the namespace is in `allowedNamespaces`, or `namespaceSelector` is
    /// set and matches `labels` (Kubernetes label-selector semantics, kube's
    /// [`Selector`]; an empty selector `{}` matches every namespace).
    ///
    /// # Errors
    /// [`NotAllowed`]: not granted, or a selector that cannot be parsed (which grants
    /// nothing).
    pub fn allows(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Result<(), NotAllowed> {
        if self.allowed_namespaces.iter().any(|n| n == namespace) {
            return Ok(());
        }
        let Some(selector) = &self.namespace_selector else { return Err(NotAllowed::NotGranted) };
        let selector = Selector::try_from(selector.clone()).map_err(|e| NotAllowed::BadSelector(e.to_string()))?;
        if selector.matches(labels) { Ok(()) } else { Err(NotAllowed::NotGranted) }
    }

    /// The role session name used for `AssumeRole`: `sessionName`, else
    /// `ads-export-operator`.
    pub fn session_name_or_default(&self) -> &str {
        self.session_name.as_deref().unwrap_or("ads-export-operator")
    }

    /// The 12-digit account ID in `roleArn` (`None` if the ARN is malformed).
    pub fn role_account_id(&self) -> Option<&str> {
        let account = self.role_arn.split(':').nth(4)?;
        (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use kube::CustomResourceExt;

    fn spec(names: &[&str], selector: Option<LabelSelector>) -> ExportAccountSpec {
        ExportAccountSpec {
            role_arn: "arn:aws:iam::111111111111:role/ads".into(),
            allowed_namespaces: names.iter().map(|s| (*s).to_owned()).collect(),
            namespace_selector: selector,
            ..Default::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_listed_namespace_is_allowed_and_others_are_not() {
        let s = spec(&["team-a", "team-a-dev"], None);
        assert_eq!(s.allows("team-a", &labels(&[])), Ok(()));
        assert_eq!(s.allows("team-b", &labels(&[("team", "a")])), Err(NotAllowed::NotGranted));
    }

    #[test]
    fn the_selector_allows_namespaces_by_label() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("adsexport.io/account", "team-a")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "NotIn".into(),
                values: Some(vec!["sandbox".into()]),
            }]),
        };
        let s = spec(&[], Some(selector));
        assert_eq!(s.allows("x", &labels(&[("adsexport.io/account", "team-a")])), Ok(()));
        assert_eq!(
            s.allows("x", &labels(&[("adsexport.io/account", "team-a"), ("env", "sandbox")])),
            Err(NotAllowed::NotGranted)
        );
        assert_eq!(s.allows("x", &labels(&[("adsexport.io/account", "team-b")])), Err(NotAllowed::NotGranted));
    }

    #[test]
    fn a_bad_selector_grants_nothing_and_says_why() {
        let selector = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let s = spec(&[], Some(selector));
        assert!(matches!(s.allows("x", &labels(&[("env", "a")])), Err(NotAllowed::BadSelector(_))));
    }

    #[test]
    fn role_account_and_session_name() {
        let mut s = spec(&["a"], None);
        assert_eq!(s.role_account_id(), Some("111111111111"));
        assert_eq!(s.session_name_or_default(), "ads-export-operator");
        s.role_arn = "arn:aws:iam::1111:role/x".into();
        assert_eq!(s.role_account_id(), None);
        s.session_name = Some("team-a".into());
        assert_eq!(s.session_name_or_default(), "team-a");
    }

    #[test]
    fn the_crd_is_cluster_scoped_with_its_rules() {
        let crd = ExportAccount::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("exportaccounts.adsexport.io"));
        assert_eq!(crd.spec.scope, "Cluster");
        let json = serde_json::to_string(&crd).unwrap();
        for needle in ["an ExportAccount must allow some namespaces", r#""maxItems":256"#, r#""maxLength":63"#] {
            assert!(json.contains(needle), "CRD lacks {needle}");
        }
    }
}
