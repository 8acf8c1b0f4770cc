//! What a reconcile returns to the runtime ([`Error`]) and how the runtime requeues
//! after it ([`error_policy`]).

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::backoff::Pace;
use super::claims::key;
use super::context::Context;
use super::failure::Failure;
use crate::ads::ExportService;
use crate::api::ContinuousExport;

/// Errors a reconcile returns to the runtime; each leads to a backoff requeue.
///
/// AWS errors of the `Apply` branch do not surface here: they are written into
/// conditions and requeued from within reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (status write, annotation patch, read).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Stopping the export of an object being deleted failed; retried after
    /// `retry_in`, the failure backoff delay already stated in the object's `Synced`
    /// condition.
    #[error("{error}")]
    Retry {
        /// What failed.
        error: Failure,
        /// When to try again (the error policy requeues after exactly this).
        retry_in: Duration,
    },
    /// The finalizer helper failed (adding or removing `adsexport.io/stop-export`).
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The object lacks a namespace or name (never for objects read from the apiserver).
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// Deletion waits for the export to leave a transition (e.g. still starting):
    /// not a failure; polled on the short transition schedule.
    #[error("waiting: {0}")]
    Waiting(String),
}

impl Error {
    /// The error itself, or the reconcile error a finalizer error wraps.
    fn inner(&self) -> &Error {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Finalizer(f) => match &**f {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.inner(),
                _ => self,
            },
            _ => self,
        }
    }

    /// Whether this is a normal wait rather than a failure.
    fn is_waiting(&self) -> bool {
        matches!(self.inner(), Error::Waiting(_))
    }

    /// The delay a [`Error::Retry`] (possibly inside a finalizer error) asks for.
    fn retry_in(&self) -> Option<Duration> {
        match self.inner() {
            Error::Retry { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }
}

/// The error policy: requeue after the object's next backoff delay (or, for a
/// normal wait, the next transition poll).
pub fn error_policy<S: ExportService>(obj: Arc<ContinuousExport>, err: &Error, ctx: Arc<Context<S>>) -> Action {
    let key = key(&obj);
    if err.is_waiting() {
        let delay = ctx.backoff.advance(&key, Pace::Polling, 0.0).map_or(Duration::ZERO, |d| d.after);
        tracing::info!(namespace = obj.namespace().unwrap_or_default(), name = obj.name_any(), %err, retry_in = ?delay);
        return Action::requeue(delay);
    }
    let delay = err.retry_in().unwrap_or_else(|| {
        ctx.backoff.advance(&key, Pace::Failing, rand::random::<f64>()).map_or(Duration::ZERO, |d| d.after)
    });
    tracing::warn!(
        namespace = obj.namespace().unwrap_or_default(),
        name = obj.name_any(),
        error = %err,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}
