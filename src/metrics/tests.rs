//! Tests of the registry, and a strict OpenMetrics reader the HTTP tests share.

use super::*;

/// A strict reader of the OpenMetrics text format, as far as this registry uses
/// it: metric families (`# HELP`, `# TYPE`, `# UNIT`), samples with labels and a
/// value, and the final `# EOF`. Any other line is an error.
pub(crate) mod openmetrics {
    use std::collections::{BTreeMap, HashMap};

    /// One sample line.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    /// One metric family: metadata and its samples.
    #[derive(Debug, Default)]
    pub struct MetricFamily {
        pub kind: String,
        pub help: Option<String>,
        pub unit: Option<String>,
        pub samples: Vec<Sample>,
    }

    /// Parses a whole exposition into families by name.
    pub fn parse(text: &str) -> Result<HashMap<String, MetricFamily>, String> {
        let body = text.strip_suffix("# EOF\n").ok_or("the exposition does not end in `# EOF`")?;
        let mut families: HashMap<String, MetricFamily> = HashMap::new();
        let mut current: Option<String> = None;
        for (n, line) in body.lines().enumerate() {
            let err = |msg: &str| format!("line {}: {msg}: {line:?}", n + 1);
            if let Some(meta) = line.strip_prefix("# ") {
                let mut parts = meta.splitn(3, ' ');
                let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
                let (Some(keyword), Some(name)) = (keyword, name) else { return Err(err("bad metadata")) };
                if !valid_name(name) {
                    return Err(err("bad metric name"));
                }
                if current.as_deref() != Some(name) {
                    if families.contains_key(name) {
                        return Err(err("family metadata is not contiguous"));
                    }
                    current = Some(name.to_owned());
                }
                let family = families.entry(name.to_owned()).or_default();
                let rest = rest.ok_or_else(|| err("metadata without a value"))?;
                match keyword {
                    "HELP" => family.help = Some(rest.to_owned()),
                    "TYPE" => match rest {
                        "counter" | "gauge" | "histogram" | "summary" | "info" | "stateset" | "unknown" => {
                            family.kind = rest.to_owned()
                        }
                        _ => return Err(err("unknown type")),
                    },
                    "UNIT" if name.ends_with(&format!("_{rest}")) => family.unit = Some(rest.to_owned()),
                    _ => return Err(err("bad metadata")),
                }
                continue;
            }
            let name = current.as_deref().ok_or_else(|| err("sample before any family"))?;
            let family = families.get_mut(name).expect("current family exists");
            let sample = parse_sample(line).map_err(|e| err(&e))?;
            let suffixes: &[&str] = match family.kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "gauge" | "unknown" => &[""],
                "" => return Err(err("sample of a family without TYPE")),
                _ => return Err(err("type not supported by this reader")),
            };
            let suffix = sample.name.strip_prefix(name).ok_or_else(|| err("sample outside its family"))?;
            if !suffixes.contains(&suffix) {
                return Err(err("sample name does not fit the family type"));
            }
            if suffix == "_bucket" && !sample.labels.contains_key("le") {
                return Err(err("bucket without le"));
            }
            family.samples.push(sample);
        }
        Ok(families)
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn parse_sample(line: &str) -> Result<Sample, String> {
        let (name, mut rest) = line.split_at(line.find(['{', ' ']).ok_or("no value")?);
        if !valid_name(name) {
            return Err("bad metric name".into());
        }
        let mut labels = BTreeMap::new();
        if let Some(mut r) = rest.strip_prefix('{') {
            while let Some((key, after)) = r.split_once("=\"").filter(|_| !r.starts_with('}')) {
                if !valid_name(key) || key.contains(':') {
                    return Err(format!("bad label name {key:?}"));
                }
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().ok_or("unterminated label value")? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().ok_or("unterminated escape")?.1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => return Err(format!("bad escape \\{c}")),
                        },
                        (_, c) => value.push(c),
                    }
                };
                if labels.insert(key.to_owned(), value).is_some() {
                    return Err(format!("duplicate label {key:?}"));
                }
                r = &after[end + 1..];
                match r.strip_prefix(',') {
                    Some(next) if !next.starts_with('}') => r = next,
                    _ => break,
                }
            }
            rest = r.strip_prefix('}').ok_or("unterminated labels")?;
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
        };
        Ok(Sample { name: name.to_owned(), labels, value })
    }
}

use openmetrics::{MetricFamily, parse};

fn family<'a>(families: &'a HashMap<String, MetricFamily>, name: &str) -> &'a MetricFamily {
    families.get(name).unwrap_or_else(|| panic!("no family {name} in {:?}", families.keys()))
}

/// The value of the sample `name` whose labels include `labels`.
fn value(metrics: &Metrics, family_name: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = parse(&metrics.render()).expect("render parses");
    let found = family(&families, family_name)
        .samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
        .collect::<Vec<_>>();
    assert!(found.len() <= 1, "{name}{labels:?} matches {found:?}");
    found.first().copied()
}

fn objects(metrics: &Metrics, status: &str) -> f64 {
    let family = "ads_export_operator_objects";
    value(metrics, family, family, &[("export_status", status)]).unwrap_or_else(|| panic!("no series {status}"))
}

#[test]
fn render_is_openmetrics_with_all_families() {
    let metrics = Metrics::new();
    let text = metrics.render();
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind, unit) in [
        ("ads_export_operator_reconciles", "counter", None),
        ("ads_export_operator_reconcile_duration_seconds", "histogram", Some("seconds")),
        ("ads_export_operator_aws_calls", "counter", None),
        ("ads_export_operator_aws_call_duration_seconds", "histogram", Some("seconds")),
        ("ads_export_operator_objects", "gauge", None),
        ("ads_export_operator_leader", "gauge", None),
        ("ads_export_operator_aws_rate_limit_waits", "counter", None),
        ("ads_export_operator_aws_rate_limit_wait_seconds", "counter", Some("seconds")),
    ] {
        let f = family(&families, name);
        assert_eq!(f.kind, kind, "{name}");
        assert_eq!(f.unit.as_deref(), unit, "{name}");
        assert!(f.help.as_deref().is_some_and(|h| !h.is_empty() && !h.ends_with("..")), "{name} has HELP");
        assert!(!f.samples.is_empty(), "{name} has samples from the start");
        assert!(text.contains(&format!("# HELP {name} ")) && text.contains(&format!("# TYPE {name} {kind}\n")));
    }
    assert_eq!(families.len(), 8, "{:?}", families.keys());
}

#[test]
fn rate_limit_waits_are_counted() {
    let metrics = Metrics::new();
    let calls: Arc<dyn CallObserver> = metrics.clone();
    calls.rate_limited("us-west-2", Duration::from_millis(200));
    calls.rate_limited("us-west-2", Duration::from_millis(300));
    let waits = "ads_export_operator_aws_rate_limit_waits";
    assert_eq!(value(&metrics, waits, &format!("{waits}_total"), &[]), Some(2.0));
    let secs = "ads_export_operator_aws_rate_limit_wait_seconds";
    let total = value(&metrics, secs, &format!("{secs}_total"), &[]).unwrap();
    assert!((total - 0.5).abs() < 1e-9, "{total}");
}

#[test]
fn reconcile_counters_and_histogram_move() {
    let metrics = Metrics::new();
    let total = "ads_export_operator_reconciles";
    assert_eq!(value(&metrics, total, "ads_export_operator_reconciles_total", &[("result", "ok")]), Some(0.0));
    metrics.reconciled("ok", Duration::from_millis(3));
    metrics.reconciled("ok", Duration::from_millis(40));
    metrics.reconciled("error", Duration::from_secs(2));
    assert_eq!(value(&metrics, total, "ads_export_operator_reconciles_total", &[("result", "ok")]), Some(2.0));
    assert_eq!(value(&metrics, total, "ads_export_operator_reconciles_total", &[("result", "error")]), Some(1.0));

    let h = "ads_export_operator_reconcile_duration_seconds";
    assert_eq!(value(&metrics, h, &format!("{h}_count"), &[]), Some(3.0));
    let sum = value(&metrics, h, &format!("{h}_sum"), &[]).unwrap();
    assert!((sum - 2.043).abs() < 1e-9, "{sum}");
    // Buckets are cumulative: 3 ms is under 5 ms, 40 ms under 50 ms, 2 s under 2.5 s.
    let bucket = |le: &str| value(&metrics, h, &format!("{h}_bucket"), &[("le", le)]).unwrap();
    assert_eq!(bucket("0.001"), 0.0);
    assert_eq!(bucket("0.005"), 1.0);
    assert_eq!(bucket("0.05"), 2.0);
    assert_eq!(bucket("1.0"), 2.0);
    assert_eq!(bucket("2.5"), 3.0);
    assert_eq!(bucket("60.0"), 3.0);
    assert_eq!(bucket("+Inf"), 3.0);
}

#[test]
fn aws_calls_count_by_operation_and_outcome() {
    let metrics = Metrics::new();
    let total = "ads_export_operator_aws_calls";
    let calls = |operation: &str, outcome: &str| {
        value(&metrics, total, "ads_export_operator_aws_calls_total", &[("operation", operation), ("outcome", outcome)])
    };
    assert_eq!(calls(Operation::Start.name(), "ok"), Some(0.0));
    assert_eq!(calls(Operation::Start.name(), "HomeRegionNotSet"), None);

    metrics.observe(Operation::Start, "ok", Duration::from_millis(120));
    metrics.observe(Operation::Start, "HomeRegionNotSet", Duration::from_millis(80));
    metrics.observe(Operation::Start, "HomeRegionNotSet", Duration::from_millis(90));
    metrics.observe(Operation::Describe, "ok", Duration::from_millis(10));
    assert_eq!(calls(Operation::Start.name(), "ok"), Some(1.0));
    assert_eq!(calls(Operation::Start.name(), "HomeRegionNotSet"), Some(2.0));
    assert_eq!(calls(Operation::Describe.name(), "ok"), Some(1.0));
    assert_eq!(calls(Operation::Stop.name(), "ok"), Some(0.0));

    let h = "ads_export_operator_aws_call_duration_seconds";
    let count = |operation: &str| value(&metrics, h, &format!("{h}_count"), &[("operation", operation)]);
    assert_eq!(count(Operation::Start.name()), Some(3.0));
    assert_eq!(count(Operation::Describe.name()), Some(1.0));
    assert_eq!(count(Operation::Stop.name()), Some(0.0));
}

#[test]
fn get_home_region_calls_count_in_the_aws_calls_family() {
    let metrics = Metrics::new();
    let total = "ads_export_operator_aws_calls";
    let op = crate::ads::home_region::OPERATION;
    let calls =
        |outcome: &str| value(&metrics, total, &format!("{total}_total"), &[("operation", op), ("outcome", outcome)]);
    assert_eq!(calls("ok"), Some(0.0), "the ok series exists from the start");
    let observer: Arc<dyn CallObserver> = metrics.clone();
    observer.observe_home_region("ok", Duration::from_millis(30));
    observer.observe_home_region("AuthorizationError", Duration::from_millis(20));
    assert_eq!((calls("ok"), calls("AuthorizationError")), (Some(1.0), Some(1.0)));
    let h = "ads_export_operator_aws_call_duration_seconds";
    assert_eq!(value(&metrics, h, &format!("{h}_count"), &[("operation", op)]), Some(2.0));
    let describe = &[("operation", Operation::Describe.name()), ("outcome", "ok")];
    assert_eq!(value(&metrics, total, &format!("{total}_total"), describe), Some(0.0), "no ADS operation counted");
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new();
    metrics.observe(Operation::Stop, "odd \"reason\"\\\n", Duration::ZERO);
    let got = value(
        &metrics,
        "ads_export_operator_aws_calls",
        "ads_export_operator_aws_calls_total",
        &[("operation", Operation::Stop.name()), ("outcome", "odd \"reason\"\\\n")],
    );
    assert_eq!(got, Some(1.0));
}

#[test]
fn object_gauges_follow_status_changes_and_deletion() {
    let metrics = Metrics::new();
    for s in KNOWN_EXPORT_STATUSES {
        assert_eq!(objects(&metrics, s), 0.0, "{s}");
    }

    metrics.export_status("a", None);
    metrics.export_status("b", None);
    assert_eq!(objects(&metrics, "NONE"), 2.0);

    metrics.export_status("a", Some(ExportStatus::StartInProgress.as_str()));
    metrics.export_status("b", Some(ExportStatus::StartInProgress.as_str()));
    assert_eq!(objects(&metrics, "NONE"), 0.0, "dropped to 0, not left at 2");
    assert_eq!(objects(&metrics, ExportStatus::StartInProgress.as_str()), 2.0);

    metrics.export_status("a", Some(ExportStatus::Active.as_str()));
    metrics.export_status("a", Some(ExportStatus::Active.as_str())); // unchanged: no double count
    assert_eq!(objects(&metrics, ExportStatus::StartInProgress.as_str()), 1.0);
    assert_eq!(objects(&metrics, ExportStatus::Active.as_str()), 1.0);

    // A status outside the documented set gets its own series, and a 0 later.
    metrics.export_status("b", Some("SOMETHING_NEW"));
    assert_eq!(objects(&metrics, "SOMETHING_NEW"), 1.0);
    assert_eq!(objects(&metrics, ExportStatus::StartInProgress.as_str()), 0.0);

    metrics.deleted("b");
    assert_eq!(objects(&metrics, "SOMETHING_NEW"), 0.0);
    metrics.deleted("a");
    assert_eq!(objects(&metrics, ExportStatus::Active.as_str()), 0.0);
    metrics.deleted("never-seen");
    assert_eq!(objects(&metrics, "NONE"), 0.0);
    assert!(metrics.statuses.lock().unwrap().by_uid.is_empty());
}

#[test]
fn leader_flips_and_standby_forgets_objects() {
    let metrics = Metrics::new();
    let leader = || value(&metrics, "ads_export_operator_leader", "ads_export_operator_leader", &[]);
    assert_eq!(leader(), Some(0.0));
    metrics.set_leader(true);
    assert_eq!(leader(), Some(1.0));
    metrics.export_status("a", Some(ExportStatus::Active.as_str()));
    assert_eq!(objects(&metrics, ExportStatus::Active.as_str()), 1.0);

    metrics.set_leader(false);
    assert_eq!(leader(), Some(0.0));
    assert_eq!(objects(&metrics, ExportStatus::Active.as_str()), 0.0);
    metrics.set_leader(true);
    assert_eq!(leader(), Some(1.0));
}

#[test]
fn observers_are_usable_as_trait_objects_across_threads() {
    let metrics = Metrics::new();
    let calls: Arc<dyn CallObserver> = metrics.clone();
    let reconciles: Arc<dyn ReconcileObserver> = metrics.clone();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (calls, reconciles) = (calls.clone(), reconciles.clone());
            s.spawn(move || {
                for i in 0..50 {
                    calls.observe(Operation::Describe, "ok", Duration::from_millis(1));
                    reconciles.reconciled("ok", Duration::from_millis(1));
                    reconciles.export_status(&format!("{t}-{i}"), Some(ExportStatus::Active.as_str()));
                }
            });
        }
    });
    let total = "ads_export_operator_reconciles";
    assert_eq!(value(&metrics, total, "ads_export_operator_reconciles_total", &[("result", "ok")]), Some(200.0));
    assert_eq!(objects(&metrics, ExportStatus::Active.as_str()), 200.0);
}

#[test]
fn the_reader_rejects_malformed_text() {
    for bad in [
        "",
        "# TYPE x gauge\nx 1\n",
        "# TYPE x gauge\nx{a=\"1\" 1\n# EOF\n",
        "# TYPE x gauge\nx one\n# EOF\n",
        "# TYPE x counter\nx 1\n# EOF\n",
        "# TYPE x gauge\ny 1\n# EOF\n",
        "garbage\n# EOF\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} accepted");
    }
    let ok = parse("# TYPE x counter\nx_total{a=\"q\\\"\",b=\"\"} 1.5\n# EOF\n").unwrap();
    let s = &ok["x"].samples[0];
    assert_eq!((s.labels["a"].as_str(), s.labels["b"].as_str(), s.value), ("q\"", "", 1.5));
}
