//! The `run` subcommand as a library function: Kubernetes client, AWS client,
//! metrics and health server, optional leader election, and the controller, all
//! stopped by one [`CancellationToken`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::account_connector::AwsAccounts;
use crate::ads::aws::{AwsExportService, AwsSettings};
use crate::ads::home_region::{AwsHomeRegionLookup, HomeRegionCache};
use crate::ads::limit::RateLimits;
use crate::cli::RunArgs;
use crate::controller::{self, ReconcileObserver};
use crate::http::{self, Health};
use crate::leader;
use crate::metrics::Metrics;

/// Feeds reconcile observations to the metrics and flips readiness once the watch
/// cache is synced.
struct Observers {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl ReconcileObserver for Observers {
    fn reconciled(&self, result: &'static str, elapsed: Duration) {
        self.metrics.reconciled(result, elapsed);
    }

    fn export_status(&self, uid: &str, status: Option<&str>) {
        self.metrics.export_status(uid, status);
    }

    fn deleted(&self, uid: &str) {
        self.metrics.deleted(uid);
    }

    fn synced(&self) {
        self.health.set_ready(true);
    }
}

/// Runs the operator until `shutdown` is cancelled (SIGTERM in the binary).
///
/// Start-up order: Kubernetes client and preflight (CRD installed, RBAC), the HTTP
/// server on `--metrics-addr`, the AWS client, then the controller, behind the
/// leader lease when `--leader-elect` is set. `/readyz` turns ready once the watch
/// cache is synced, or, for a standby, once it is waiting on the Lease.
///
/// # Errors
/// A one-line, actionable description: no cluster configuration, unreachable
/// apiserver, CRD missing, forbidden, address in use, lease lost.
pub async fn run(args: RunArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    args.validate().map_err(|e| anyhow::anyhow!(e))?;
    // A shutdown during start-up (e.g. while the apiserver does not answer) ends it there.
    let Started { client, listener, ads } = tokio::select! {
        started = start(&args) => started?,
        () = shutdown.cancelled() => {
            tracing::info!("stopped during start-up");
            return Ok(());
        }
    };

    let metrics = Metrics::new();
    let health = Arc::new(Health::default());
    let server = {
        let stop = shutdown.clone();
        tokio::spawn(http::serve(listener, metrics.clone(), health.clone(), async move { stop.cancelled().await }))
    };
    let limits = Arc::new(RateLimits::new(args.aws_max_requests_per_second));
    let ads = ads.with_observer(metrics.clone()).with_rate_limits(limits.clone());
    let aws_accounts = AwsAccounts::new(
        ads.sdk_config().clone(),
        args.aws_max_requests_per_second,
        args.migration_hub_config_region.clone(),
    )
    .with_observer(metrics.clone());
    let aws_accounts = Arc::new(aws_accounts);
    let accounts =
        move || controller::AccountSupport { connector: aws_accounts.clone(), verifier: aws_accounts.clone() };
    let mut settings = args.settings();
    settings.default_region = ads.default_region();
    let lookup = AwsHomeRegionLookup::new(ads.sdk_config(), &args.migration_hub_config_region)
        .with_rate_limits(limits)
        .with_observer(metrics.clone());
    settings.home_region = Some(Arc::new(HomeRegionCache::new(Arc::new(lookup))));
    if settings.default_region.is_none() {
        tracing::info!(
            "no default AWS region (--aws-region, AWS_REGION or profile): objects without spec.region run in the \
             account's Migration Hub home region"
        );
    }
    let observer: Arc<dyn ReconcileObserver> = Arc::new(Observers { metrics: metrics.clone(), health: health.clone() });

    let result = if args.leader_elect {
        leader::run_as_leader(
            client.clone(),
            args.lease_settings(),
            shutdown.clone(),
            || health.set_ready(true),
            |leading| metrics.set_leader(leading),
            |stop| {
                let shutdown = async move { stop.cancelled().await };
                controller::run_with_accounts(client, ads, Some(accounts()), settings, Some(observer), shutdown)
            },
        )
        .await
    } else {
        metrics.set_leader(true);
        let stop = shutdown.clone();
        let shutdown = async move { stop.cancelled().await };
        controller::run_with_accounts(client, ads, Some(accounts()), settings, Some(observer), shutdown).await
    };
    shutdown.cancel();
    match server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics server failed"),
        Err(e) => tracing::warn!(error = %e, "metrics server task failed"),
        Ok(Ok(())) => {}
    }
    result
}

/// What start-up produced.
struct Started {
    client: kube::Client,
    listener: tokio::net::TcpListener,
    ads: AwsExportService,
}

/// Kubernetes client and preflight, the HTTP listener, the AWS client.
async fn start(args: &RunArgs) -> anyhow::Result<Started> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("no Kubernetes client configuration (KUBECONFIG or in-cluster): {e}"))?;
    crate::identity::identify(&mut config);
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("cannot build the Kubernetes client from its configuration: {e}"))?;
    controller::preflight(&client, args.namespace.as_deref()).await?;
    controller::preflight_accounts(&client).await?;
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr))?;
    let ads = AwsExportService::load(AwsSettings {
        region: args.aws_region.clone(),
        endpoint_url: args.aws_endpoint_url.clone(),
    })
    .await;
    Ok(Started { client, listener, ads })
}
