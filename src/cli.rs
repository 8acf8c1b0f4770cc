//! Command-line interface of the `ads-export-operator` binary (clap); the README's
//! "Running the operator" lists the flags. Every `run` flag has an environment-variable
//! equivalent.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration;

/// `ads-export-operator [run] [FLAGS]` or `ads-export-operator crd`.
#[derive(Debug, Parser)]
#[command(
    name = "ads-export-operator",
    version,
    about = "Kubernetes operator for AWS Application Discovery Service continuous exports"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: `run`).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `run` when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

impl Cli {
    /// The subcommand, `run` with the top-level flags when none was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run(Box::new(self.run)))
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller (the default).
    Run(Box<RunArgs>),
    /// Print the CRDs as YAML (what `crds/` holds): all of them, or the one named.
    Crd {
        /// `continuousexports.adsexport.io` or `exportaccounts.adsexport.io` (default:
        /// both, as one multi-document stream).
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(crate::api::CRD_NAMES))]
        name: Option<String>,
    },
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

fn parse_endpoint(s: &str) -> Result<String, String> {
    let s = s.trim();
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() <= "https://".len() {
        return Err(format!("{s:?} is not an http:// or https:// URL, e.g. http://127.0.0.1:4566"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// The pattern of an AWS region name, the same as the CRD's `spec.region` (see
/// [`crate::api::ContinuousExportSpec::region`]) and the chart's `awsRegion`: a 2 to 4
/// letter lower-case prefix, one or more lower-case words, a number (`us-west-2`,
/// `us-gov-west-1`, `cn-north-1`, `eusc-de-east-1`).
pub const REGION_PATTERN: &str = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$";

/// Whether `s` matches [`REGION_PATTERN`].
pub fn is_region_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let letters = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    match parts.as_slice() {
        [prefix, words @ .., number] if !words.is_empty() => {
            (2..=4).contains(&prefix.len())
                && letters(prefix)
                && words.iter().all(letters)
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Whether `s` is a Kubernetes DNS-1123 label, as namespace names must be: 1 to 63
/// lower-case letters, digits and `-`, starting and ending with a letter or digit
/// (`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).
pub fn is_dns1123_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 63 && alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// Shortest `--resync-period` accepted: every steady object makes one
/// DescribeContinuousExports call per period, so a period of milliseconds would call
/// ADS hundreds of times a second. The controller itself accepts any period
/// ([`crate::controller::Settings::resync_period`]); the bound is the binary's.
pub const MIN_RESYNC_PERIOD: Duration = Duration::from_secs(10);

/// Shortest `--backoff-base` accepted: the first retry after a failure waits this
/// long, and polling a transition starts from it too.
pub const MIN_BACKOFF_BASE: Duration = Duration::from_millis(100);

/// Parses `--account-selector`: a Kubernetes label selector in the apiserver's string
/// syntax (apimachinery `labels.Parse`), comma-separated requirements, each `key`,
/// `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)` or
/// `key notin (v1,v2)`. Keys are an optional DNS-subdomain prefix and `/`, then a name;
/// names and values are at most 63 letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit (values may be empty).
///
/// # Errors
/// Which requirement cannot be read and the expected shape; clap names the flag.
pub fn parse_label_selector(s: &str) -> Result<String, String> {
    let s = s.trim();
    for requirement in split_requirements(s) {
        check_requirement(requirement.trim()).map_err(|e| {
            format!("{s:?} is not a label selector: {e} (expected e.g. team=a, env in (prod,test), !legacy)")
        })?;
    }
    Ok(s.to_owned())
}

/// The selector's requirements: split at the commas outside `( )`.
fn split_requirements(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One requirement of a label selector (see [`parse_label_selector`]).
fn check_requirement(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("an empty requirement".into());
    }
    if let Some(key) = r.strip_prefix('!') {
        return check_key(key.trim());
    }
    for op in ["==", "!=", "="] {
        if let Some((key, value)) = r.split_once(op) {
            check_key(key.trim())?;
            return check_value(value.trim());
        }
    }
    for op in [" notin ", " in "] {
        if let Some((key, values)) = r.split_once(op) {
            check_key(key.trim())?;
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("{values:?} is not a parenthesized list of values"))?;
            return inner.split(',').try_for_each(|v| check_value(v.trim()));
        }
    }
    check_key(r)
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name.
fn check_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let label_ok = |l: &str| is_dns1123_label(l);
            if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
                return Err(format!("{key:?} has a prefix that is not a DNS subdomain"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() || !is_label_value(name) {
        return Err(format!("{key:?} is not a label key"));
    }
    Ok(())
}

/// A label value: empty, or a name (see [`parse_label_selector`]).
fn check_value(value: &str) -> Result<(), String> {
    if is_label_value(value) { Ok(()) } else { Err(format!("{value:?} is not a label value")) }
}

/// Empty, or 1 to 63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit.
fn is_label_value(v: &str) -> bool {
    let bytes = v.as_bytes();
    let alnum = |b: &u8| b.is_ascii_alphanumeric();
    match (bytes.first(), bytes.last()) {
        (None, _) => true,
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Parses `--aws-max-requests-per-second`: a positive, finite number (e.g. `5`, `0.5`).
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive number of requests per second (e.g. 5 or 0.5)")),
    }
}

/// Flags of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Default AWS region for objects without spec.region (must be the Migration Hub
    /// home region), e.g. us-west-2; checked against the CRD's spec.region pattern.
    /// Falls back on the AWS SDK chain (profile, IMDS), then on the account's Migration
    /// Hub home region (GetHomeRegion).
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,

    /// Region to call Migration Hub Config (GetHomeRegion, IAM mgh:GetHomeRegion) in,
    /// to find the account's home region: any region AWS serves that API in.
    #[arg(long, env = "MIGRATION_HUB_CONFIG_REGION", default_value = crate::ads::home_region::DEFAULT_CONFIG_REGION)]
    pub migration_hub_config_region: String,

    /// Send ADS calls to this endpoint instead of AWS (the ADS emulator, a VPC endpoint).
    /// The flag moves ADS and the home-region lookups (Migration Hub Config, STS
    /// GetCallerIdentity), not the credential providers' STS; the AWS_ENDPOINT_URL
    /// variable is the SDK's global one and also moves that STS (IRSA) unless
    /// AWS_ENDPOINT_URL_STS is set.
    #[arg(long, env = "AWS_ENDPOINT_URL", value_parser = parse_endpoint)]
    pub aws_endpoint_url: Option<String>,

    /// Watch only this namespace, a namespace name such as ads-system (default: all
    /// namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Use and reconcile only the ExportAccounts matching this label selector, e.g.
    /// team=a (default: all). For several operators in one cluster.
    #[arg(long, env = "ACCOUNT_SELECTOR", value_parser = parse_label_selector)]
    pub account_selector: Option<String>,

    /// Run the ExportAccount reconciler (status, the adsexport.io/account-in-use
    /// finalizer): true or false. Default: true when watching all namespaces (it must
    /// see every ContinuousExport that may reference an account), else false.
    #[arg(long, env = "RECONCILE_ACCOUNTS")]
    pub reconcile_accounts: Option<bool>,

    /// Steady-state resync period: how often an unchanged object is compared with ADS
    /// (at least 10s).
    #[arg(long, env = "RESYNC_PERIOD", default_value = "10m", value_parser = duration::parse_positive)]
    pub resync_period: Duration,

    /// Most ADS requests per second per AWS region (a token bucket with a burst of
    /// twice as many, half of it kept from background listings for Start, Stop and
    /// their reads; halved while ADS answers ThrottlingException, restored on success).
    /// AWS does not publish ADS's limit; 5 leaves room for the console and CLI in the
    /// same account and lists 10,000 exports in 20 s.
    #[arg(long, env = "AWS_MAX_REQUESTS_PER_SECOND", default_value_t = crate::ads::limit::DEFAULT_MAX_REQUESTS_PER_SECOND,
          value_parser = parse_rate)]
    pub aws_max_requests_per_second: f64,

    /// Objects reconciled at once.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_concurrent_reconciles: u16,

    /// First retry delay after a recoverable AWS error (doubles per retry, with jitter;
    /// at least 100ms).
    #[arg(long, env = "BACKOFF_BASE", default_value = "5s", value_parser = duration::parse_positive)]
    pub backoff_base: Duration,

    /// Longest retry delay (at least --backoff-base).
    #[arg(long, env = "BACKOFF_MAX", default_value = "5m", value_parser = duration::parse_positive)]
    pub backoff_max: Duration,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of the HTTP server for `/metrics` (Prometheus), `/healthz` and `/readyz`.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,

    /// Run only while holding a coordination.k8s.io Lease, so that several replicas
    /// can run with one active (`LEADER_ELECT=true|false`).
    #[arg(long, env = "LEADER_ELECT")]
    pub leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "ads-export-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's namespace from the service account,
    /// else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a lease is valid without renewal (whole seconds, at least 2s); a
    /// standby takes over at most this long after the leader dies.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = duration::parse_positive)]
    pub lease_duration: Duration,

    /// How often the leader renews the lease (whole seconds, shorter than --lease-duration).
    #[arg(long, env = "LEASE_RENEW_INTERVAL", default_value = "5s", value_parser = duration::parse_positive)]
    pub lease_renew_interval: Duration,

    /// This replica's name in events and the lease (set from the downward API).
    #[arg(long, env = "POD_NAME", hide = true)]
    pub pod_name: Option<String>,
}

impl RunArgs {
    /// Checks flag values clap cannot check alone, and relations between flags:
    /// `--aws-region` and `--migration-hub-config-region` must be region names ([`is_region_name`]), `--namespace` a
    /// namespace name ([`is_dns1123_label`]), `--resync-period` at least
    /// [`MIN_RESYNC_PERIOD`] (10 s), `--backoff-base` at least [`MIN_BACKOFF_BASE`]
    /// (100 ms), `--backoff-max` at least `--backoff-base`, and the lease timing sound
    /// (with or without `--leader-elect`).
    ///
    /// # Errors
    /// A one-line message naming the flag, the value and the fix, e.g.
    /// `--aws-region: "us west" is not an AWS region name such as us-west-2` or
    /// `--resync-period: 1ms is shorter than the minimum, 10s`. The binary prints it and
    /// exits with status 2, as clap does for its own errors.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(region) = self.aws_region.as_deref()
            && !is_region_name(region)
        {
            return Err(format!("--aws-region: {region:?} is not an AWS region name such as us-west-2"));
        }
        if !is_region_name(&self.migration_hub_config_region) {
            return Err(format!(
                "--migration-hub-config-region: {:?} is not an AWS region name such as us-west-2",
                self.migration_hub_config_region
            ));
        }
        for (flag, value, min) in [
            ("--resync-period", self.resync_period, MIN_RESYNC_PERIOD),
            ("--backoff-base", self.backoff_base, MIN_BACKOFF_BASE),
        ] {
            if value < min {
                return Err(format!(
                    "{flag}: {} is shorter than the minimum, {}",
                    duration::format(value),
                    duration::format(min)
                ));
            }
        }
        if self.backoff_max < self.backoff_base {
            return Err(format!(
                "--backoff-max: {} is shorter than the minimum, --backoff-base ({})",
                duration::format(self.backoff_max),
                duration::format(self.backoff_base)
            ));
        }
        match self.namespace.as_deref() {
            Some("") => return Err("--namespace is empty: omit it to watch all namespaces".into()),
            Some(ns) if !is_dns1123_label(ns) => {
                return Err(format!(
                    "--namespace: {ns:?} is not a namespace name (1 to 63 lower-case letters, digits and '-', \
                     starting and ending with a letter or digit), e.g. ads-system"
                ));
            }
            _ => {}
        }
        // Checked without --leader-elect too: a bad value is a mistake either way, and
        // the chart passes the lease flags whether or not leader election is on.
        self.lease_settings().validate()?;
        Ok(())
    }

    /// The Lease settings these flags describe. The identity is the pod name (or
    /// host name) plus a random suffix, so a restarted pod never reuses a stale holder.
    pub fn lease_settings(&self) -> crate::leader::LeaseSettings {
        let namespace = self.lease_namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|s| s.trim().to_owned())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into())
        });
        let base = self
            .pod_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "ads-export-operator".into());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        crate::leader::LeaseSettings {
            name: self.lease_name.clone(),
            namespace,
            identity: format!("{base}-{}", &suffix[..8]),
            duration: self.lease_duration,
            renew_interval: self.lease_renew_interval,
        }
    }

    /// The controller settings these flags describe.
    pub fn settings(&self) -> crate::controller::Settings {
        crate::controller::Settings {
            default_region: self.aws_region.clone(),
            resync_period: self.resync_period,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            max_concurrent_reconciles: self.max_concurrent_reconciles,
            namespace: self.namespace.clone(),
            instance: self.pod_name.clone(),
            account_selector: self.account_selector.clone(),
            reconcile_accounts: self.reconcile_accounts.unwrap_or(self.namespace.is_none()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("ads-export-operator").chain(args.iter().copied())).map(Cli::into_command)
    }

    #[test]
    fn run_is_the_default_with_defaults() {
        let Command::Run(a) = parse(&[]).unwrap() else { panic!("not run") };
        assert_eq!(a.resync_period, Duration::from_secs(600));
        assert_eq!(a.backoff_base, Duration::from_secs(5));
        assert_eq!(a.backoff_max, Duration::from_secs(300));
        assert_eq!(a.max_concurrent_reconciles, 4);
        assert_eq!(a.aws_max_requests_per_second, 5.0);
        assert_eq!(a.log_format, LogFormat::Text);
        let Command::Run(a) = parse(&["run", "--backoff-base", "250ms", "--log-format", "json"]).unwrap() else {
            panic!("not run")
        };
        assert_eq!(a.backoff_base, Duration::from_millis(250));
        assert_eq!(a.log_format, LogFormat::Json);
        assert!(matches!(parse(&["crd"]).unwrap(), Command::Crd { name: None }));
        assert!(
            matches!(parse(&["crd", "exportaccounts.adsexport.io"]).unwrap(), Command::Crd { name: Some(n) } if n == "exportaccounts.adsexport.io")
        );
        assert!(parse(&["crd", "widgets.example.com"]).is_err());
        let Command::Run(a) = parse(&["--leader-elect", "--metrics-addr", "127.0.0.1:9090"]).unwrap() else {
            panic!("not run")
        };
        assert!(a.leader_elect);
        assert_eq!(a.metrics_addr.port(), 9090);
        assert_eq!(a.lease_duration, Duration::from_secs(15));
        assert!(a.validate().is_ok());
    }

    #[test]
    fn bad_flags_are_named() {
        let e = parse(&["--resync-period", "ten"]).unwrap_err().to_string();
        assert!(e.contains("--resync-period") && e.contains("e.g. 500ms"), "{e}");
        let e = parse(&["--aws-endpoint-url", "localhost:1"]).unwrap_err().to_string();
        assert!(e.contains("--aws-endpoint-url") && e.contains("http://"), "{e}");
        let e = parse(&["--max-concurrent-reconciles", "0"]).unwrap_err().to_string();
        assert!(e.contains("--max-concurrent-reconciles"), "{e}");
        for bad in ["0", "-1", "inf", "five"] {
            let e = parse(&[&format!("--aws-max-requests-per-second={bad}")]).unwrap_err().to_string();
            assert!(e.contains("--aws-max-requests-per-second") && e.contains("positive number"), "{e}");
        }
        assert!(parse(&["--log-format", "xml"]).is_err());
        assert!(parse(&["--backoff-base", "0s"]).is_err());
        let Command::Run(a) = parse(&["--backoff-base", "10m", "--backoff-max", "1m"]).unwrap() else { panic!() };
        assert!(a.validate().unwrap_err().contains("--backoff-max"));
        let Command::Run(a) =
            parse(&["--leader-elect", "--lease-duration", "5s", "--lease-renew-interval", "5s"]).unwrap()
        else {
            panic!()
        };
        assert!(a.validate().unwrap_err().contains("--lease-renew-interval"));
        for args in [&["--lease-duration", "1500ms"][..], &["--lease-duration", "5s", "--lease-renew-interval", "5s"]] {
            let Command::Run(a) = parse(args).unwrap() else { panic!() };
            assert!(a.validate().unwrap_err().contains("--lease-"), "{args:?} accepted without --leader-elect");
        }
        assert!(parse(&["--metrics-addr", "nowhere"]).unwrap_err().to_string().contains("--metrics-addr"));
    }

    /// `validate`'s error for `run {flag}={value}` (as the chart passes flags, so a
    /// value may start with `-`), or `None` when it is accepted.
    fn invalid(flag: &str, value: &str) -> Option<String> {
        let Command::Run(a) = parse(&["run", &format!("{flag}={value}")]).unwrap() else { panic!("not run") };
        a.validate().err()
    }

    #[test]
    fn timing_flags_have_lower_bounds() {
        // at the bounds, and the values tests, the bench and the chart's defaults use
        for (flag, ok) in [
            ("--resync-period", "10s"),
            ("--resync-period", "15s"),
            ("--resync-period", "10m"),
            ("--backoff-base", "100ms"),
            ("--backoff-base", "500ms"),
            ("--backoff-base", "5s"),
        ] {
            assert_eq!(invalid(flag, ok), None, "{flag}={ok}");
        }
        for (flag, bad, message) in [
            ("--resync-period", "1ms", "--resync-period: 1ms is shorter than the minimum, 10s"),
            ("--resync-period", "9s", "--resync-period: 9s is shorter than the minimum, 10s"),
            ("--resync-period", "9999ms", "--resync-period: 9s 999ms is shorter than the minimum, 10s"),
            ("--backoff-base", "99ms", "--backoff-base: 99ms is shorter than the minimum, 100ms"),
            ("--backoff-base", "1ms", "--backoff-base: 1ms is shorter than the minimum, 100ms"),
        ] {
            assert_eq!(invalid(flag, bad).as_deref(), Some(message), "{flag}={bad}");
        }
        let Command::Run(a) = parse(&["--backoff-base", "10m", "--backoff-max", "1m"]).unwrap() else { panic!() };
        assert_eq!(a.validate().unwrap_err(), "--backoff-max: 1m is shorter than the minimum, --backoff-base (10m)");
        let Command::Run(a) = parse(&["--backoff-base", "100ms", "--backoff-max", "100ms"]).unwrap() else { panic!() };
        assert_eq!(a.validate(), Ok(()), "--backoff-max may equal --backoff-base");
    }

    #[test]
    fn aws_region_must_be_a_region_name() {
        for ok in ["us-west-2", "us-gov-west-1", "cn-north-1", "eusc-de-east-1", "ap-southeast-10"] {
            assert_eq!(invalid("--aws-region", ok), None, "{ok}");
        }
        assert_eq!(
            invalid("--aws-region", "us west").as_deref(),
            Some(r#"--aws-region: "us west" is not an AWS region name such as us-west-2"#)
        );
        for bad in ["", " us-west-2", "us-west-2 ", "US-WEST-2", "uswest2", "us-2", "u-west-2", "europe-west-1"] {
            let e = invalid("--aws-region", bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(e.starts_with("--aws-region: ") && e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("us-west-2") && !e.contains('\n'), "{e}");
        }
        for bad in ["us-west-", "us--west-2", "us-west-2a", "us-west-2-", "-us-west-2", "us-wést-2", "us_west-2"] {
            assert!(invalid("--aws-region", bad).is_some(), "{bad:?} accepted");
        }
        // No flag: the SDK chain decides.
        let Command::Run(a) = parse(&["run"]).unwrap() else { panic!("not run") };
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn region_check_implements_the_crd_pattern() {
        let crd = crate::api::crd();
        let schema = crd.spec.versions[0].schema.as_ref().unwrap();
        let spec = &schema.open_api_v3_schema.as_ref().unwrap().properties.as_ref().unwrap()["spec"];
        let pattern = spec.properties.as_ref().unwrap()["region"].pattern.clone();
        assert_eq!(pattern.as_deref(), Some(REGION_PATTERN), "update is_region_name along with spec.region's pattern");
    }

    #[test]
    fn account_selector_must_be_a_label_selector() {
        for ok in [
            "team=a",
            "team==a",
            "team!=a",
            "team",
            "!legacy",
            "env in (prod, test),team=a",
            "example.com/team notin (a,b)",
            "tier=",
            "a.b_c-d=X.y",
        ] {
            assert_eq!(parse_label_selector(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in ["===", "", "team=a,", "=a", "team=a b", "env in prod", "-team=a", "bad_prefix/x=y", "x/=y"] {
            let e = parse_label_selector(bad).expect_err(bad);
            assert!(e.contains("is not a label selector") && e.contains("team=a"), "{e}");
        }
        let e = parse(&["run", "--account-selector", "==="]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--account-selector") && e.to_string().contains("not a label selector"), "{e}");
    }

    #[test]
    fn namespace_must_be_a_dns1123_label() {
        for ok in ["default", "ads-system", "a", "0", "team-1-exports", &"a".repeat(63)] {
            assert_eq!(invalid("--namespace", ok), None, "{ok}");
        }
        let e = invalid("--namespace", "BAD_NS").unwrap();
        assert!(e.starts_with(r#"--namespace: "BAD_NS" is not a namespace name"#) && !e.contains('\n'), "{e}");
        for bad in ["Upper", "under_score", "-lead", "trail-", "dot.ted", "sp ace", "ünï", &"a".repeat(64)] {
            let e = invalid("--namespace", bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(e.starts_with("--namespace: ") && e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(invalid("--namespace", "").unwrap().contains("omit it to watch all namespaces"));
    }
}
