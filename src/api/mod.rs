//! The custom resources of `adsexport.io/v1alpha1` and their CRDs:
//! `ContinuousExport` (namespaced, `continuous_export.rs`) and `ExportAccount`
//! (cluster-scoped, `export_account.rs`).
//!
//! The contract (field names, CEL rules, condition types, finalizer and annotation
//! names) is the README's "The ContinuousExport resource" and "Many accounts"; manifests
//! and tools outside this crate depend on it, so change it only together with a new API
//! version.

mod continuous_export;
mod export_account;

pub use continuous_export::*;
pub use export_account::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The names of the CRDs this crate defines, as the `crd` subcommand accepts them.
pub const CRD_NAMES: [&str; 2] = ["continuousexports.adsexport.io", "exportaccounts.adsexport.io"];

/// The generated CRD for `ExportAccount`.
pub fn account_crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(ExportAccount::crd()).expect("a CRD serializes");
    continuous_export::unwrap_descriptions(&mut crd);
    serde_json::from_value(crd).expect("the same CRD, re-read")
}

/// One CRD as YAML, by name (one of [`CRD_NAMES`]), exactly as committed in
/// `crds/<name>.yaml`; `None` for another name.
///
/// # Errors
/// Returns the serializer's error (not expected for these fixed types).
pub fn crd_yaml_named(name: &str) -> Option<Result<String, serde_yaml::Error>> {
    match name {
        "continuousexports.adsexport.io" => Some(crd_yaml()),
        "exportaccounts.adsexport.io" => Some(serde_yaml::to_string(&account_crd())),
        _ => None,
    }
}

/// Every CRD as one multi-document YAML stream (documents separated by `---`), for
/// `ads-export-operator crd | kubectl apply --server-side -f -`.
///
/// # Errors
/// Returns the serializer's error (not expected for these fixed types).
pub fn all_crds_yaml() -> Result<String, serde_yaml::Error> {
    let docs = CRD_NAMES.iter().filter_map(|n| crd_yaml_named(n)).collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}
