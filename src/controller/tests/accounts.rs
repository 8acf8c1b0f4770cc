//! `spec.accountRef`: which account a pass uses, the refusals (no AWS call), the
//! registry's connections, and a deletion whose account no longer allows the namespace.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;

use super::super::accounts::{Accounts, Cache, Connection, Connector};
use super::*;
use crate::api::{AccountRef, ExportAccount, ExportAccountSpec};

const ACCOUNT: &str = "team-a-prod";
const ROLE: &str = "arn:aws:iam::111111111111:role/ads";

/// Hands out the account's fake ADS and counts connections.
struct FakeConnector {
    ads: FakeAds,
    connects: AtomicUsize,
}

impl Connector<FakeAds> for FakeConnector {
    fn connect<'a>(&'a self, _name: &'a str, _spec: &'a ExportAccountSpec) -> BoxFuture<'a, Connection<FakeAds>> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Connection { ads: self.ads.clone(), home_region: None } })
    }
}

fn account(allowed: &[&str]) -> ExportAccount {
    let spec = ExportAccountSpec {
        role_arn: ROLE.into(),
        allowed_namespaces: allowed.iter().map(|s| (*s).to_owned()).collect(),
        ..ExportAccountSpec::default()
    };
    ExportAccount::new(ACCOUNT, spec)
}

/// An `Accounts` whose caches hold `accounts` (synced), connected by `connector`.
fn accounts(connector: Arc<FakeConnector>, accounts: Vec<ExportAccount>) -> Arc<Accounts<FakeAds>> {
    let (store, mut writer) = reflector::store();
    for a in accounts {
        writer.apply_watcher_event(&Event::Apply(a));
    }
    let (namespaces, _) = reflector::store();
    let accounts = Accounts::new(store, namespaces, connector);
    accounts.mark_synced(Cache::Accounts);
    accounts.mark_synced(Cache::Namespaces);
    Arc::new(accounts)
}

fn referencing() -> ContinuousExport {
    let mut o = object();
    o.spec.account_ref = Some(AccountRef { name: ACCOUNT.into() });
    o
}

fn setup(
    client: Client,
    own: &FakeAds,
    theirs: &FakeAds,
    present: Vec<ExportAccount>,
) -> (Arc<Context<FakeAds>>, Arc<FakeConnector>) {
    let connector = Arc::new(FakeConnector { ads: theirs.clone(), connects: AtomicUsize::new(0) });
    let mut ctx = Context::new(client, own.clone(), settings());
    ctx.accounts = Some(accounts(connector.clone(), present));
    (Arc::new(ctx), connector)
}

#[tokio::test]
async fn a_missing_account_stalls_without_an_aws_call() {
    let obj = referencing();
    let (own, theirs) = (FakeAds::new(), FakeAds::new());
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let (ctx, connector) = setup(client, &own, &theirs, vec![]);
    let action = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(action, Action::requeue(RESYNC), "looked at again every resync (and when it is created)");
    assert_eq!((own.take_calls(), theirs.take_calls()), (vec![], vec![]), "no AWS call");
    assert_eq!(connector.connects.load(Ordering::SeqCst), 0);
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "True", "AccountNotFound");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("ExportAccount team-a-prod") && msg.contains("does not exist"), "{msg}");
}

#[tokio::test]
async fn a_namespace_the_account_does_not_allow_stalls_without_an_aws_call() {
    let obj = referencing();
    let (own, theirs) = (FakeAds::new(), FakeAds::new());
    let (client, server) = apiserver(vec![Expect::apply_status(&obj)]);
    let (ctx, connector) = setup(client, &own, &theirs, vec![account(&["team-b"])]);
    run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!((own.take_calls(), theirs.take_calls()), (vec![], vec![]), "no AWS call");
    assert_eq!(connector.connects.load(Ordering::SeqCst), 0, "not even connected");
    let status = seen.requests[0].applied_status();
    assert_cond(&status, CONDITION_STALLED, "True", "AccountNotAllowed");
    let msg = &cond(&status, CONDITION_SYNCED).message;
    assert!(msg.contains("ExportAccount team-a-prod does not allow namespace team-a"), "{msg}");
}

#[tokio::test]
async fn an_allowed_object_calls_with_its_account_not_the_operators_identity() {
    let obj = referencing();
    let (own, theirs) = (FakeAds::new(), FakeAds::new());
    theirs.on_list(Ok(vec![])).on_start(Ok(started("e-1"))).on_describe(Ok(export("e-1", ads::ACTIVE)));
    let (client, server) = apiserver(starting(&obj));
    let (ctx, connector) = setup(client, &own, &theirs, vec![account(&["team-a"])]);
    run(&obj, &ctx).await.expect("reconcile");
    server.finish().await;
    assert_eq!(theirs.take_calls(), [Call::List, Call::Start, describe("e-1")]);
    assert_eq!(own.take_calls(), [], "the operator's own identity is not used");
    assert_eq!(connector.connects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_registry_reconnects_only_when_the_identity_changes() {
    let connector = Arc::new(FakeConnector { ads: FakeAds::new(), connects: AtomicUsize::new(0) });
    let accounts = accounts(connector.clone(), vec![]);
    let mut spec = account(&["a"]).spec;
    accounts.connection(ACCOUNT, &spec).await;
    spec.region = Some("eu-west-1".into());
    spec.allowed_namespaces.push("b".into());
    accounts.connection(ACCOUNT, &spec).await;
    assert_eq!(connector.connects.load(Ordering::SeqCst), 1, "region and namespaces do not change credentials");
    spec.external_id = Some("x-1".into());
    accounts.connection(ACCOUNT, &spec).await;
    spec.session_name = Some("s-2".into());
    accounts.connection(ACCOUNT, &spec).await;
    spec.role_arn = "arn:aws:iam::222222222222:role/ads".into();
    accounts.connection(ACCOUNT, &spec).await;
    assert_eq!(connector.connects.load(Ordering::SeqCst), 4, "external ID, session name, role: each a new connection");
}

#[tokio::test]
async fn deleting_in_a_namespace_no_longer_allowed_releases_without_an_aws_call_and_warns() {
    let obj = deleting(
        with_status(
            referencing(),
            ContinuousExportStatus { region: Some(REGION.into()), ..managed("e-1", ads::ACTIVE) },
        ),
        DeletionPolicy::Delete,
    );
    let (own, theirs) = (FakeAds::new(), FakeAds::new());
    let (client, server) = apiserver(vec![Expect::json_patch(&obj)]);
    let (ctx, _) = setup(client, &own, &theirs, vec![account(&["team-b"])]);
    let action = run(&obj, &ctx).await.expect("reconcile");
    let seen = server.finish().await;
    assert_eq!(action, Action::await_change());
    assert_eq!((own.take_calls(), theirs.take_calls()), (vec![], vec![]), "no AWS call");
    assert!(seen.requests[0].body.to_string().contains("remove"), "finalizer removed: {}", seen.requests[0].body);
    let warned = seen.events.iter().any(|e| {
        e.body["type"] == "Warning"
            && e.body["reason"] == "AccountNotAllowed"
            && e.body["note"].as_str().is_some_and(|n| n.contains("export e-1") && n.contains("left running"))
    });
    assert!(warned, "{:?}", seen.event_reasons());
}

#[tokio::test]
async fn before_the_account_caches_are_synced_nothing_is_decided() {
    let obj = deleting(with_status(referencing(), managed("e-1", ads::ACTIVE)), DeletionPolicy::Delete);
    let (own, theirs) = (FakeAds::new(), FakeAds::new());
    let (client, server) = apiserver(vec![]);
    let connector = Arc::new(FakeConnector { ads: theirs.clone(), connects: AtomicUsize::new(0) });
    let (store, _) = reflector::store();
    let (namespaces, _) = reflector::store();
    let mut ctx = Context::new(client, own.clone(), settings());
    ctx.accounts = Some(Arc::new(Accounts::new(store, namespaces, connector)));
    let result = run(&obj, &Arc::new(ctx)).await;
    server.finish().await;
    assert!(result.is_err(), "a wait, the finalizer kept");
    assert_eq!((own.take_calls(), theirs.take_calls()), (vec![], vec![]));
}
