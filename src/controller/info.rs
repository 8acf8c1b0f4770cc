//! The connection-info ConfigMap of `spec.writeInfoTo` (README, "Connection info for
//! Athena consumers"): its content ([`content`]), what is found under its name
//! ([`Found`]), and the rule for a pass ([`plan`] -> [`InfoPlan`]). Pure: the reads
//! are in [`super::observe::info`], the writes in [`super::act::write_info`].
//!
//! The rules:
//! - written once the object manages an export (`status.exportId`), from the status the
//!   pass concluded and the region the pass used; keys without a value are left out;
//! - written (server-side apply) only when one of its keys differs from the content;
//! - written only when absent or controlled by this object (ownerReference with
//!   `controller: true` and this object's UID); anything else is a conflict, and the
//!   ConfigMap is left untouched;
//! - a ConfigMap this object controls under another name than `spec.writeInfoTo`
//!   names (the field changed or was removed) is deleted;
//! - deleting the object leaves the ConfigMap to the garbage collector (ownerReference).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use super::decide::Phase;
use super::failure::Failure;
use super::messages;
use crate::api::ContinuousExportStatus;

/// Label on every ConfigMap this operator writes: the watch selects on it, so only
/// these ConfigMaps are cached (value `"true"`).
pub const INFO_LABEL: &str = "adsexport.io/connection-info";

/// The keys of the ConfigMap, in the order the README lists them. They are valid
/// environment variable names, for `envFrom`.
pub const KEYS: [&str; 7] = ["exportId", "region", "s3Bucket", "databaseName", "exportStatus", "startTime", "stopTime"];

/// The ConfigMap's `data`.
pub type Data = BTreeMap<String, String>;

/// The content for an object whose status is `status` and whose pass used `region`:
/// `None` while it manages no export (nothing is written). Keys without a value yet are
/// left out (a consumer sees the variable unset, not empty).
pub fn content(status: &ContinuousExportStatus, region: Option<&str>) -> Option<Data> {
    status.export_id.as_ref()?;
    let values = [
        &status.export_id,
        &region.map(str::to_owned),
        &status.s3_bucket,
        &status.database_name,
        &status.export_status,
        &status.start_time,
        &status.stop_time,
    ];
    let pairs = KEYS.iter().zip(values).filter_map(|(k, v)| Some(((*k).to_owned(), v.clone()?)));
    Some(pairs.collect())
}

/// Whether `cm` carries, for every key of [`KEYS`], what `data` says (an extra key
/// someone else added is not ours to judge).
pub fn matches(cm: &ConfigMap, data: &Data) -> bool {
    let current = cm.data.as_ref();
    KEYS.iter().all(|k| current.and_then(|d| d.get(*k)) == data.get(*k))
}

/// Whether `cm` is controlled by the object with UID `uid`.
pub fn controlled_by(cm: &ConfigMap, uid: &str) -> bool {
    cm.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true))
}

/// What exists under the ConfigMap's name.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    /// Nothing was looked at: no content to write (see [`needs_read`]).
    NotRead,
    /// No ConfigMap of that name.
    Absent,
    /// A ConfigMap this object controls, with whether its keys match the content.
    Ours {
        /// Its keys say what the content says.
        current: bool,
    },
    /// A ConfigMap someone else made or controls.
    Foreign {
        /// Its controller (`Kind/name`), if it has one.
        controller: Option<String>,
    },
}

impl Found {
    /// What `cm` (as read by name) is to the object with UID `uid` and `data` to write.
    pub fn of(cm: Option<&ConfigMap>, uid: &str, data: &Data) -> Found {
        match cm {
            None => Found::Absent,
            Some(cm) if controlled_by(cm, uid) => Found::Ours { current: matches(cm, data) },
            Some(cm) => Found::Foreign {
                controller: cm
                    .owner_references()
                    .iter()
                    .find(|r| r.controller == Some(true))
                    .map(|r| format!("{}/{}", r.kind, r.name)),
            },
        }
    }
}

/// Whether the ConfigMap must be read by name: the cached one (the watch holds only
/// labelled ConfigMaps) is not this object's with the same content. Pure.
pub fn needs_read(cached: Option<&ConfigMap>, uid: &str, data: &Data) -> bool {
    !cached.is_some_and(|cm| controlled_by(cm, uid) && matches(cm, data))
}

/// The write a pass makes under `spec.writeInfoTo.configMapName`.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Nothing to write: no content yet, or the ConfigMap says it already.
    Unchanged,
    /// Server-side apply this content.
    Apply(Data),
    /// The name is taken: nothing written; the pass's result says why.
    Conflict(Failure),
}

/// What a pass does about connection info.
#[derive(Clone, Debug, PartialEq)]
pub struct InfoPlan {
    /// The ConfigMap's name and the write (`None`: no `spec.writeInfoTo`).
    pub write: Option<(String, Write)>,
    /// ConfigMaps this object controls that no longer are its target: deleted.
    pub remove: Vec<String>,
}

impl InfoPlan {
    /// Nothing to do.
    pub fn none() -> Self {
        Self { write: None, remove: Vec::new() }
    }

    /// The conflict found, if any.
    pub fn conflict(&self) -> Option<&Failure> {
        match &self.write {
            Some((_, Write::Conflict(f))) => Some(f),
            _ => None,
        }
    }
}

/// What a pass read about its connection info ([`super::observe::info`]).
#[derive(Clone, Debug, PartialEq)]
pub struct InfoObservation {
    /// The object's namespace (the ConfigMap's).
    pub ns: String,
    /// `spec.writeInfoTo.configMapName`.
    pub target: Option<String>,
    /// The [`content`] to write.
    pub data: Option<Data>,
    /// What is under `target`.
    pub found: Found,
    /// The ConfigMaps this object controls (from the watch cache).
    pub controlled: Vec<String>,
}

impl InfoObservation {
    /// The [`plan`] for this observation.
    pub fn plan(&self) -> InfoPlan {
        plan(&self.ns, self.target.as_deref(), self.data.clone(), &self.found, &self.controlled)
    }
}

/// The pass's result with the connection info's conflict: a pass that is otherwise
/// steady stalls on it (the export itself is still managed and its status written).
/// A transition keeps polling and a failure keeps its own reason: the conflict shows
/// once the export is settled.
pub fn fold(result: &mut Result<Phase, Failure>, plan: &InfoPlan) {
    if let (Ok(Phase::Steady), Some(f)) = (&*result, plan.conflict()) {
        *result = Err(f.clone());
    }
}

/// The rule for a pass of the object in namespace `ns`: `target` is
/// `spec.writeInfoTo.configMapName`, `data` the [`content`], `found` what is under
/// `target`, `controlled` the names of the ConfigMaps this object controls (from the
/// watch cache).
pub fn plan(ns: &str, target: Option<&str>, data: Option<Data>, found: &Found, controlled: &[String]) -> InfoPlan {
    let remove = controlled.iter().filter(|n| Some(n.as_str()) != target).cloned().collect();
    let Some(name) = target else { return InfoPlan { write: None, remove } };
    let write = match (data, found) {
        (None, _) | (_, Found::Ours { current: true }) | (_, Found::NotRead) => Write::Unchanged,
        (Some(data), Found::Absent | Found::Ours { current: false }) => Write::Apply(data),
        (Some(_), Found::Foreign { controller }) => {
            Write::Conflict(messages::info_target_conflict(ns, name, controller.as_deref()))
        }
    };
    InfoPlan { write: Some((name.to_owned(), write)), remove }
}

/// The names of the ConfigMaps in `cached` (the watch cache) in namespace `ns` that the
/// object with UID `uid` controls.
pub fn controlled_names<'a>(cached: impl IntoIterator<Item = &'a ConfigMap>, ns: &str, uid: &str) -> Vec<String> {
    cached
        .into_iter()
        .filter(|cm| cm.namespace().as_deref() == Some(ns) && controlled_by(cm, uid))
        .map(ResourceExt::name_any)
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::controller::failure::Cause;

    const UID: &str = "uid-1";

    fn status(stopped: bool) -> ContinuousExportStatus {
        ContinuousExportStatus {
            export_id: Some("e-1".into()),
            export_status: Some(if stopped { "INACTIVE" } else { "ACTIVE" }.into()),
            s3_bucket: Some("bucket".into()),
            database_name: Some("db".into()),
            start_time: Some("2026-01-01T00:00:00.000Z".into()),
            stop_time: stopped.then(|| "2026-01-02T00:00:00.000Z".into()),
            ..Default::default()
        }
    }

    fn cm(name: &str, owner_uid: Option<&str>, data: Option<Data>) -> ConfigMap {
        let mut cm = ConfigMap { data, ..Default::default() };
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("ns".into());
        cm.metadata.owner_references = owner_uid.map(|uid| {
            vec![OwnerReference {
                api_version: "adsexport.io/v1alpha1".into(),
                kind: "ContinuousExport".into(),
                name: "other".into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        });
        cm
    }

    #[test]
    fn content_has_the_readme_keys_and_leaves_out_unknown_values() {
        let running = content(&status(false), Some("us-west-2")).unwrap();
        let keys: Vec<_> = running.keys().map(String::as_str).collect();
        assert_eq!(keys, ["databaseName", "exportId", "exportStatus", "region", "s3Bucket", "startTime"]);
        assert_eq!(running["region"], "us-west-2");
        let stopped = content(&status(true), Some("us-west-2")).unwrap();
        assert_eq!(stopped["stopTime"], "2026-01-02T00:00:00.000Z");
        assert_eq!(stopped["exportStatus"], "INACTIVE");
        assert_eq!(content(&ContinuousExportStatus::default(), Some("us-west-2")), None, "no export: no content");
        for k in KEYS {
            let env_name = k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            assert!(env_name && !k.starts_with(|c: char| c.is_ascii_digit()), "{k} is no env name");
        }
    }

    #[test]
    fn the_rule_writes_only_what_changed_and_never_a_foreign_configmap() {
        let data = content(&status(false), Some("us-west-2")).unwrap();
        let mut extra = data.clone();
        extra.insert("addedByHand".into(), "x".into());
        let table = [
            (None, Write::Apply(data.clone())),
            (Some(cm("info", Some(UID), Some(data.clone()))), Write::Unchanged),
            (Some(cm("info", Some(UID), Some(extra))), Write::Unchanged),
            (Some(cm("info", Some(UID), None)), Write::Apply(data.clone())),
        ];
        for (existing, want) in table {
            let found = Found::of(existing.as_ref(), UID, &data);
            let got = plan("ns", Some("info"), Some(data.clone()), &found, &[]);
            assert_eq!(got.write, Some(("info".into(), want)), "{existing:?}");
        }
        for existing in [cm("info", None, Some(data.clone())), cm("info", Some("uid-2"), None)] {
            let found = Found::of(Some(&existing), UID, &data);
            let got = plan("ns", Some("info"), Some(data.clone()), &found, &[]);
            let f = got.conflict().expect("a conflict");
            assert_eq!((f.reason(), f.cause), ("InfoTargetConflict", Cause::InfoTargetConflict));
            assert!(f.message.contains("ConfigMap ns/info"), "{}", f.message);
        }
        let owned = Found::of(Some(&cm("info", Some("uid-2"), None)), UID, &data);
        assert_eq!(owned, Found::Foreign { controller: Some("ContinuousExport/other".into()) });
    }

    #[test]
    fn no_export_yet_writes_nothing_and_an_old_name_is_removed() {
        let got = plan("ns", Some("info"), None, &Found::NotRead, &["info".into()]);
        assert_eq!(got, InfoPlan { write: Some(("info".into(), Write::Unchanged)), remove: vec![] });
        let data = content(&status(false), None).unwrap();
        assert!(!data.contains_key("region"));
        let renamed = plan("ns", Some("new"), Some(data.clone()), &Found::Absent, &["old".into()]);
        assert_eq!(renamed.remove, ["old"]);
        assert_eq!(renamed.write, Some(("new".into(), Write::Apply(data))));
        let removed = plan("ns", None, None, &Found::NotRead, &["old".into()]);
        assert_eq!(removed, InfoPlan { write: None, remove: vec!["old".into()] });
    }

    #[test]
    fn a_conflict_stalls_only_a_steady_pass() {
        let conflict = plan("ns", Some("info"), Some(Data::new()), &Found::Foreign { controller: None }, &[]);
        let mut steady = Ok(Phase::Steady);
        fold(&mut steady, &conflict);
        assert_eq!(steady.unwrap_err().cause, Cause::InfoTargetConflict);
        let mut polling = Ok(Phase::Transition);
        fold(&mut polling, &conflict);
        assert_eq!(polling, Ok(Phase::Transition));
        let mut failed = Err(messages::no_region());
        fold(&mut failed, &conflict);
        assert_eq!(failed.unwrap_err().cause, Cause::NoRegion);
        let mut fine = Ok(Phase::Steady);
        fold(&mut fine, &InfoPlan::none());
        assert_eq!(fine, Ok(Phase::Steady));
    }

    #[test]
    fn only_a_cached_current_configmap_of_ours_saves_the_read() {
        let data = content(&status(false), Some("us-west-2")).unwrap();
        assert!(!needs_read(Some(&cm("info", Some(UID), Some(data.clone()))), UID, &data));
        assert!(needs_read(Some(&cm("info", Some(UID), None)), UID, &data));
        assert!(needs_read(Some(&cm("info", Some("uid-2"), Some(data.clone()))), UID, &data));
        assert!(needs_read(None, UID, &data));
        let cached = [cm("a", Some(UID), None), cm("b", Some("uid-2"), None), cm("c", None, None)];
        assert_eq!(controlled_names(&cached, "ns", UID), ["a"]);
        assert!(controlled_names(&cached, "elsewhere", UID).is_empty());
    }
}
