//! `fawkes`: parse the command line, set up logging, bind, run until a signal.

use anyhow::Context;
use clap::Parser;
use fawkes::cli::{Cli, Command};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FAWKES_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Token(args)) => {
                println!("{}", fawkes::token::mint(&args)?);
                Ok(())
            }
            Some(Command::Topics(args)) => fawkes::distributed::topics(args).await,
            Some(Command::Schema(args)) => fawkes::distributed::schema(args).await,
            Some(Command::Dev(args)) => {
                let (listener, shutdown) = bind(args.socket.listen).await?;
                fawkes::dev::run(args, listener, shutdown).await
            }
            None => {
                let (listener, shutdown) = bind(cli.dev.socket.listen).await?;
                fawkes::dev::run(cli.dev, listener, shutdown).await
            }
            Some(Command::Connector(args)) => {
                let (listener, shutdown) = bind(args.socket.listen).await?;
                fawkes::distributed::connector(args, listener, shutdown).await
            }
            Some(Command::Processor(args)) => {
                let (listener, shutdown) = bind(args.metrics_listen).await?;
                fawkes::distributed::processor(args, listener, shutdown).await
            }
        }
    });
    // The servers have drained within their deadlines; a blocking call still out (a metadata
    // request to a broker that does not answer) must not hold the exit up past them.
    runtime.shutdown_timeout(EXIT_GRACE);
    result
}

/// How long the exit waits for blocking work still running after the drain.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Binds `addr`, announces it on stdout and arms the shutdown signal handlers.
async fn bind(
    addr: std::net::SocketAddr,
) -> anyhow::Result<(tokio::net::TcpListener, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to find the port.
    println!("fawkes listening on http://{local}");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    Ok((listener, shutdown))
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                shutdown.cancel();
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: draining sockets");
    shutdown.cancel();
}
