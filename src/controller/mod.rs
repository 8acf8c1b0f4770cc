//! The `ContinuousExport` controller: reconcile as observe -> decide -> act
//! (docs/architecture.md).
//!
//! - [`observe`] reads the object, the watch cache and ADS into one [`observation::Observation`];
//! - [`decide`] (apply) and [`deletion`] (cleanup) are the pure rules, [`fold`] reads a
//!   call's outcome, [`conclude`] computes conditions, requeue and backoff;
//! - [`act`] makes the calls, publishes events and writes the status once;
//! - [`reconcile`] wires the three steps; [`run`] the watch and the runtime.
//!
//! AWS is reached only through [`ExportService`], Kubernetes only through [`kube::Api`].

pub mod accounts;
pub mod act;
pub mod annotations;
pub mod backoff;
pub mod claim_index;
pub mod claims;
pub mod conclude;
pub mod conditions;
pub mod context;
pub mod decide;
#[cfg(test)]
mod decide_table;
pub mod deletion;
pub mod error;
pub mod events;
pub mod export_account;
pub mod failure;
pub mod fold;
pub mod info;
pub mod messages;
pub mod observation;
pub mod observe;
pub mod placement;
pub mod reconcile;
pub mod run;
#[cfg(test)]
mod tests;

#[cfg(doc)]
use crate::ads::ExportService;

pub use context::{Context, ReconcileObserver, Settings, StartGate, StartGuard};
pub use error::{Error, error_policy};
pub use reconcile::reconcile;
pub use run::{ACCOUNTS_RBAC, AccountSupport, preflight, preflight_accounts, run, run_with_accounts, scoped_api};
