//! `ads-export-operator`: thin CLI over the library (parse flags, init telemetry,
//! dispatch `run` | `crd`).

use std::process::ExitCode;

use ads_export_operator::cli::{Cli, Command, LogFormat};
use ads_export_operator::{api, operator, telemetry};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    ads_export_operator::install_crypto_provider();
    match Cli::parse().into_command() {
        Command::Crd => match api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            if let Err(e) = args.validate() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            let json = args.log_format == LogFormat::Json;
            telemetry::init(args.log_format);
            let shutdown = CancellationToken::new();
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    shutdown_signal().await;
                    shutdown.cancel();
                }
            });
            match operator::run(*args, shutdown).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // once: as a JSON log line for log pipelines, else as a plain line
                    if json {
                        tracing::error!("{e:#}");
                    } else {
                        eprintln!("error: {e:#}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT), logging which (a clean exit's status cannot tell).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // no SIGINT handler could be installed: rely on SIGTERM alone
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let signal = tokio::select! {
        () = ctrl_c => "SIGINT",
        () = term => "SIGTERM",
    };
    tracing::info!(signal, "shutdown signal received; finishing in-flight reconciles");
}
