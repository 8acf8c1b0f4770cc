//! `ads-export-operator`: thin CLI over the library (parse flags, init telemetry,
//! dispatch `run` | `crd`).

use std::process::ExitCode;

use ads_export_operator::ads::aws::{AwsExportService, AwsSettings};
use ads_export_operator::cli::{Cli, Command, RunArgs};
use ads_export_operator::{api, controller, telemetry};
use clap::Parser;

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
            telemetry::init(args.log_format);
            match run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("no Kubernetes client configuration (KUBECONFIG or in-cluster): {e}"))?;
    let ads = AwsExportService::load(AwsSettings {
        region: args.aws_region.clone(),
        endpoint_url: args.aws_endpoint_url.clone(),
    })
    .await;
    let mut settings = args.settings();
    settings.default_region = ads.default_region();
    if settings.default_region.is_none() {
        tracing::warn!("no default AWS region (--aws-region, AWS_REGION or profile): objects need spec.region");
    }
    controller::run(client, ads, settings, None, shutdown_signal()).await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
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
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight reconciles");
}
