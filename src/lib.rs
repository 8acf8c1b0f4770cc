//! ads-export-operator: a Kubernetes operator for AWS Application Discovery Service
//! (ADS) continuous exports.
//!
//! - [`api`]: the `ContinuousExport` custom resource (`adsexport.io/v1alpha1`);
//! - [`controller`]: reconcile, conditions, backoff, finalizer wiring;
//! - [`ads`]: the export-service seam, its `aws-sdk-applicationdiscovery`
//!   implementation and error classification;
//! - [`emulator`]: a wire-accurate ADS emulator for tests and demos;
//! - [`operator`]: the `run` subcommand (clients, HTTP server, leader election, controller);
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease;
//! - [`metrics`] and [`http`]: Prometheus metrics, `/metrics`, `/healthz`, `/readyz`;
//! - [`cli`] and [`telemetry`]: the operator binary's flags and logging;
//! - [`identity`]: the `User-Agent` and AWS app name the operator sends;
//! - [`duration`] and [`signal`]: duration flags and messages, the shutdown signal (both binaries).
#![warn(missing_docs)]

pub mod account_connector;
pub mod ads;
pub mod api;
pub mod cli;
pub mod controller;
pub mod duration;
pub mod emulator;
pub mod http;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod signal;
pub mod telemetry;

/// Selects aws-lc-rs as the process-wide rustls crypto provider (the AWS SDK's
/// choice). Needed because more than one provider may be compiled in (e.g. `ring`
/// via a dependency), and rustls then refuses to guess. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
