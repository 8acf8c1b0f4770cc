//! Leader election on a `coordination.k8s.io/v1` Lease, with `kube-lease-manager`
//! (a maintained crate on kube 5 that updates the Lease with server-side apply, so
//! two replicas can never both take it).
//!
//! Only the holder runs the controller; a standby waits. Losing the lease stops the
//! controller at once, in-flight reconciles included (another replica may already be
//! acting on the same exports), and ends the process with an error, as
//! controller-runtime's manager does (`leader election lost`), so the replica
//! restarts with fresh caches and waits as a standby. On shutdown (SIGTERM) the holder
//! lets in-flight reconciles finish, then releases the Lease so a standby takes over
//! at once instead of after the lease duration.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio_util::sync::CancellationToken;

/// Lease settings (`--lease-*` flags).
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease name (`--lease-name`).
    pub name: String,
    /// Lease namespace (`--lease-namespace`, the pod's namespace in the chart).
    pub namespace: String,
    /// This replica's identity in `holderIdentity` (the pod name, plus a random suffix).
    pub identity: String,
    /// How long a lease stays valid without renewal (`--lease-duration`, whole
    /// seconds, at least 2 s).
    pub duration: Duration,
    /// How often the holder renews (`--lease-renew-interval`, whole seconds, shorter
    /// than the duration).
    pub renew_interval: Duration,
}

impl LeaseSettings {
    /// Checks the durations kube-lease-manager accepts (whole seconds, renew < duration).
    ///
    /// # Errors
    /// A one-line message naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        let (d, r) = (self.duration.as_secs(), self.renew_interval.as_secs());
        if d < 2 {
            return Err("--lease-duration must be at least 2s".into());
        }
        if r == 0 || r >= d {
            return Err(format!(
                "--lease-renew-interval ({r}s) must be at least 1s and shorter than --lease-duration ({d}s)"
            ));
        }
        Ok(())
    }

    fn params(&self) -> LeaseParams {
        let duration = self.duration.as_secs();
        // kube-lease-manager renews `grace` seconds before expiry
        let grace = duration - self.renew_interval.as_secs();
        LeaseParams::new(self.identity.clone(), duration, grace)
            .with_field_manager(format!("ads-export-operator-{}", self.identity))
    }
}

/// Runs `work` while this replica holds the Lease.
///
/// Waits for the lease (or `shutdown`), then calls `on_leader(true)` and runs
/// `work(stop)`, where `stop` is cancelled on `shutdown`: `work` should then wind
/// down gracefully, still holding the Lease. If the lease is lost instead (another
/// identity holds it, the lease manager failed, or no renewal was seen within the
/// renew deadline, see `renew_deadline`), the
/// `work` future is dropped at once, without waiting for it, and an error line
/// `leader election lost` is logged. `on_standby` is called once the Lease is
/// reachable (the replica is a healthy standby). Calls `on_leader(false)` after
/// `work` ends, and releases the Lease (if still held) before returning.
///
/// Dropping `work` must cancel everything it started: the controller's reconciles
/// run in tasks that kube-runtime aborts when its stream is dropped.
///
/// # Errors
/// The Lease API failed at start-up; the lease was lost while working
/// (`leader election lost: ...`); or `work`'s own error.
pub async fn run_as_leader<W, Fut>(
    client: Client,
    lease: LeaseSettings,
    shutdown: CancellationToken,
    on_standby: impl FnOnce(),
    on_leader: impl Fn(bool),
    work: W,
) -> anyhow::Result<()>
where
    W: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    lease.validate().map_err(|e| anyhow::anyhow!(e))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease.namespace);
    let manager = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_parameters(lease.params())
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("cannot use Lease {}/{}: {e}", lease.namespace, lease.name))?;
    let (mut is_leader, task) = manager.watch().await;
    on_standby();
    tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "waiting for the leader lease");

    let acquired = tokio::select! {
        () = shutdown.cancelled() => false,
        r = is_leader.wait_for(|l| *l) => r.is_ok(),
    };
    let ended = if acquired {
        lead(&leases, &lease, &shutdown, &on_leader, &is_leader, work).await
    } else {
        tracing::info!("shutting down as standby");
        Ended::Worked(Ok(()))
    };
    // Closing the channel makes the manager release the Lease (a no-op when another
    // identity holds it).
    drop(is_leader);
    match ended {
        Ended::Lost(e) => {
            // Nothing to release, and the manager may be sleeping between failed renewals.
            task.abort();
            Err(e)
        }
        Ended::Worked(result) => {
            release(task).await;
            result
        }
    }
}

/// How leading ended.
enum Ended {
    /// `work` returned (or the replica never led).
    Worked(anyhow::Result<()>),
    /// The lease was lost; `work` was dropped at once.
    Lost(anyhow::Error),
}

/// Runs `work` while this replica holds the lease; drops it the moment the lease is
/// lost or can no longer be renewed in time.
async fn lead<W, Fut>(
    leases: &Api<Lease>,
    lease: &LeaseSettings,
    shutdown: &CancellationToken,
    on_leader: &impl Fn(bool),
    is_leader: &tokio::sync::watch::Receiver<bool>,
    work: W,
) -> Ended
where
    W: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    tracing::info!(identity = %lease.identity, "acquired the leader lease");
    on_leader(true);
    let stop = shutdown.child_token();
    let mut watch = is_leader.clone();
    // Ends when the lease is lost, or when the manager stopped (it cannot renew).
    let lost = async {
        tokio::select! {
            _ = watch.wait_for(|l| !*l) => format!("Lease {}/{} is no longer held by {}", lease.namespace, lease.name, lease.identity),
            why = renew_deadline(leases, lease) => why,
        }
    };
    let ended = tokio::select! {
        r = work(stop.clone()) => Ended::Worked(r),
        why = lost => {
            // `work` is dropped here, before anything else: no reconcile of this
            // replica continues while another may lead.
            tracing::error!(
                lease = %lease.name,
                namespace = %lease.namespace,
                identity = %lease.identity,
                reason = %why,
                "leader election lost; stopped the controller at once"
            );
            Ended::Lost(anyhow::anyhow!("leader election lost: {why}"))
        }
    };
    stop.cancel();
    on_leader(false);
    ended
}

/// Waits (at most 5 s) for the lease manager to release the Lease, and logs how it went.
async fn release<T, E: std::fmt::Display>(task: tokio::task::JoinHandle<Result<T, E>>) {
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the leader lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease task failed"),
        Err(_) => tracing::warn!("timed out releasing the leader lease"),
    }
}

/// Resolves, with the reason, once this replica can no longer count on holding the
/// Lease: the newest renewal it has seen (`spec.renewTime` while `spec.holderIdentity`
/// is this replica; at first, the moment of acquisition) is older than the lease
/// duration less half a renew interval. A standby takes the Lease only after
/// `renewTime + leaseDurationSeconds`, so the controller stops before another replica
/// can start: controller-runtime's renew deadline, which kube-lease-manager lacks (it
/// keeps reporting leadership while its renewals fail, e.g. with the apiserver out of
/// reach or the Lease permission revoked). Looks at the Lease every half renew interval
/// (at least every 250 ms); failed reads only age the last renewal seen.
async fn renew_deadline(leases: &Api<Lease>, lease: &LeaseSettings) -> String {
    let budget = lease.duration.saturating_sub(lease.renew_interval / 2);
    let period = (lease.renew_interval / 2).max(Duration::from_millis(250));
    let mut renewed = Timestamp::now();
    loop {
        let age = Timestamp::now().duration_since(renewed);
        let left = Duration::try_from(SignedDuration::try_from(budget).unwrap_or(SignedDuration::MAX) - age)
            .unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return format!(
                "Lease {}/{} not renewed for {:.1}s (renew deadline {:.1}s: lease duration less half the renew \
                 interval)",
                lease.namespace,
                lease.name,
                age.as_secs_f64(),
                budget.as_secs_f64()
            );
        }
        // Never past the deadline, even if the apiserver does not answer at all.
        let read = async {
            tokio::time::sleep(period.min(left)).await;
            leases.get(&lease.name).await
        };
        match tokio::time::timeout(left, read).await {
            Ok(Ok(l)) => {
                let spec = l.spec.unwrap_or_default();
                // Another holder is reported by the lease manager's own watch.
                if spec.holder_identity.as_deref() == Some(lease.identity.as_str())
                    && let Some(t) = spec.renew_time
                {
                    renewed = renewed.max(t.0);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, lease = %lease.name, "cannot read the leader Lease"),
            Err(_) => {} // the deadline passed while waiting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(duration: u64, renew: u64) -> LeaseSettings {
        LeaseSettings {
            name: "l".into(),
            namespace: "n".into(),
            identity: "i".into(),
            duration: Duration::from_secs(duration),
            renew_interval: Duration::from_secs(renew),
        }
    }

    #[test]
    fn validation_names_the_flags() {
        assert!(s(15, 5).validate().is_ok());
        assert!(s(1, 0).validate().unwrap_err().contains("--lease-duration"));
        assert!(s(15, 15).validate().unwrap_err().contains("--lease-renew-interval"));
        assert!(s(15, 0).validate().unwrap_err().contains("--lease-renew-interval"));
    }

    #[test]
    fn renew_interval_maps_to_grace() {
        // must not panic (kube-lease-manager panics on grace >= duration)
        let _ = s(15, 5).params();
        let _ = s(2, 1).params();
    }
}
