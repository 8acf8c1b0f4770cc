//! The operator's [`Connector`] and [`Verifier`] for `ExportAccount`s, on the AWS SDK
//! (`ads::assume`): each account gets its own [`AwsExportService`] with the role's
//! credentials and its own [`RateLimits`] (so the token bucket is per (account,
//! region)), and its own [`HomeRegionCache`], whose `GetHomeRegion` takes its tokens
//! from the same [`RateLimits`].

use std::sync::Arc;

use aws_config::SdkConfig;
use futures::future::BoxFuture;

use crate::ads::assume::{self, CallerIdentity};
use crate::ads::aws::AwsExportService;
use crate::ads::aws::CallObserver;
use crate::ads::home_region::{AwsHomeRegionLookup, HomeRegionCache};
use crate::ads::limit::RateLimits;
use crate::api::ExportAccountSpec;
use crate::controller::accounts::{Connection, Connector};
use crate::controller::export_account::Verifier;

/// Connects and verifies accounts from the operator's own [`SdkConfig`] (its
/// credentials sign `AssumeRole`; its endpoint, timeouts and retries serve ADS).
#[derive(Clone)]
pub struct AwsAccounts {
    base: SdkConfig,
    observer: Option<Arc<dyn CallObserver>>,
    max_requests_per_second: f64,
    migration_hub_config_region: String,
}

impl AwsAccounts {
    /// Accounts built on `base`; each account's ADS calls, and its `GetHomeRegion` (in
    /// the bucket of `migration_hub_config_region`, where it is called), are limited to
    /// `max_requests_per_second` per region (the `--aws-max-requests-per-second`).
    pub fn new(base: SdkConfig, max_requests_per_second: f64, migration_hub_config_region: String) -> Self {
        Self { base, observer: None, max_requests_per_second, migration_hub_config_region }
    }

    /// Reports every account's calls to `observer` (metrics).
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl Connector<AwsExportService> for AwsAccounts {
    fn connect<'a>(
        &'a self,
        name: &'a str,
        spec: &'a ExportAccountSpec,
    ) -> BoxFuture<'a, Connection<AwsExportService>> {
        Box::pin(async move {
            let config = assume::account_config(&self.base, name, spec).await;
            let limits = Arc::new(RateLimits::new(self.max_requests_per_second));
            let mut lookup =
                AwsHomeRegionLookup::new(&config, &self.migration_hub_config_region).with_rate_limits(limits.clone());
            let mut ads = AwsExportService::from_sdk_config(config).with_rate_limits(limits);
            if let Some(o) = &self.observer {
                ads = ads.with_observer(o.clone());
                lookup = lookup.with_observer(o.clone());
            }
            Connection { ads, home_region: Some(Arc::new(HomeRegionCache::new(Arc::new(lookup)))) }
        })
    }
}

impl Verifier for AwsAccounts {
    fn verify<'a>(
        &'a self,
        name: &'a str,
        spec: &'a ExportAccountSpec,
    ) -> BoxFuture<'a, Result<CallerIdentity, String>> {
        Box::pin(assume::verify(&self.base, name, spec))
    }
}
