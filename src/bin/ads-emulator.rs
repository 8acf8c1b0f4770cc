//! `ads-emulator`: serves the ADS emulator (see `ads_export_operator::emulator`) over HTTP.
//!
//! Prints `ads-emulator listening on http://ADDR` on stdout once bound; logs go to stderr.
//! Stops gracefully on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ads_export_operator::duration;
use ads_export_operator::emulator::identity::IdentityConfig;
use ads_export_operator::emulator::{Emulator, EmulatorConfig, load_faults};
use clap::Parser;

/// Emulates the AWS Application Discovery Service continuous-export API.
#[derive(Debug, Parser)]
#[command(name = "ads-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Migration Hub home region of the default account (123456789012); without it every
    /// call in that account answers HomeRegionNotSetException. Other accounts start
    /// without one (POST /_emulator/accounts sets it).
    #[arg(long)]
    home_region: Option<String>,
    /// How long new exports stay START_IN_PROGRESS (e.g. 500ms, 2s).
    #[arg(long, default_value = "0", value_parser = duration::parse_term)]
    start_delay: Duration,
    /// How long stopping exports stay STOP_IN_PROGRESS (e.g. 500ms, 2s).
    #[arg(long, default_value = "0", value_parser = duration::parse_term)]
    stop_delay: Duration,
    /// JSON file holding an array of faults to inject at start-up.
    #[arg(long)]
    faults: Option<PathBuf>,
    /// JSON file configuring STS, Pod Identity and strict mode: OIDC providers (issuer and
    /// JWKS, e.g. kube-apiserver's /openid/v1/jwks), roles with their trust policies, Pod
    /// Identity associations, static keys (see the emulator module docs).
    #[arg(long)]
    identity_config: Option<PathBuf>,
    /// Accept ADS calls only when signed with credentials this emulator issued (or a
    /// configured static key), with a valid SigV4 signature.
    #[arg(long)]
    strict_credentials: bool,
    /// Lifetime of issued temporary credentials (e.g. 60s, 1h).
    #[arg(long, value_parser = duration::parse_term)]
    credentials_lifetime: Option<Duration>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ads-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let faults = match &args.faults {
        Some(path) => load_faults(path)?,
        None => Vec::new(),
    };
    let emulator = Emulator::new(EmulatorConfig {
        home_region: args.home_region,
        start_delay: args.start_delay,
        stop_delay: args.stop_delay,
    });
    for fault in faults {
        emulator.inject_fault(fault);
    }
    if let Some(path) = &args.identity_config {
        emulator.identity().configure(IdentityConfig::load(path)?);
    }
    if args.strict_credentials {
        emulator.identity().set_strict(true);
    }
    if let Some(lifetime) = args.credentials_lifetime {
        if lifetime < Duration::from_secs(1) {
            return Err("--credentials-lifetime: must be at least 1s".into());
        }
        emulator.identity().set_lifetime(lifetime);
    }
    let running = emulator.spawn(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!("ads-emulator listening on {}", running.endpoint_url());
    let signal = ads_export_operator::signal::shutdown().await;
    tracing::info!(signal, "shutting down");
    running.shutdown().await.map_err(|e| e.to_string())
}
