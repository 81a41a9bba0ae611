//! `fawkes dev`: the connector and the processors in one process, on the embedded log and
//! store in the data directory.

use std::sync::Arc;

use anyhow::Context;
use connector::Metrics;
use eventlog::{EmbeddedLog, Log};
use processors::{ProcessorMetrics, RunnerConfig};
use store::{EmbeddedStore, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::DevArgs;

/// Runs until `shutdown` fires, serving on `listener`.
pub async fn run(
    args: DevArgs,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let problems = args.problems();
    if !problems.is_empty() {
        anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
    }
    let (secret, development) = args.secret();
    if development {
        tracing::warn!(
            "FAWKES_JWT_SECRET is not set: using the DEVELOPMENT secret. Anyone can mint tokens \
             for this server. Never run it like this in production."
        );
    }
    let log: Arc<dyn Log> = Arc::new(
        EmbeddedLog::open(args.data_dir.join("log"))
            .with_context(|| format!("cannot open the log in {}", args.data_dir.display()))?,
    );
    let store = open_store(&args.data_dir, args.seed()).await?;
    let config = args
        .socket
        .connector_config(crate::unique_id("dev"), secret);

    let processors_stop = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let runner_config = RunnerConfig {
        lease: args.socket.presence_lease,
        prices: args
            .prices
            .config()
            .map_err(|p| anyhow::anyhow!(p.join("; ")))?,
        history: args.history.limits(),
        ..RunnerConfig::default()
    };
    let mut runner = tokio::spawn(processors::run(
        runner_config,
        log.clone(),
        store,
        ProcessorMetrics::new(&registry),
        processors_stop.clone(),
    ));
    let connector_stop = shutdown.child_token();
    let serving = connector::run(
        config,
        listener,
        log,
        Metrics::new(registry),
        connector_stop.clone(),
    );
    tokio::pin!(serving);
    let served = tokio::select! {
        served = &mut serving => served,
        ran = &mut runner => {
            // The processors stopped while the connector serves: every command would go
            // unanswered. Drain the connector and exit with the processors' error.
            tracing::error!("the processors stopped; shutting down");
            connector_stop.cancel();
            let served = serving.await;
            ran.context("the processor task panicked")?
                .context("the processors failed")?;
            served.context("the connector failed")?;
            anyhow::bail!("the processors stopped unexpectedly");
        }
    };
    // The connector has drained; let the processors finish the command at hand.
    processors_stop.cancel();
    let ran = runner.await.context("the processor task panicked")?;
    served.context("the connector failed")?;
    ran.context("the processors failed")?;
    Ok(())
}

/// Opens the embedded store in `data_dir`, seeding the demo campaigns when asked.
pub async fn open_store(data_dir: &std::path::Path, seed: bool) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(data_dir)
            .with_context(|| format!("cannot open the store in {}", data_dir.display()))?,
    );
    if seed {
        let created = crate::seed::seed(&*store)
            .await
            .context("cannot seed demo data")?;
        if created > 0 {
            tracing::info!(created, "seeded demo campaigns");
        }
    }
    Ok(store)
}
