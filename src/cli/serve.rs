//! `callpool serve` (the default command): opens the store, binds the listener and runs the
//! service until SIGTERM or SIGINT, then stops gracefully.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use callpool::app::App;
use callpool::clock::{Clock, SystemClock};
use callpool::config::Config;
use tokio_util::sync::CancellationToken;

/// Runs the service on `config` until a signal stops it.
pub async fn run(config: Config) -> anyhow::Result<ExitCode> {
    // Register the signal handlers first: a SIGTERM that arrives while the node starts must stop
    // it cleanly, not kill it with the default action.
    let signals = Signals::register().context("cannot install the signal handlers")?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("Shutting down: no new connections, finishing the ones in flight.");
        stop.cancel();
    });
    let listen = config.server.listen;
    let source = config.source.clone();
    let hangups = Hangups::register().context("cannot install the SIGHUP handler")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Start-up may wait for Redis for as long as it takes; a signal meanwhile ends the wait.
    let app = tokio::select! {
        app = App::start(config, clock) => Arc::new(app.context("cannot open the pool store")?),
        () = shutdown.cancelled() => {
            tracing::info!("Stopped before serving.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    hangups.reload(app.clone());
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        config = %source,
        store = app.pool.kind(),
        sites = app.config().sites.len(),
        version = %app.config().version,
        "callpool is serving."
    );
    callpool::run(listener, app, shutdown).await.context("the server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP (`systemctl reload`), registered up front so that one arriving while the node starts
/// does not kill it; once the node runs, each reloads the configuration (on every node).
struct Hangups {
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Hangups {
    fn register() -> std::io::Result<Hangups> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Hangups { hup: signal(SignalKind::hangup())? })
        }
        #[cfg(not(unix))]
        {
            Ok(Hangups {})
        }
    }

    /// Reloads `app`'s configuration at each SIGHUP (the outcome is logged).
    fn reload(self, app: Arc<App>) {
        #[cfg(unix)]
        {
            let mut hup = self.hup;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = callpool::reload::reload(&app, callpool::reload::Origin::Signal).await;
                }
            });
        }
        #[cfg(not(unix))]
        let _ = app;
    }
}

/// SIGTERM and SIGINT (Ctrl-C), registered up front.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
