//! The `ContinuousExport` custom resource (`adsexport.io/v1alpha1`): spec, status,
//! conditions and CRD generation.
//!
//! The contract (field names, CEL rules, condition types, finalizer and annotation
//! names) is the README's "The ContinuousExport resource"; manifests and tools outside this crate
//! depend on it, so change it only together with a new API version.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

/// Finalizer that keeps a `ContinuousExport` until its export is stopped (or retained).
pub const FINALIZER: &str = "adsexport.io/stop-export";

/// Annotation written (value: RFC 3339 UTC time) *before* StartContinuousExport is
/// called and removed once `status.exportId` is stored. Its presence without a
/// `status.exportId` means a start may have reached AWS without its answer being
/// recorded; the controller then looks for that export before starting another.
pub const START_PENDING_ANNOTATION: &str = "adsexport.io/start-pending";

/// Annotation (any value, e.g. the time of asking) that makes the operator reconcile the
/// object at once, bypassing backoff and the resync period, as `kubectl annotate
/// --overwrite cex NAME adsexport.io/reconcile-requested-at="$(date -u +%FT%TZ)"` does.
/// The value handled is recorded in `status.lastHandledReconcileAt` (Flux's
/// `reconcile.fluxcd.io/requestedAt` convention). Not handled while paused.
pub const RECONCILE_REQUESTED_ANNOTATION: &str = "adsexport.io/reconcile-requested-at";

/// Annotation that pauses reconciliation when its value is exactly `"true"` (Crossplane's
/// `crossplane.io/paused` convention): no AWS calls and no status changes except the
/// `Synced=False` condition with reason `Paused`; a deletion keeps the finalizer (and
/// the export) until the annotation is removed. Removing it resumes.
pub const PAUSED_ANNOTATION: &str = "adsexport.io/paused";

/// Field manager used for server-side apply of status and metadata patches.
pub const FIELD_MANAGER: &str = "ads-export-operator";

/// Condition type `Ready`: the observed export matches the spec.
pub const CONDITION_READY: &str = "Ready";
/// Condition type `Synced`: the last call to AWS succeeded.
pub const CONDITION_SYNCED: &str = "Synced";
/// Condition type `Reconciling`: a transition (start, stop, retry) is under way.
pub const CONDITION_RECONCILING: &str = "Reconciling";
/// Condition type `Stalled`: progress needs a human; cleared when the spec changes.
pub const CONDITION_STALLED: &str = "Stalled";

/// Desired state of an AWS Application Discovery Service continuous export
/// (the flow of agent-discovered data into Amazon Athena).
///
/// Creating a `ContinuousExport` starts an export (StartContinuousExport) or adopts the
/// one named by `spec.exportId`; `spec.stopped: true` stops it (StopContinuousExport).
// clippy reads the repeated `type_` keys of separate `printcolumn(...)` groups as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "adsexport.io",
    version = "v1alpha1",
    kind = "ContinuousExport",
    plural = "continuousexports",
    singular = "continuousexport",
    shortname = "cex",
    category = "ads",
    namespaced,
    status = "ContinuousExportStatus",
    derive = "PartialEq",
    doc = "An AWS Application Discovery Service continuous export managed as a Kubernetes object.",
    printcolumn(
        name = "Export ID",
        type_ = "string",
        json_path = ".status.exportId",
        description = "ID of the managed ADS export"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.exportStatus",
        description = "ADS ContinuousExportStatus"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".status.region",
        description = "AWS region of the export (spec.region, the operator's region or the Migration Hub home region)",
        priority = 1
    ),
    printcolumn(
        name = "Stopped",
        type_ = "boolean",
        json_path = ".spec.stopped",
        description = "Whether the export is asked to be stopped"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the export matches the spec"
    ),
    printcolumn(
        name = "Started",
        type_ = "string",
        json_path = ".status.startTime",
        description = "Export start time (RFC 3339, UTC)"
    ),
    printcolumn(
        name = "Stopped At",
        type_ = "string",
        json_path = ".status.stopTime",
        description = "Export stop time (RFC 3339, UTC)"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.managementPolicy",
        description = "Full (managed) or ObserveOnly",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.exportId) == has(oldSelf.exportId)")
    .message("spec.exportId can only be set when the ContinuousExport is created, and cannot be removed"))]
#[x_kube(validation = Rule::new("has(self.region) == has(oldSelf.region)")
    .message("spec.region cannot be added or removed after creation; create a new ContinuousExport"))]
#[x_kube(validation = Rule::new("has(self.accountRef) == has(oldSelf.accountRef)")
    .message("spec.accountRef can only be set when the ContinuousExport is created, and cannot be removed"))]
#[x_kube(validation = Rule::new("self.managementPolicy != 'ObserveOnly' || has(self.exportId)")
    .message("spec.managementPolicy ObserveOnly requires spec.exportId (the export to observe); spec.exportId can \
              only be set at creation: create a new ContinuousExport with both"))]
#[x_kube(validation = Rule::new("self.managementPolicy != 'ObserveOnly' || !self.stopped")
    .message("spec.stopped: true cannot be combined with spec.managementPolicy ObserveOnly: an observed export is \
              never stopped by the operator, and stopped cannot be set back to false; use managementPolicy Full to \
              stop the export, or create a new ContinuousExport to observe it"))]
#[serde(rename_all = "camelCase")]
pub struct ContinuousExportSpec {
    /// Stop the export (AWS StopContinuousExport). One-way: once true it cannot be set
    /// back to false, because a stopped ADS export cannot be resumed; create a new
    /// ContinuousExport to start another export. Setting it on a new object that has no
    /// export yet means no export is started.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self || !oldSelf")
        .message("a stopped export cannot be resumed; create a new ContinuousExport"))]
    pub stopped: bool,

    /// ID of an existing continuous export to adopt instead of starting a new one
    /// (as listed by `aws discovery describe-continuous-exports`). Can only be set
    /// when the object is created; immutable. 1 to 200 characters, no whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200), pattern(r"^\S*$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.exportId is immutable"))]
    pub export_id: Option<String>,

    /// AWS region to call, e.g. `us-west-2`, `us-gov-west-1` or `eusc-de-east-1`
    /// (lower case: a 2 to 4 letter prefix, one or more words, a number). It must be
    /// the AWS Migration Hub home region. Defaults to the operator's region
    /// (`--aws-region`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), pattern(r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.region is immutable"))]
    pub region: Option<String>,

    /// The AWS account to use (README, "Many accounts"): the name of a cluster-scoped
    /// `ExportAccount` that allows this object's namespace. The operator assumes its role
    /// for every ADS call of this object. Without it the operator's own credentials are
    /// used. Can only be set when the object is created; immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.accountRef is immutable"))]
    pub account_ref: Option<AccountRef>,

    /// What happens to the export when this object is deleted: `Delete` (default) stops
    /// an active export before the object goes away; `Retain` leaves it running.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Whether the operator manages the export or only observes it: `Full` (default)
    /// starts, adopts and stops it; `ObserveOnly` (for an export another team or tool
    /// owns) mirrors its status, times and conditions, never calls Start or Stop, and
    /// deleting the object never stops it. `ObserveOnly` requires `spec.exportId` and
    /// excludes `stopped: true`. May be changed both ways: `ObserveOnly` to `Full` takes
    /// over management (event `Adopted`), `Full` to `ObserveOnly` lets go of it.
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Keep a ConfigMap with this export's connection info for Amazon Athena consumers
    /// (README, "Connection info for Athena consumers"): the keys `exportId`, `region`,
    /// `s3Bucket`, `databaseName`, `exportStatus`, `startTime` and `stopTime`, for a Job's
    /// `envFrom`. Written once the object manages an export; a key without a value yet
    /// (e.g. `stopTime`) is left out. The ConfigMap is owned by this object (garbage
    /// collected with it); one that exists without this object as its controller is never
    /// overwritten (Stalled, reason `InfoTargetConflict`). Changing or removing this
    /// field deletes the ConfigMap written for the old name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_info_to: Option<InfoTarget>,
}

/// What the operator may do to the export (Crossplane's management policies, reduced
/// to the two that make sense for an export).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum ManagementPolicy {
    /// Start (or adopt), stop, and stop on deletion per `deletionPolicy`.
    #[default]
    Full,
    /// Only describe the export named by `spec.exportId` and mirror it into the status.
    ObserveOnly,
}

/// Where the connection info of an export is written (`spec.writeInfoTo`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InfoTarget {
    /// Name of the ConfigMap, in this object's namespace: a DNS-1123 subdomain (lower
    /// case letters, digits, `-` and `.`, starting and ending with a letter or digit; at
    /// most 253 characters).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS1123_SUBDOMAIN_RULE).message(
        "spec.writeInfoTo.configMapName must be a DNS-1123 subdomain (lower case letters, digits, '-' and '.', \
         starting and ending with a letter or digit), e.g. inventory-export-info"
    ))]
    pub config_map_name: String,
}

/// A reference to a cluster-scoped `ExportAccount` (`spec.accountRef`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    /// Name of the `ExportAccount` (a DNS-1123 subdomain, at most 253 characters).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(DNS1123_SUBDOMAIN_RULE).message(
        "spec.accountRef.name must be the name of an ExportAccount (a DNS-1123 subdomain: lower case letters, \
         digits, '-' and '.', starting and ending with a letter or digit), e.g. team-a"
    ))]
    pub name: String,
}

/// The CEL rule for `spec.writeInfoTo.configMapName` and `spec.accountRef.name`: Kubernetes' DNS-1123 subdomain
/// (k8s.io/apimachinery `validation.IsDNS1123Subdomain`; the length is the schema's).
const DNS1123_SUBDOMAIN_RULE: &str =
    r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// What deleting a `ContinuousExport` does to its AWS export.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Stop the export (if active) before the object is removed.
    #[default]
    Delete,
    /// Leave the export running; only the Kubernetes object is removed.
    Retain,
}

/// Observed state of a continuous export, as last reported by ADS.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousExportStatus {
    /// ID of the export this object manages (started or adopted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    /// ADS `ContinuousExportStatus`: START_IN_PROGRESS, START_FAILED, ACTIVE, ERROR,
    /// STOP_IN_PROGRESS, STOP_FAILED or INACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_status: Option<String>,
    /// ADS `statusDetail`, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_detail: Option<String>,
    /// S3 bucket the export writes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    /// ADS data source, e.g. `AGENT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<String>,
    /// Athena database name (ADS `schemaStorageConfig.databaseName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    /// When the export started: RFC 3339, UTC, millisecond precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the export stopped: RFC 3339, UTC, millisecond precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<String>,
    /// The AWS region the operator made this object's ADS calls in: `spec.region`, else
    /// the operator's `--aws-region`, else the account's Migration Hub home region as
    /// Migration Hub Config's `GetHomeRegion` reports it (e.g. `eu-central-1`). Absent
    /// while no region is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `ObserveOnly` when this status was written under `spec.managementPolicy:
    /// ObserveOnly` (absent under `Full`): the object then only observes `exportId` and
    /// manages no export, so a change to `Full` takes the export over as an adoption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_policy_schema")]
    pub management_policy: Option<ManagementPolicy>,
    /// The value of the `adsexport.io/reconcile-requested-at` annotation last handled
    /// (Flux's `status.lastHandledReconcileAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions `Ready`, `Synced`, `Reconciling` and `Stalled` (kstatus-compatible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The schema of `status.managementPolicy`: the enum inline, so the field keeps its own
/// description (a referenced enum's would replace it).
fn status_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "enum": ["Full", "ObserveOnly"], "nullable": true})
}

impl ContinuousExportStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is present with status `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }

    /// The export this object manages: `exportId`, unless it was written under
    /// `ObserveOnly` (then the object only observes it).
    pub fn managed_export_id(&self) -> Option<&str> {
        match self.management_policy {
            Some(ManagementPolicy::ObserveOnly) => None,
            _ => self.export_id.as_deref(),
        }
    }
}

impl ContinuousExportSpec {
    /// Whether the spec asks only to observe the export (`managementPolicy: ObserveOnly`).
    pub fn observe_only(&self) -> bool {
        self.management_policy == ManagementPolicy::ObserveOnly
    }
}

/// The generated CRD for `ContinuousExport`.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(ContinuousExport::crd()).expect("a CRD serializes");
    unwrap_descriptions(&mut crd);
    serde_json::from_value(crd).expect("the same CRD, re-read")
}

/// Joins the hard-wrapped lines of every `description` (rustdoc comments are wrapped
/// at 90 columns) into one line per paragraph, so `kubectl explain` wraps them for its
/// terminal instead of breaking mid-sentence. Paragraphs (blank lines) and list items
/// (`- `) keep their line breaks.
pub(super) fn unwrap_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    serde_json::Value::String(text) if key == "description" => *text = unwrap_paragraphs(text),
                    other => unwrap_descriptions(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

fn unwrap_paragraphs(text: &str) -> String {
    let paragraphs = text.split("\n\n").map(|p| {
        let mut out = String::new();
        for line in p.lines() {
            if !out.is_empty() {
                out.push(if line.trim_start().starts_with("- ") { '\n' } else { ' ' });
            }
            out.push_str(line.trim_end());
        }
        out
    });
    paragraphs.collect::<Vec<_>>().join("\n\n")
}

/// The CRD as YAML, exactly as committed in `crds/continuousexports.adsexport.io.yaml`.
///
/// # Errors
/// Returns the serializer's error (not expected for this fixed type).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&crd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_one_line_per_paragraph() {
        assert_eq!(
            unwrap_paragraphs("adopts the\none named\n\nSecond\n- a\n- b"),
            "adopts the one named\n\nSecond\n- a\n- b"
        );
        let yaml = crd_yaml().unwrap();
        assert!(yaml.contains("adopts the one named by `spec.exportId`"), "{yaml}");
    }

    #[test]
    fn crd_has_contract_names() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("continuousexports.adsexport.io"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["cex".to_string()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["ads".to_string()]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        let cols: Vec<_> =
            v.additional_printer_columns.as_ref().expect("printer columns").iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            cols,
            ["Export ID", "Status", "Region", "Stopped", "Ready", "Started", "Stopped At", "Policy", "Age"]
        );
        // only `kubectl get -o wide` shows the region and the policy
        let columns = v.additional_printer_columns.as_ref().unwrap();
        let region = columns.iter().find(|c| c.name == "Region").unwrap();
        assert_eq!((region.json_path.as_str(), region.priority), (".status.region", Some(1)));
        let wide: Vec<_> = columns.iter().filter(|c| c.priority == Some(1)).map(|c| c.name.as_str()).collect();
        assert_eq!(wide, ["Region", "Policy"], "only in -o wide");
    }

    #[test]
    fn crd_schema_carries_cel_rules_and_descriptions() {
        let json = serde_json::to_string(&crd()).expect("serialize");
        for needle in [
            "a stopped export cannot be resumed; create a new ContinuousExport",
            "spec.exportId is immutable",
            "spec.exportId can only be set when the ContinuousExport is created, and cannot be removed",
            "spec.managementPolicy ObserveOnly requires spec.exportId",
            "spec.stopped: true cannot be combined with spec.managementPolicy ObserveOnly",
            r#""maxLength":200"#,
            r#""pattern":"^\\S*$""#,
            "spec.writeInfoTo.configMapName must be a DNS-1123 subdomain",
            "x-kubernetes-validations",
        ] {
            assert!(json.contains(needle), "CRD lacks {needle}");
        }
        // every spec field is described, so `kubectl explain` is useful
        let crd = crd();
        let schema = crd.spec.versions[0].schema.as_ref().unwrap();
        let spec = &schema.open_api_v3_schema.as_ref().unwrap().properties.as_ref().unwrap()["spec"];
        for (name, prop) in spec.properties.as_ref().unwrap() {
            assert!(prop.description.is_some(), "spec.{name} has no description");
        }
        let status = &schema.open_api_v3_schema.as_ref().unwrap().properties.as_ref().unwrap()["status"];
        for (name, prop) in status.properties.as_ref().unwrap() {
            assert!(prop.description.is_some(), "status.{name} has no description");
        }
        let policy = &status.properties.as_ref().unwrap()["managementPolicy"];
        assert!(policy.description.as_deref().unwrap().contains("written under"), "the field's own description");
    }

    /// The CRD's `spec.region` pattern, as generated.
    fn region_pattern() -> String {
        let crd = crd();
        let schema = crd.spec.versions[0].schema.as_ref().unwrap();
        let spec = &schema.open_api_v3_schema.as_ref().unwrap().properties.as_ref().unwrap()["spec"];
        spec.properties.as_ref().unwrap()["region"].pattern.clone().expect("spec.region has a pattern")
    }

    #[test]
    fn region_pattern_admits_every_partition_prefix() {
        // 2 to 4 letter prefixes: `us-west-2`, `us-gov-west-1`, `cn-north-1`,
        // `eusc-de-east-1` (AWS European Sovereign Cloud). How the pattern matches
        // (Go RE2, as the apiserver and helm use) is tested through helm in
        // tests/chart.rs against the chart's values.schema.json, which must carry the
        // same pattern for `awsRegion` (plus `^$|` for "unset").
        assert_eq!(region_pattern(), r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$");
        let values: serde_json::Value =
            serde_json::from_str(include_str!("../../charts/ads-export-operator/values.schema.json")).unwrap();
        assert_eq!(
            values["properties"]["awsRegion"]["pattern"].as_str(),
            Some(format!("^$|{}", region_pattern()).as_str()),
            "values.schema.json's awsRegion pattern must match the CRD's spec.region pattern"
        );
    }

    #[test]
    fn spec_defaults_and_round_trip() {
        let spec: ContinuousExportSpec = serde_json::from_str("{}").unwrap();
        assert!(!spec.stopped);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.export_id, None);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(spec.management_policy, ManagementPolicy::Full);
        assert_eq!(json, serde_json::json!({"stopped": false, "deletionPolicy": "Delete", "managementPolicy": "Full"}));
    }
}
