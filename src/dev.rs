//! `fawkes dev`: the connector and the processors in one process, on the embedded log and
//! store in the data directory.

use std::sync::Arc;

use anyhow::Context;
use connector::{ConnectorConfig, Metrics};
use processors::{ProcessorMetrics, RunnerConfig};
use store::{EmbeddedStore, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use topics::log::embedded::EmbeddedLog;
use topics::Log;

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
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(&args.data_dir)
            .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?,
    );
    if !args.no_seed {
        let created = crate::seed::seed(&*store)
            .await
            .context("cannot seed demo data")?;
        if created > 0 {
            tracing::info!(created, "seeded demo campaigns");
        }
    }

    let mut config = ConnectorConfig::new(format!("dev-{}", uuid_like()), secret);
    config.idle_timeout = args.idle_timeout();
    config.max_frame_bytes = args.max_frame_bytes;
    config.outbound_queue = args.outbound_queue;
    config.channel_rate_limit = args.channel_rate_limit;

    let processors_stop = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let runner = tokio::spawn(processors::run(
        RunnerConfig::default(),
        log.clone(),
        store,
        ProcessorMetrics::new(&registry),
        processors_stop.clone(),
    ));
    let served = connector::run(config, listener, log, Metrics::new(registry), shutdown).await;
    // The connector has drained; let the processors finish the command at hand.
    processors_stop.cancel();
    let ran = runner.await.context("the processor task panicked")?;
    served.context("the connector failed")?;
    ran.context("the processors failed")?;
    Ok(())
}

/// A process-unique suffix for the connector id.
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}
