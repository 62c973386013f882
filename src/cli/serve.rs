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
    check_on_hangup(&source)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // Start-up may wait for Redis for as long as it takes; a signal meanwhile ends the wait.
    let app = tokio::select! {
        app = App::start(config, clock) => Arc::new(app.context("cannot open the pool store")?),
        () = shutdown.cancelled() => {
            tracing::info!("Stopped before serving.");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        config = %source,
        store = app.pool.kind(),
        sites = app.config.sites.len(),
        "callpool is serving."
    );
    callpool::run(listener, app, shutdown).await.context("the server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP (`systemctl reload`): the configuration file is read and checked again, and the
/// result logged. Applying it needs a restart until live reload is built; a hang-up never stops
/// the node.
fn check_on_hangup(source: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
        let path = std::path::PathBuf::from(source);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if !path.is_file() {
                    tracing::warn!(
                        "SIGHUP: this node runs the built-in configuration; there is no file to read again."
                    );
                    continue;
                }
                match Config::load(&path, &callpool::config::ProcessEnv) {
                    Ok(c) => tracing::warn!(
                        config = %path.display(),
                        sites = c.sites.len(),
                        "SIGHUP: the configuration file is valid; restart the service to apply it (live reload is not built yet)."
                    ),
                    Err(e) => tracing::error!(
                        config = %path.display(),
                        problems = %e.problems.iter().map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("; "),
                        "SIGHUP: the configuration file has problems; the running configuration stays."
                    ),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = source;
    Ok(())
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
