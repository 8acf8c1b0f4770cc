//! The metrics and health endpoint over real HTTP: `serve` on an ephemeral port,
//! requests with reqwest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ads_export_operator::ads::Operation;
use ads_export_operator::ads::aws::CallObserver;
use ads_export_operator::controller::ReconcileObserver;
use ads_export_operator::http::{Health, OPENMETRICS_CONTENT_TYPE, serve};
use ads_export_operator::metrics::Metrics;
use reqwest::StatusCode;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running endpoint; `stop` shuts it down and waits for `serve` to return.
struct Server {
    base: String,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (metrics, health) = (Metrics::new(), Arc::new(Health::default()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, metrics.clone(), health.clone(), async move {
            let _ = stopped.await;
        }));
        Self { base, metrics, health, stop, task }
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> (StatusCode, String, String) {
        let response = client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("serve returns").unwrap().unwrap();
    }
}

fn client() -> reqwest::Client {
    ads_export_operator::install_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// One sample of an OpenMetrics exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Reads an OpenMetrics exposition: metadata lines, samples `name{k="v",...} value`,
/// and the closing `# EOF`; anything else fails the test.
fn parse(text: &str) -> Vec<Sample> {
    let body = text.strip_suffix("# EOF\n").unwrap_or_else(|| panic!("no `# EOF` at the end:\n{text}"));
    let mut samples = Vec::new();
    for line in body.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let keyword = meta.split(' ').next().unwrap();
            assert!(["HELP", "TYPE", "UNIT"].contains(&keyword) && meta.split(' ').count() >= 3, "bad line {line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                (name, parse_labels(labels).unwrap_or_else(|| panic!("bad labels in {line:?}")))
            }
        };
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name {line:?}");
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    samples
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes in values.
fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => value.push(match chars.next()?.1 {
                    'n' => '\n',
                    c => c,
                }),
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        s = &rest[end + 1..];
        if !s.is_empty() {
            s = s.strip_prefix(',')?;
        }
    }
    Some(labels)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v)))
}

#[tokio::test]
async fn healthz_is_ok_and_readyz_follows_readiness() {
    let server = Server::start().await;
    let client = client();

    assert_eq!(server.get(&client, "/healthz").await, (StatusCode::OK, text_plain(), "ok".into()));
    let (status, _, body) = server.get(&client, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "not ready"));

    server.health.set_ready(true);
    let (status, _, body) = server.get(&client, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    assert_eq!(server.get(&client, "/healthz").await.0, StatusCode::OK);

    server.health.set_ready(false);
    assert_eq!(server.get(&client, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;
}

fn text_plain() -> String {
    "text/plain; charset=utf-8".into()
}

#[tokio::test]
async fn metrics_are_openmetrics_and_show_observed_calls() {
    let server = Server::start().await;
    let client = client();
    server.metrics.observe(Operation::Describe, "ok", Duration::from_millis(12));
    server.metrics.observe(Operation::Start, "HomeRegionNotSet", Duration::from_millis(250));
    server.metrics.reconciled("error", Duration::from_millis(300));
    server.metrics.export_status("uid-1", Some("ACTIVE"));
    server.metrics.set_leader(true);

    let (status, content_type, body) = server.get(&client, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    let samples = parse(&body);
    for family in [
        "ads_export_operator_reconciles",
        "ads_export_operator_reconcile_duration_seconds",
        "ads_export_operator_aws_calls",
        "ads_export_operator_aws_call_duration_seconds",
        "ads_export_operator_objects",
        "ads_export_operator_leader",
    ] {
        assert!(body.contains(&format!("# HELP {family} ")), "no HELP for {family}:\n{body}");
        assert!(body.contains(&format!("# TYPE {family} ")), "no TYPE for {family}:\n{body}");
    }

    let value = |name: &str, labels: &[(&str, &str)]| {
        find(&samples, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{body}")).value
    };
    let calls = "ads_export_operator_aws_calls_total";
    assert_eq!(value(calls, &[("operation", Operation::Start.name()), ("outcome", "HomeRegionNotSet")]), 1.0);
    assert_eq!(value(calls, &[("operation", Operation::Describe.name()), ("outcome", "ok")]), 1.0);
    assert_eq!(value(calls, &[("operation", Operation::Start.name()), ("outcome", "ok")]), 0.0);
    assert_eq!(
        value("ads_export_operator_aws_call_duration_seconds_count", &[("operation", Operation::Start.name())]),
        1.0
    );
    let sum = value("ads_export_operator_aws_call_duration_seconds_sum", &[("operation", Operation::Start.name())]);
    assert!((sum - 0.25).abs() < 1e-9, "{sum}");
    assert_eq!(
        value(
            "ads_export_operator_aws_call_duration_seconds_bucket",
            &[("operation", Operation::Start.name()), ("le", "0.25")]
        ),
        1.0
    );
    assert_eq!(value("ads_export_operator_reconciles_total", &[("result", "error")]), 1.0);
    assert_eq!(value("ads_export_operator_objects", &[("export_status", "ACTIVE")]), 1.0);
    assert_eq!(value("ads_export_operator_objects", &[("export_status", "NONE")]), 0.0);
    assert_eq!(value("ads_export_operator_leader", &[]), 1.0);

    // A later scrape sees later observations.
    server.metrics.observe(Operation::Start, "HomeRegionNotSet", Duration::from_millis(1));
    let samples = parse(&server.get(&client, "/metrics").await.2);
    assert_eq!(
        find(&samples, calls, &[("operation", Operation::Start.name()), ("outcome", "HomeRegionNotSet")])
            .unwrap()
            .value,
        2.0
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let server = Server::start().await;
    let client = client();
    assert_eq!(server.get(&client, "/").await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.get(&client, "/metrics/extra").await.0, StatusCode::NOT_FOUND);
    let post = client.post(format!("{}/readyz", server.base)).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let server = Server::start().await;
    let client = client();
    assert_eq!(server.get(&client, "/healthz").await.0, StatusCode::OK);
    let base = server.base.clone();
    server.stop().await;
    // A fresh client, so no pooled connection is reused.
    let fresh = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    assert!(fresh.get(format!("{base}/healthz")).send().await.is_err(), "still serving after shutdown");
}
