//! `fawkes connector`, `fawkes processor` and `fawkes topics`: the processes of a distributed
//! deployment on Kafka.

use std::sync::Arc;

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use connector::{JwtSecret, Metrics};
#[cfg(feature = "kafka")]
use eventlog::{Created, KafkaLog};
use eventlog::{KafkaConfig, Log};
use processors::{ProcessorMetrics, RunnerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use topics::names::manifest;

use crate::cli::{
    ConnectorArgs, ProcessorArgs, SchemaAction, SchemaArgs, TopicsAction, TopicsArgs,
};

fn bail_on(problems: Vec<String>) -> anyhow::Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("invalid configuration:\n  - {}", problems.join("\n  - "))
    }
}

/// Runs a connector on Kafka until `shutdown` fires.
pub async fn connector(
    args: ConnectorArgs,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Always unique per process: a restarted connector must not keep the presences of its
    // previous life alive with its heartbeats.
    let connector_id = crate::unique_id(args.connector_id.as_deref().unwrap_or("connector"));
    let mut problems = args.socket.problems();
    if args.socket.jwt_secret.is_none() {
        problems.push(
            "FAWKES_JWT_SECRET is required: a connector never runs with the development secret"
                .to_owned(),
        );
    }
    let kafka = args.kafka.config(&connector_id);
    if let Err(problem) = &kafka {
        problems.push(problem.clone());
    }
    bail_on(problems)?;
    let kafka = kafka.map_err(anyhow::Error::msg)?;
    let secret = JwtSecret::new(args.socket.jwt_secret.clone().unwrap_or_default());
    let log = kafka_log(kafka)?;
    let config = args.socket.connector_config(connector_id, secret);
    let metrics = Metrics::new(prometheus::Registry::new());
    let ran = connector::run(config, listener, log.clone(), metrics, shutdown).await;
    flush(&*log).await;
    ran.context("the connector failed")
}

/// How long an exiting process waits for the records it put on their way.
const FLUSH_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Flushes the producer before the process exits (what is still queued would be lost), for
/// at most [`FLUSH_WITHIN`].
async fn flush(log: &dyn Log) {
    if let Err(error) = log.flush(FLUSH_WITHIN).await {
        tracing::warn!(%error, "records still queued at exit may be lost");
    }
}

/// Runs a processor on Kafka until `shutdown` fires, serving `/metrics` on `metrics_listener`.
pub async fn processor(
    args: ProcessorArgs,
    metrics_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if args.partition_queue == 0 {
        problems.push("FAWKES_PARTITION_QUEUE must be at least 1".to_owned());
    }
    let prices = args.prices.config();
    if let Err(price_problems) = &prices {
        problems.extend(price_problems.iter().cloned());
    }
    let kafka = args.kafka.config(&crate::unique_id("processor"));
    if let Err(problem) = &kafka {
        problems.push(problem.clone());
    }
    bail_on(problems)?;
    let kafka = kafka.map_err(anyhow::Error::msg)?;
    let prices = prices.map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    check_retention(&kafka).await;
    let log = kafka_log(kafka)?;
    let store: Arc<dyn store::Store> = match args.scylla.config() {
        #[cfg(not(feature = "scylla"))]
        Some(_) => anyhow::bail!(
            "FAWKES_SCYLLA_NODES is set, but {WITHOUT_SCYLLA}; unset it to use the embedded store"
        ),
        #[cfg(feature = "scylla")]
        Some(config) => {
            tracing::info!(nodes = ?config.nodes, keyspace = %config.keyspace, "using the Scylla store");
            let scylla = store::ScyllaStore::connect(&config)
                .await
                .context("cannot connect to Scylla (has `fawkes schema apply` run?)")?;
            if args.seed {
                crate::seed::seed(&scylla)
                    .await
                    .context("cannot seed demo data")?;
            }
            Arc::new(scylla)
        }
        None => crate::dev::open_store(&args.data_dir, args.seed).await?,
    };

    let registry = prometheus::Registry::new();
    let metrics = ProcessorMetrics::new(&registry);
    let readiness = metrics.clone();
    // `/healthz` is liveness (a processor whose worker or sweeper died exits instead);
    // `/readyz` also says whether the log answers.
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let up = readiness.log.is_up();
                async move {
                    if up {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "log unreachable")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut out = Vec::new();
                    let _ = prometheus::Encoder::encode(
                        &prometheus::TextEncoder::new(),
                        &registry.gather(),
                        &mut out,
                    );
                    String::from_utf8(out).unwrap_or_default()
                }
            }),
        );
    let metrics_shutdown = shutdown.clone();
    let metrics_server = tokio::spawn(async move {
        axum::serve(metrics_listener, app)
            .with_graceful_shutdown(metrics_shutdown.cancelled_owned())
            .await
    });
    let config = RunnerConfig {
        group: args.group.clone(),
        partition_queue: args.partition_queue,
        partitions: args.partitions.clone().map(|p| p.0),
        lease: args.presence_lease,
        prices,
        history: args.history.limits(),
        ..RunnerConfig::default()
    };
    let ran = processors::run(config, log.clone(), store, metrics, shutdown.clone()).await;
    shutdown.cancel();
    flush(&*log).await;
    // A scraper holding a connection open must not hold the exit up.
    if tokio::time::timeout(std::time::Duration::from_secs(2), metrics_server)
        .await
        .is_err()
    {
        tracing::warn!("the metrics server did not stop in time");
    }
    ran.context("the processor failed")
}

/// Why Scylla settings are refused by a build without the `scylla` feature.
#[cfg(not(feature = "scylla"))]
const WITHOUT_SCYLLA: &str =
    "this fawkes was built without Scylla support (rebuild with the default `scylla` feature)";

/// `fawkes schema apply|print`.
pub async fn schema(args: SchemaArgs) -> anyhow::Result<()> {
    match args.action {
        SchemaAction::Print => {
            for statement in
                store::schema_statements(&args.scylla.keyspace, &args.scylla.replication)
            {
                println!("{statement};\n");
            }
            Ok(())
        }
        #[cfg(not(feature = "scylla"))]
        SchemaAction::Apply => anyhow::bail!("cannot apply the schema: {WITHOUT_SCYLLA}"),
        #[cfg(feature = "scylla")]
        SchemaAction::Apply => {
            let config = args
                .scylla
                .config()
                .context("FAWKES_SCYLLA_NODES is required (host:port of the Scylla nodes)")?;
            let count = store::ScyllaStore::apply_schema(&config)
                .await
                .context("cannot apply the schema")?;
            println!("applied {count} statements to keyspace {}", config.keyspace);
            Ok(())
        }
    }
}

/// `fawkes topics create|list|manifest`.
pub async fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    if let TopicsAction::Manifest = args.action {
        println!("{}", serde_json::to_string_pretty(&manifest())?);
        return Ok(());
    }
    let mut problems = Vec::new();
    if let TopicsAction::Create(create) = &args.action {
        problems.extend(create.placement().problems());
    }
    let kafka = args.kafka.config("fawkes-topics");
    if let Err(problem) = &kafka {
        problems.push(problem.clone());
    }
    bail_on(problems)?;
    provision(kafka.map_err(anyhow::Error::msg)?, args.action).await
}

/// `fawkes topics create|list` against the brokers of `kafka`.
#[cfg(feature = "kafka")]
async fn provision(kafka: KafkaConfig, action: TopicsAction) -> anyhow::Result<()> {
    let log = KafkaLog::connect(kafka).context("cannot set up the Kafka client")?;
    match action {
        TopicsAction::Create(create) => {
            let mut mismatched = Vec::new();
            for (name, created) in log
                .create_topics_placed(&topics::names::ALL, create.placement())
                .await
                .context("cannot create topics")?
            {
                match created {
                    Created::Created => println!("{name}\tcreated"),
                    Created::Existed => println!("{name}\texists"),
                    Created::Mismatch { partitions } => {
                        println!("{name}\texists with {partitions} partitions");
                        mismatched.push(name);
                    }
                }
            }
            if !mismatched.is_empty() {
                anyhow::bail!(
                    "{} exist with other partition counts than this fawkes routes to \
                     (infra/topics.json); records would land on the wrong partitions. \
                     Recreate them, or build fawkes with their counts in topics/src/names.rs",
                    mismatched.join(", ")
                );
            }
        }
        TopicsAction::List => {
            let mut topics = log.list_topics().await.context("cannot list topics")?;
            topics.sort();
            for (name, partitions) in topics {
                println!("{name}\t{partitions} partitions");
            }
        }
        TopicsAction::Manifest => {}
    }
    Ok(())
}

#[cfg(not(feature = "kafka"))]
async fn provision(_: KafkaConfig, _: TopicsAction) -> anyhow::Result<()> {
    anyhow::bail!(NO_KAFKA)
}

/// Why a build without the `kafka` feature has no distributed mode.
#[cfg(not(feature = "kafka"))]
const NO_KAFKA: &str =
    "this fawkes was built without Kafka support (rebuild with the default `kafka` feature)";

/// Says at start whether the brokers keep commands and committed positions as long as the
/// guarantees need (README, "How long the guarantees need their records"). Counting stays
/// exact either way (campaign fences never expire); what a mismatch costs is said in each
/// warning. Brokers that do not describe their configuration (Tansu) are noted, not refused.
#[cfg(feature = "kafka")]
async fn check_retention(config: &KafkaConfig) {
    let retention = match KafkaLog::connect(config.clone()) {
        Ok(log) => log.retention().await,
        Err(error) => Err(error),
    };
    let retention = match retention {
        Ok(retention) => retention,
        Err(error) => {
            tracing::info!(%error, "cannot read the brokers' retention settings; not checked");
            return;
        }
    };
    let outcomes_ms = i64::try_from(store::OUTCOME_RETENTION.as_millis()).unwrap_or(i64::MAX);
    if let Some(commands_ms) = retention.commands_ms {
        if commands_ms < 0 || commands_ms > outcomes_ms {
            tracing::warn!(
                commands_ms,
                outcomes_ms,
                "the commands topic keeps commands longer than their outcomes are kept: one \
                 re-read after its outcome expired is answered anew (never counted twice)"
            );
        }
    }
    if let (Some(minutes), Some(commands_ms)) = (retention.offsets_minutes, retention.commands_ms) {
        if commands_ms > 0 && minutes.saturating_mul(60_000) < commands_ms {
            tracing::warn!(
                offsets_retention_minutes = minutes,
                commands_ms,
                "committed positions expire before the commands they point into: a partition \
                 idle that long restarts from its earliest command (replays, answered from \
                 stored outcomes); raise offsets.retention.minutes"
            );
        }
    }
}

#[cfg(not(feature = "kafka"))]
async fn check_retention(_: &KafkaConfig) {}

/// The log of the distributed mode: Kafka, or in a build without it the reason there is none.
fn kafka_log(config: KafkaConfig) -> anyhow::Result<Arc<dyn Log>> {
    #[cfg(feature = "kafka")]
    return Ok(Arc::new(
        KafkaLog::connect(config).context("cannot set up the Kafka client")?,
    ));
    #[cfg(not(feature = "kafka"))]
    {
        let _ = config;
        anyhow::bail!(NO_KAFKA)
    }
}
