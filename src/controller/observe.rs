//! The first step of a pass: read the object (fresh when the cache may lag), the
//! watch cache and ADS into one [`Observation`]. Which ADS reads are made is decided
//! by the pure rules ([`decide::reads`], [`deletion::needs_listing`],
//! [`deletion::to_describe`]); this module only performs them.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use super::accounts::{Binding, managed_region};
use super::annotations;
use super::backoff::Attempts;
use super::claims::{key, managed_id, pending_since};
use super::context::Context;
use super::decide::{self, ReadPlan};
use super::deletion;
use super::error::Error;
use super::info::{self, Found, InfoObservation};
use super::messages::RegionSource;
use super::observation::{Observation, Pending, Reads, Schedule, Source};
use super::placement::{RegionInputs, RegionStep, region_order, region_step};
use crate::ads::ExportService;
use crate::ads::shared::WATCH_MAX;
use crate::api::{ContinuousExport, ContinuousExportStatus, START_PENDING_ANNOTATION};

/// What names the region of `obj` bound to `bind` (see [`region_order`]).
fn region_inputs<'a, S>(obj: &'a ContinuousExport, ctx: &'a Context<S>, bind: &'a Binding<S>) -> RegionInputs<'a>
where
    S: ExportService,
{
    RegionInputs {
        spec: obj.spec.region.as_deref(),
        account: bind.account_region(),
        operator: ctx.settings.default_region.as_deref(),
        managed: managed_region(obj),
    }
}

/// The region of `obj` ([`region_order`], the one order the claim index uses too):
/// `spec.region`, else the `ExportAccount`'s `spec.region`, else the operator's default
/// region, else the region of the export the object manages (`status.region` with
/// `status.exportId`: it stays where it was started), else its account's Migration Hub
/// home region as last looked up ([`home_region`]).
pub fn region_of<S: ExportService>(obj: &ContinuousExport, ctx: &Context<S>, bind: &Binding<S>) -> Option<String> {
    let home = || bind.home_region(ctx.settings.home_region.as_ref()).and_then(|c| c.region());
    region_order(&region_inputs(obj, ctx, bind), home)
}

/// Where an object's region comes from, in [`region_of`]'s order (the account's
/// `spec.region` counts as named, like `spec.region`).
pub fn region_source<S: ExportService>(obj: &ContinuousExport, ctx: &Context<S>, bind: &Binding<S>) -> RegionSource {
    let named = RegionInputs { managed: None, ..region_inputs(obj, ctx, bind) };
    match region_step(&named) {
        RegionStep::Spec | RegionStep::Account => RegionSource::Spec,
        RegionStep::Operator => RegionSource::Operator,
        RegionStep::Managed | RegionStep::Home => RegionSource::HomeRegion,
    }
}

/// Looks up the account's home region (once, then cached) when the object names no
/// region and neither its account nor the operator has one: the pass then runs in it.
pub async fn home_region<S: ExportService>(obj: &ContinuousExport, ctx: &Context<S>, bind: &Binding<S>) {
    let cache = bind.home_region(ctx.settings.home_region.as_ref());
    if let (RegionSource::HomeRegion, Some(cache)) = (region_source(obj, ctx, bind), cache) {
        cache.ensure().await;
    }
}

/// Whether the apply branch must read the object afresh: no export recorded yet, so
/// the cache may lag behind this controller's own writes (an export just started, a
/// pending start), and starting twice must not happen.
pub fn needs_fresh_read(cached: &ContinuousExport, region: Option<&str>) -> bool {
    region.is_some() && cached.spec.export_id.is_none() && managed_id(cached).is_none()
}

/// The object to decide on: `cached`, or a fresh read (see [`needs_fresh_read`]) unless
/// `cached` is already the apiserver's answer to this pass's own write.
///
/// # Errors
/// [`Error::Kube`] when the read fails.
pub async fn object<'a, S: ExportService>(
    cached: &'a ContinuousExport,
    source: Source,
    api: &Api<ContinuousExport>,
    ctx: &Context<S>,
    bind: &Binding<S>,
) -> Result<Cow<'a, ContinuousExport>, Error> {
    if source == Source::Cache && needs_fresh_read(cached, region_of(cached, ctx, bind).as_deref()) {
        return Ok(Cow::Owned(api.get(&cached.name_any()).await?));
    }
    Ok(Cow::Borrowed(cached))
}

/// What the object and the watch cache say, without ADS reads yet.
pub fn local<S: ExportService>(obj: &ContinuousExport, ctx: &Context<S>, bind: &Binding<S>) -> Observation {
    let now = Timestamp::now();
    let region = region_of(obj, ctx, bind);
    let ids = [managed_id(obj), obj.spec.export_id.as_deref()];
    let others = ctx.claims.others(obj, region.as_deref(), ids.into_iter().flatten());
    let attempts: Attempts = ctx.backoff.attempts(&key(obj));
    Observation {
        region,
        generation: obj.meta().generation.unwrap_or(0),
        status: obj.status.clone().unwrap_or_default(),
        pending: Pending {
            marked: obj.annotations().contains_key(START_PENDING_ANNOTATION),
            since: pending_since(obj, now),
        },
        request: annotations::reconcile_request(obj),
        others,
        ads: Reads::default(),
        schedule: Schedule {
            resync: ctx.settings.resync_period,
            policy: ctx.backoff.policy(),
            attempts,
            jitter: rand::random::<f64>(),
        },
        now,
    }
}

/// The apply branch's observation: [`local`], then the ADS read [`decide::reads`] asks for.
pub async fn for_apply<S: ExportService>(obj: &ContinuousExport, ctx: &Context<S>, bind: &Binding<S>) -> Observation {
    let mut obs = local(obj, ctx, bind);
    let ads = bind.ads(&ctx.ads);
    let region = obs.region.clone().unwrap_or_default();
    let period = ctx.settings.resync_period;
    match decide::reads(&obj.spec, &obs) {
        ReadPlan::Nothing => {}
        ReadPlan::Describe(id) if decide::shared_read_suffices(&obj.spec, &obs) => {
            obs.ads.described = Some(ads.describe_shared(&region, &id, period).await);
        }
        // In transition: the region's watch keeps the export's latest look (and
        // reconciles this object when it changes).
        ReadPlan::Describe(id) if in_transition(&obs) => {
            obs.ads.described = Some(ads.describe_watched(&region, &id, WATCH_MAX).await);
        }
        // A Stop to come: its answer settles what a last look may have missed.
        ReadPlan::Describe(id) if decide::stop_reads_last_look(&obj.spec, &obs) => {
            obs.ads.described = Some(ads.describe_watched(&region, &id, period).await);
        }
        ReadPlan::Describe(id) => obs.ads.described = Some(ads.describe(&region, &id).await),
        // A pending start's export must be looked for afresh (and a reconcile request
        // asks for a fresh look); the check before a first Start reads the shared
        // listing (a running export it misses makes Start answer
        // ConflictErrorException, which is read as before).
        ReadPlan::List if obs.pending.since.is_some() || obs.request.is_some() => {
            listed(obj, ctx, ads, &mut obs, &region, None).await
        }
        ReadPlan::List => listed(obj, ctx, ads, &mut obs, &region, Some(period)).await,
    }
    obs
}

/// Whether the stored export is starting or stopping for this very generation (a
/// spec change reads afresh).
fn in_transition(obs: &Observation) -> bool {
    let status = obs.status.export_status.as_deref();
    matches!(status, Some("START_IN_PROGRESS" | "STOP_IN_PROGRESS"))
        && obs.status.observed_generation == Some(obs.generation)
}

/// Lists the region (afresh, or from the shared listing at most `max_age` old) and
/// adds the other objects' claims on its running exports (the rules ask who claims
/// them: a pending start's export, the one that blocks Start).
async fn listed<S: ExportService>(
    obj: &ContinuousExport,
    ctx: &Context<S>,
    ads: &S,
    obs: &mut Observation,
    region: &str,
    max_age: Option<std::time::Duration>,
) {
    let listing = match max_age {
        Some(age) => ads.list_shared(region, age).await,
        None => ads.list(region).await,
    };
    if let Ok(exports) = &listing {
        let running = exports.iter().filter(|d| decide::is_running(&d.status)).map(|d| d.export_id.as_str());
        let unasked = running.filter(|id| !obs.others.claimed(id));
        let claims = ctx.claims.claims_on(obj, unasked);
        obs.others.claims.extend(claims);
    }
    obs.ads.listed = Some(listing);
}

/// The cleanup branch's observation: [`local`], the region's listing when a pending
/// start's export must be found, then Describe of the export to stop.
pub async fn for_deletion<S: ExportService>(
    obj: &ContinuousExport,
    ctx: &Context<S>,
    bind: &Binding<S>,
) -> Observation {
    let mut obs = local(obj, ctx, bind);
    let ads = bind.ads(&ctx.ads);
    let region = obs.region.clone().unwrap_or_default();
    if deletion::needs_listing(&obs) {
        listed(obj, ctx, ads, &mut obs, &region, None).await;
    }
    if let Some(id) = deletion::to_describe(&obj.spec, &obs) {
        let described = if deletion::reads_last_look(&obs) {
            ads.describe_watched(&region, &id, ctx.settings.resync_period).await
        } else {
            ads.describe(&region, &id).await
        };
        obs.ads.described = Some(described);
    }
    obs
}

/// The reads of `spec.writeInfoTo` once a pass knows the status it will write
/// (`status`) and the region it used (`region`): the ConfigMaps the watch cache holds
/// that this object controls, and the target ConfigMap by name unless the cached one
/// already says what the content says ([`info::needs_read`]), so a steady pass reads
/// nothing from the apiserver.
///
/// # Errors
/// [`Error::Kube`] when the read by name fails (a 404 is [`Found::Absent`]).
pub async fn info<S: ExportService>(
    obj: &ContinuousExport,
    ctx: &Context<S>,
    region: Option<&str>,
    status: &ContinuousExportStatus,
) -> Result<InfoObservation, Error> {
    let ns = obj.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = obj.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let target = obj.spec.write_info_to.as_ref().map(|t| t.config_map_name.clone());
    let cached = ctx.info_cache.state();
    let controlled = info::controlled_names(cached.iter().map(|cm| cm.as_ref()), &ns, &uid);
    let data = target.as_ref().and_then(|_| info::content(status, region));
    let found = match (&target, &data) {
        (Some(name), Some(data)) => {
            let cached = ctx.info_cache.get(&ObjectRef::new(name).within(&ns));
            if info::needs_read(cached.as_deref(), &uid, data) {
                let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
                Found::of(api.get_opt(name).await?.as_ref(), &uid, data)
            } else {
                Found::Ours { current: true }
            }
        }
        _ => Found::NotRead,
    };
    Ok(InfoObservation { ns, target, data, found, controlled })
}
