//! `ads-emulator`: serves the ADS emulator (see `ads_export_operator::emulator`) over HTTP.
//!
//! Prints `ads-emulator listening on http://ADDR` on stdout once bound; logs go to stderr.
//! Stops gracefully on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ads_export_operator::emulator::{Emulator, EmulatorConfig, load_faults, parse_duration};
use clap::Parser;

/// Emulates the AWS Application Discovery Service continuous-export API.
#[derive(Debug, Parser)]
#[command(name = "ads-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Migration Hub home region; without it every call answers HomeRegionNotSetException.
    #[arg(long)]
    home_region: Option<String>,
    /// How long new exports stay START_IN_PROGRESS (e.g. 500ms, 2s).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    start_delay: Duration,
    /// How long stopping exports stay STOP_IN_PROGRESS (e.g. 500ms, 2s).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    stop_delay: Duration,
    /// JSON file holding an array of faults to inject at start-up.
    #[arg(long)]
    faults: Option<PathBuf>,
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
    let running = emulator.spawn(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!("ads-emulator listening on {}", running.endpoint_url());
    let signal = shutdown_signal().await;
    // Which signal: the exit status (0) of a clean shutdown cannot tell.
    tracing::info!(signal, "shutting down");
    running.shutdown().await.map_err(|e| e.to_string())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, with that signal's name.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    }
}
