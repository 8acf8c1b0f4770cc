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
        Command::Crd { name } => {
            match name.as_deref().map_or_else(|| Some(api::all_crds_yaml()), api::crd_yaml_named) {
                Some(Ok(yaml)) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => {
                    eprintln!("error: cannot render the CRD: {e}");
                    ExitCode::FAILURE
                }
                None => {
                    eprintln!("error: unknown CRD name; use one of {}", api::CRD_NAMES.join(", "));
                    ExitCode::from(2)
                }
            }
        }
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
                    let signal = ads_export_operator::signal::shutdown().await;
                    tracing::info!(signal, "shutdown signal received; finishing in-flight reconciles");
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
