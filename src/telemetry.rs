//! Logging set-up: `tracing` to stderr, as text or JSON lines, filtered by `RUST_LOG`
//! (default `info`, with the chatty HTTP and AWS crates at `warn`).

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,hyper=warn,aws_config=warn,aws_smithy_runtime=warn,kube_client=warn,tower=warn";

/// Installs the global subscriber. Safe to call more than once (later calls are
/// ignored), so tests can call it too.
pub fn init(format: LogFormat) {
    // An empty RUST_LOG counts as unset (it would otherwise silence everything).
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // No reports of failed log writes: tracing-subscriber writes them with `eprintln!`,
    // which panics on a closed stderr (e.g. `| head`), and the panic could take the
    // signal-handling task with it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
