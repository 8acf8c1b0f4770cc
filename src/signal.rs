//! The shutdown signal both binaries stop on (`ads-export-operator run`, `ads-emulator`).

/// Resolves on the first SIGTERM (what the kubelet sends a pod being stopped) or
/// Ctrl-C (SIGINT), with that signal's name (`"SIGTERM"` or `"SIGINT"`), for the log
/// line callers write: a clean shutdown's exit status (0) cannot tell which it was.
/// A signal whose handler cannot be installed is logged and left out: the other one
/// still works (on non-Unix platforms only Ctrl-C exists).
pub async fn shutdown() -> &'static str {
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
