//! The command line. Every flag has a `FAWKES_*` environment twin.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use connector::{ConnectorConfig, JwtSecret};
use eventlog::{KafkaConfig, TopicPlacement};
use processors::{FeedUrl, PriceFeedConfig};
use store::{Consistency, ScyllaConfig};

pub use crate::durations::parse_ttl;
use crate::transport::TransportArgs;

/// The secret `fawkes dev` uses when none is configured. Never for production.
pub const DEV_JWT_SECRET: &str = "fawkes-development-secret-do-not-use-in-production";

/// Fawkes: real-time channels speaking the Phoenix protocol, event-sourced on a log.
#[derive(Debug, Parser)]
#[command(name = "fawkes", version, about)]
pub struct Cli {
    /// What to run; `dev` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for `dev` when no subcommand is given.
    #[command(flatten)]
    pub dev: DevArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// All-in-one: connector and processors on the embedded log and store.
    Dev(DevArgs),
    /// A connector: sockets and fan-out, on Kafka (scale out: run several).
    Connector(ConnectorArgs),
    /// A processor: decides commands from Kafka (scale out: run several).
    Processor(ProcessorArgs),
    /// Provision or inspect the Kafka topics.
    Topics(TopicsArgs),
    /// Apply the CQL schema to a Scylla cluster.
    Schema(SchemaArgs),
    /// Mint a development JWT.
    Token(TokenArgs),
}

/// ScyllaDB settings, shared by `processor` and `schema`.
#[derive(Debug, Clone, Args)]
pub struct ScyllaArgs {
    /// Scylla contact points, `host:port[,host:port...]`; the embedded store is used when
    /// absent.
    #[arg(long = "scylla-nodes", global = true, env = "FAWKES_SCYLLA_NODES")]
    pub nodes: Option<String>,
    /// Keyspace of the tables.
    #[arg(
        long = "scylla-keyspace",
        global = true,
        env = "FAWKES_SCYLLA_KEYSPACE",
        default_value = "fawkes"
    )]
    pub keyspace: String,
    /// Replication of the keyspace, as CQL, used by `fawkes schema apply`: one replica by
    /// default (a development node); in production
    /// `{'class': 'NetworkTopologyStrategy', '<datacenter>': 3}`.
    #[arg(
        long = "scylla-replication",
        global = true,
        env = "FAWKES_SCYLLA_REPLICATION",
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    pub replication: String,
    /// Consistency of reads and writes: one, local_one, quorum, local_quorum, all.
    #[arg(long = "scylla-consistency", global = true, env = "FAWKES_SCYLLA_CONSISTENCY", default_value = "local_quorum", value_parser = parse_consistency)]
    pub consistency: Consistency,
    /// Most Scylla requests in flight from one process.
    #[arg(
        long = "scylla-max-in-flight",
        global = true,
        env = "FAWKES_SCYLLA_MAX_IN_FLIGHT",
        default_value_t = 256
    )]
    pub max_in_flight: usize,
}

impl ScyllaArgs {
    /// The Scylla configuration, when nodes are configured.
    pub fn config(&self) -> Option<ScyllaConfig> {
        let nodes: Vec<String> = self
            .nodes
            .as_deref()?
            .split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            return None;
        }
        let mut config = ScyllaConfig::new(nodes);
        config.keyspace = self.keyspace.clone();
        config.replication = self.replication.clone();
        config.consistency = self.consistency;
        config.max_in_flight = self.max_in_flight;
        Some(config)
    }
}

/// Parses a consistency level name.
pub fn parse_consistency(text: &str) -> Result<Consistency, String> {
    match text.to_ascii_lowercase().as_str() {
        "one" => Ok(Consistency::One),
        "local_one" => Ok(Consistency::LocalOne),
        "quorum" => Ok(Consistency::Quorum),
        "local_quorum" => Ok(Consistency::LocalQuorum),
        "all" => Ok(Consistency::All),
        other => Err(format!(
            "`{other}` is not one of one, local_one, quorum, local_quorum, all"
        )),
    }
}

/// Settings of `fawkes schema`.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SchemaAction,
    /// Scylla settings.
    #[command(flatten)]
    pub scylla: ScyllaArgs,
}

/// `fawkes schema` actions.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum SchemaAction {
    /// Create the keyspace and tables (idempotent).
    Apply,
    /// Print the statements `apply` would run.
    Print,
}

/// The least part of the drain timeout left after the drain window.
const DRAIN_AFTER_WINDOW: Duration = Duration::from_secs(2);

/// Socket-serving settings, shared by `dev` and `connector`.
#[derive(Debug, Clone, Args)]
pub struct SocketArgs {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, env = "FAWKES_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// HS256 secret for socket and API tokens; `dev` uses a development secret when absent,
    /// `connector` refuses to start.
    #[arg(long, env = "FAWKES_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Seconds without any client frame before a socket is closed.
    #[arg(long, env = "FAWKES_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Largest client frame in bytes; larger frames close the socket with 1009.
    #[arg(long, env = "FAWKES_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// Client events per second allowed on one joined channel; 0 turns the limit off.
    #[arg(long, env = "FAWKES_CHANNEL_RATE_LIMIT", default_value_t = 10)]
    pub channel_rate_limit: u32,
    /// Frames queued per socket before it is closed as too slow (1013).
    #[arg(long, env = "FAWKES_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,
    /// How long this connector's presences outlive its last heartbeat, e.g. 10s: the time
    /// users of a crashed connector stay listed. It heartbeats four times per lease.
    #[arg(long, env = "FAWKES_PRESENCE_LEASE", default_value = "10s", value_parser = parse_ttl)]
    pub presence_lease: Duration,
    /// Presence diffs of one topic are folded and sent once per window, in milliseconds.
    #[arg(long, env = "FAWKES_PRESENCE_WINDOW_MS", default_value_t = 25)]
    pub presence_window_ms: u64,
    /// How long a join or push waits for its command to be confirmed on the log, e.g. 5s;
    /// after that it is answered `unavailable` (not confirmed: retry).
    #[arg(long, env = "FAWKES_APPEND_TIMEOUT", default_value = "5s", value_parser = parse_ttl)]
    pub append_timeout: Duration,
    /// How long a join or push may wait for its reply, e.g. 8s; after that it is answered
    /// `unavailable` (retry) and a late reply is dropped. At least the append timeout.
    #[arg(long, env = "FAWKES_REPLY_TIMEOUT", default_value = "8s", value_parser = parse_ttl)]
    pub reply_timeout: Duration,
    /// On a shutdown signal, sockets are closed (1012, after `shutdown_notice`) in batches
    /// spread over this window, e.g. 5s, so their clients do not all reconnect at once; 0s
    /// closes them all at once.
    #[arg(long, env = "FAWKES_DRAIN_WINDOW", default_value = "5s", value_parser = parse_ttl)]
    pub drain_window: Duration,
    /// The shutdown's deadline from the signal, e.g. 10s: the drain window, then the last
    /// sockets' close frames and leaves, then the log tasks. What is not done by then is
    /// abandoned. At least the drain window plus 2s.
    #[arg(long, env = "FAWKES_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_ttl)]
    pub drain_timeout: Duration,
    /// The origin check and the long-poll transport.
    #[command(flatten)]
    pub transport: TransportArgs,
}

impl SocketArgs {
    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.idle_timeout_secs == 0 {
            problems.push("FAWKES_IDLE_TIMEOUT_SECS must be at least 1".to_owned());
        }
        if self.max_frame_bytes < 1024 {
            problems.push("FAWKES_MAX_FRAME_BYTES must be at least 1024".to_owned());
        }
        if self.outbound_queue == 0 {
            problems.push("FAWKES_OUTBOUND_QUEUE must be at least 1".to_owned());
        }
        if self.presence_lease < Duration::from_secs(1) {
            problems.push("FAWKES_PRESENCE_LEASE must be at least 1s".to_owned());
        }
        if self.append_timeout < Duration::from_secs(1) {
            problems.push("FAWKES_APPEND_TIMEOUT must be at least 1s".to_owned());
        }
        if self.reply_timeout < self.append_timeout {
            problems.push("FAWKES_REPLY_TIMEOUT must be at least FAWKES_APPEND_TIMEOUT".to_owned());
        }
        if self.drain_timeout < self.drain_window.saturating_add(DRAIN_AFTER_WINDOW) {
            problems.push(format!(
                "FAWKES_DRAIN_TIMEOUT must be at least FAWKES_DRAIN_WINDOW plus {}s (the last \
                 sockets' close frames and leaves, then the log tasks, need that time)",
                DRAIN_AFTER_WINDOW.as_secs()
            ));
        }
        if !(1..=1000).contains(&self.presence_window_ms) {
            problems.push("FAWKES_PRESENCE_WINDOW_MS must be between 1 and 1000".to_owned());
        }
        if self.jwt_secret.as_deref() == Some("") {
            problems.push("FAWKES_JWT_SECRET is set but empty".to_owned());
        }
        problems.extend(self.transport.problems());
        problems
    }

    /// The connector settings these arguments describe.
    pub fn connector_config(&self, connector_id: String, secret: JwtSecret) -> ConnectorConfig {
        let mut config = ConnectorConfig::new(connector_id, secret);
        config.idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        config.max_frame_bytes = self.max_frame_bytes;
        config.outbound_queue = self.outbound_queue;
        config.channel_rate_limit = self.channel_rate_limit;
        config.presence_lease = self.presence_lease;
        config.presence_window = Duration::from_millis(self.presence_window_ms);
        config.append_timeout = self.append_timeout;
        config.reply_timeout = self.reply_timeout;
        config.drain_window = self.drain_window;
        config.drain_timeout = self.drain_timeout;
        self.transport.apply(&mut config);
        config
    }
}

/// Settings of `fawkes dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Socket settings.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Directory for the embedded log and store.
    #[arg(long, env = "FAWKES_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Do not create the demo campaigns (`fawkes dev` creates them by default).
    #[arg(long, env = "FAWKES_NO_SEED", value_parser = BoolishValueParser::new())]
    pub no_seed: bool,
    /// The price feed of the zakat channel.
    #[command(flatten)]
    pub prices: PriceFeedArgs,
    /// The topics' histories, for clients to recover missed broadcasts.
    #[command(flatten)]
    pub history: crate::history::HistoryArgs,
}

impl DevArgs {
    /// Every problem with these settings, so all can be fixed at once.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = self.socket.problems();
        problems.extend(self.prices.problems());
        if self.prices.timeout >= self.socket.reply_timeout {
            // The client would be answered `unavailable` before the feed is given up on.
            problems
                .push("FAWKES_PRICE_FEED_TIMEOUT must be under FAWKES_REPLY_TIMEOUT".to_owned());
        }
        problems
    }

    /// Whether to create the demo campaigns: yes unless `--no-seed`.
    pub fn seed(&self) -> bool {
        !self.no_seed
    }

    /// The JWT secret, and whether it is the development default.
    pub fn secret(&self) -> (JwtSecret, bool) {
        match &self.socket.jwt_secret {
            Some(secret) => (JwtSecret::new(secret.clone()), false),
            None => (JwtSecret::new(DEV_JWT_SECRET), true),
        }
    }
}

/// The gold and silver price feed `calculate_nisab` and `calculate_zakat` ask when a client
/// gives no prices (docs/PRICE_FEED.md), and its circuit breaker; shared by `dev` and
/// `processor`.
#[derive(Debug, Clone, Args)]
pub struct PriceFeedArgs {
    /// URL of the feed, `http://host[:port][/path][?query]`; `currency=<code>` is added to the
    /// query. Unset: no feed, and a calculation without prices is refused as invalid.
    #[arg(long = "price-feed-url", env = "FAWKES_PRICE_FEED_URL")]
    pub url: Option<String>,
    /// Longest one call to the feed may take, connecting included, e.g. 2s or 500ms. The
    /// command's partition waits for it.
    #[arg(long = "price-feed-timeout", env = "FAWKES_PRICE_FEED_TIMEOUT", default_value = "2s", value_parser = parse_ttl)]
    pub timeout: Duration,
    /// Failed calls in a row that open the circuit breaker: then the feed is not called, and
    /// calculations needing it are answered `price feed unavailable` at once.
    #[arg(
        long = "price-feed-failure-threshold",
        env = "FAWKES_PRICE_FEED_FAILURE_THRESHOLD",
        default_value_t = 5
    )]
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through, e.g. 30s.
    #[arg(long = "price-feed-cool-down", env = "FAWKES_PRICE_FEED_COOL_DOWN", default_value = "30s", value_parser = parse_ttl)]
    pub cool_down: Duration,
}

impl PriceFeedArgs {
    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        self.config().err().unwrap_or_default()
    }

    /// The processors' price feed settings, or every problem with them.
    pub fn config(&self) -> Result<PriceFeedConfig, Vec<String>> {
        let mut problems = Vec::new();
        let url = match self.url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => FeedUrl::parse(url)
                .map_err(|e| problems.push(format!("FAWKES_PRICE_FEED_URL: {e}")))
                .ok(),
        };
        if self.timeout.is_zero() {
            problems.push("FAWKES_PRICE_FEED_TIMEOUT must be above 0".to_owned());
        }
        if self.failure_threshold == 0 {
            problems.push("FAWKES_PRICE_FEED_FAILURE_THRESHOLD must be at least 1".to_owned());
        }
        if self.cool_down.is_zero() {
            problems.push("FAWKES_PRICE_FEED_COOL_DOWN must be above 0".to_owned());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(PriceFeedConfig {
            url,
            timeout: self.timeout,
            failure_threshold: self.failure_threshold,
            cool_down: self.cool_down,
        })
    }
}

/// Kafka settings, shared by `connector`, `processor` and `topics`.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(long = "kafka-brokers", global = true, env = "FAWKES_KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// `fetch.wait.max.ms`: the longest a fetch waits for data, in milliseconds. librdkafka's
    /// own default (500): Apache Kafka answers a waiting fetch as soon as a record arrives.
    /// Brokers that answer only when the wait runs out (Tansu) need it low (the tests use 1).
    #[arg(
        long = "kafka-fetch-wait-max-ms",
        global = true,
        env = "FAWKES_KAFKA_FETCH_WAIT_MAX_MS",
        default_value_t = eventlog::KafkaConfig::FETCH_WAIT_MAX_MS
    )]
    pub fetch_wait_max_ms: u32,
    /// `session.timeout.ms` of processors in their consumer group, in milliseconds: how soon a
    /// dead processor's partitions move to the others.
    #[arg(
        long = "kafka-session-timeout-ms",
        global = true,
        env = "FAWKES_KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = eventlog::KafkaConfig::SESSION_TIMEOUT_MS
    )]
    pub session_timeout_ms: u32,
}

impl KafkaArgs {
    /// The Kafka configuration, or the problem that prevents one.
    pub fn config(&self, client_id: &str) -> Result<KafkaConfig, String> {
        match self.brokers.as_deref().map(str::trim) {
            None | Some("") => {
                Err("FAWKES_KAFKA_BROKERS is required (host:port of the Kafka brokers)".to_owned())
            }
            Some(brokers) => {
                let mut config = KafkaConfig::new(brokers);
                config.client_id = client_id.to_owned();
                config.fetch_wait_max_ms = self.fetch_wait_max_ms;
                config.session_timeout_ms = self.session_timeout_ms;
                Ok(config)
            }
        }
    }
}

/// Settings of `fawkes connector`.
#[derive(Debug, Clone, Args)]
pub struct ConnectorArgs {
    /// Socket settings.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Kafka settings.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Name of this connector (e.g. the pod name); its id on the log is the name plus a
    /// per-process suffix, so a restarted connector never inherits its previous life's
    /// presences.
    #[arg(long, env = "FAWKES_CONNECTOR_ID")]
    pub connector_id: Option<String>,
}

/// Settings of `fawkes processor`.
#[derive(Debug, Clone, Args)]
pub struct ProcessorArgs {
    /// Kafka settings.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Directory of the embedded store, shared by the processors of one machine.
    #[arg(long, env = "FAWKES_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address of the `/metrics` and `/healthz` endpoint (port 0: any free port).
    #[arg(long, env = "FAWKES_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Consumer group of the processors.
    #[arg(
        long,
        env = "FAWKES_PROCESSOR_GROUP",
        default_value = "fawkes-processors"
    )]
    pub group: String,
    /// Stable identity of this processor in its group (Kafka static membership); a restarted
    /// processor with the same id takes over its partitions at once. Set it per replica
    /// (e.g. the pod name of a StatefulSet).
    #[arg(long, env = "FAWKES_PROCESSOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Static assignment: the command partitions this processor owns, e.g. `0-3` or `0,2,4`.
    /// Each partition needs exactly one owner; a restarted processor resumes its partitions
    /// at once, with no rebalance. Absent: partitions are shared through the consumer group.
    #[arg(long, env = "FAWKES_PROCESSOR_PARTITIONS", value_parser = parse_partitions)]
    pub partitions: Option<Partitions>,
    /// Commands queued per partition before the partition is paused.
    #[arg(long, env = "FAWKES_PARTITION_QUEUE", default_value_t = 256)]
    pub partition_queue: usize,
    /// Lease of connectors not heard from since this processor started (heartbeats carry
    /// each connector's own lease), e.g. 10s.
    #[arg(long, env = "FAWKES_PRESENCE_LEASE", default_value = "10s", value_parser = parse_ttl)]
    pub presence_lease: Duration,
    /// Create the demo campaigns (`1` and `2`) in the store at start, keeping existing ones.
    /// Off by default: a production store never gets demo data unless asked.
    #[arg(long, env = "FAWKES_SEED", value_parser = BoolishValueParser::new())]
    pub seed: bool,
    /// The price feed of the zakat channel.
    #[command(flatten)]
    pub prices: PriceFeedArgs,
    /// The topics' histories, for clients to recover missed broadcasts.
    #[command(flatten)]
    pub history: crate::history::HistoryArgs,
    /// Scylla settings (the store; embedded in `--data-dir` when no nodes are set).
    #[command(flatten)]
    pub scylla: ScyllaArgs,
}

/// Settings of `fawkes topics`.
#[derive(Debug, Clone, Args)]
pub struct TopicsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TopicsAction,
    /// Kafka settings.
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// `fawkes topics` actions.
#[derive(Debug, Clone, Subcommand)]
pub enum TopicsAction {
    /// Create every Fawkes topic with its partitions and settings (existing ones are kept, and
    /// checked for the partition count this build routes to).
    Create(TopicsCreateArgs),
    /// List the topics on the cluster.
    List,
    /// Print the topic definitions as JSON (the manifest in infra/topics.json).
    Manifest,
}

/// Settings of `fawkes topics create`: how the new topics are replicated.
#[derive(Debug, Clone, Args)]
pub struct TopicsCreateArgs {
    /// Replicas of every partition (3 on a production cluster). Absent: the brokers'
    /// `default.replication.factor`, as with `kafka-topics.sh --create`.
    #[arg(long, env = "FAWKES_TOPICS_REPLICATION_FACTOR")]
    pub replication_factor: Option<NonZeroU16>,
    /// `min.insync.replicas` of the topics (2 with a replication factor of 3): the replicas
    /// that must hold a record before the producers' `acks=all` acknowledges it. Absent: the
    /// brokers' default.
    #[arg(long, env = "FAWKES_TOPICS_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<NonZeroU16>,
}

impl TopicsCreateArgs {
    /// The placement of the new topics.
    pub fn placement(&self) -> TopicPlacement {
        TopicPlacement {
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
        }
    }
}

/// Settings of `fawkes token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub`).
    #[arg(long)]
    pub sub: String,
    /// A role to include (repeatable): admin, super_admin, service.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime, e.g. `90s`, `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// HS256 secret; the development secret when absent.
    #[arg(long, env = "FAWKES_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

/// A list of command partitions, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions(pub Vec<u32>);

/// Parses a partition list such as `0-3`, `5` or `0,2,4-6`; every partition must exist.
pub fn parse_partitions(text: &str) -> Result<Partitions, String> {
    let count = topics::names::COMMANDS.partitions;
    let mut partitions = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        let parse = |n: &str| {
            n.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{part}` is not a partition or range like 0-3"))
        };
        let (from, to) = (parse(from)?, parse(to)?);
        if from > to || to >= count {
            return Err(format!(
                "`{part}` is outside the {count} command partitions (0-{})",
                count - 1
            ));
        }
        partitions.extend(from..=to);
    }
    partitions.sort_unstable();
    partitions.dedup();
    if partitions.is_empty() {
        return Err("no partitions given".to_owned());
    }
    Ok(Partitions(partitions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("5y").is_err());
    }

    #[test]
    fn consistencies() {
        assert_eq!(
            parse_consistency("LOCAL_QUORUM"),
            Ok(Consistency::LocalQuorum)
        );
        assert!(parse_consistency("most").is_err());
    }

    #[test]
    fn partition_lists() {
        assert_eq!(parse_partitions("0-3"), Ok(Partitions(vec![0, 1, 2, 3])));
        assert_eq!(parse_partitions("5, 1,1"), Ok(Partitions(vec![1, 5])));
        assert!(parse_partitions("3-1").is_err());
        assert!(parse_partitions("8").is_err());
        assert!(parse_partitions("x").is_err());
        assert!(parse_partitions("").is_err());
    }

    #[test]
    fn only_dev_seeds_demo_data_by_default() {
        let dev = |args: &[&str]| match Cli::parse_from(args).command {
            Some(Command::Dev(args)) => args.seed(),
            other => panic!("dev: {other:?}"),
        };
        let processor = |args: &[&str]| match Cli::parse_from(args).command {
            Some(Command::Processor(args)) => args.seed,
            other => panic!("processor: {other:?}"),
        };
        assert!(
            Cli::parse_from(["fawkes"]).dev.seed(),
            "bare `fawkes` seeds"
        );
        assert!(dev(&["fawkes", "dev"]));
        assert!(!dev(&["fawkes", "dev", "--no-seed"]));
        assert!(
            !processor(&["fawkes", "processor"]),
            "a processor never seeds unasked"
        );
        assert!(processor(&["fawkes", "processor", "--seed"]));
    }

    #[test]
    fn topics_create_places_topics_as_asked() {
        let placement = |args: &[&str]| match Cli::parse_from(args).command {
            Some(Command::Topics(TopicsArgs {
                action: TopicsAction::Create(create),
                ..
            })) => create.placement(),
            other => panic!("topics create: {other:?}"),
        };
        assert_eq!(
            placement(&["fawkes", "topics", "create"]),
            TopicPlacement::default()
        );
        let production = placement(&[
            "fawkes",
            "topics",
            "create",
            "--replication-factor",
            "3",
            "--min-insync-replicas",
            "2",
        ]);
        assert_eq!(production.replication(), 3);
        assert!(production.problems().is_empty());
        assert!(
            Cli::try_parse_from(["fawkes", "topics", "create", "--replication-factor", "0"])
                .is_err()
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let cli = Cli::parse_from([
            "fawkes",
            "dev",
            "--idle-timeout-secs",
            "0",
            "--outbound-queue",
            "0",
            "--jwt-secret",
            "",
        ]);
        let Some(Command::Dev(args)) = cli.command else {
            panic!("dev")
        };
        assert_eq!(args.problems().len(), 3);
    }

    #[test]
    fn the_price_feed_is_off_unless_configured_and_checked_when_it_is() {
        let dev = |args: &[&str]| match Cli::parse_from(args).command {
            Some(Command::Dev(args)) => args,
            other => panic!("dev: {other:?}"),
        };
        let off = dev(&["fawkes", "dev", "--price-feed-url", " "]);
        assert_eq!(off.prices.config().map(|c| c.url), Ok(None));
        let on = dev(&[
            "fawkes",
            "dev",
            "--price-feed-url",
            "http://127.0.0.1:9000/prices",
            "--price-feed-timeout",
            "500ms",
            "--price-feed-failure-threshold",
            "2",
            "--price-feed-cool-down",
            "1m",
        ]);
        assert!(on.problems().is_empty(), "{:?}", on.problems());
        let config = on.prices.config().expect("valid");
        assert_eq!(
            config.url.map(|u| u.to_string()).as_deref(),
            Some("http://127.0.0.1:9000/prices")
        );
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.failure_threshold, 2);
        assert_eq!(config.cool_down, Duration::from_secs(60));
        let bad = dev(&[
            "fawkes",
            "dev",
            "--price-feed-url",
            "https://prices.example/",
            "--price-feed-timeout",
            "9s",
            "--price-feed-failure-threshold",
            "0",
            "--price-feed-cool-down",
            "0s",
        ]);
        let problems = bad.problems();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("not an http:// URL"), "{problems:?}");
        assert!(
            problems[3].contains("under FAWKES_REPLY_TIMEOUT"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_drain_window_and_timeout_are_set_and_checked_together() {
        let dev = |args: &[&str]| match Cli::parse_from(args).command {
            Some(Command::Dev(args)) => args,
            other => panic!("dev: {other:?}"),
        };
        let defaults = dev(&["fawkes", "dev"]);
        assert!(defaults.problems().is_empty(), "{:?}", defaults.problems());
        let config = defaults
            .socket
            .connector_config("c".into(), JwtSecret::new("s"));
        assert_eq!(config.drain_window, Duration::from_secs(5));
        assert_eq!(config.drain_timeout, Duration::from_secs(10));
        let set = dev(&[
            "fawkes",
            "dev",
            "--drain-window",
            "20s",
            "--drain-timeout",
            "30s",
        ]);
        assert!(set.problems().is_empty(), "{:?}", set.problems());
        let config = set.socket.connector_config("c".into(), JwtSecret::new("s"));
        assert_eq!(config.drain_window, Duration::from_secs(20));
        assert_eq!(config.drain_timeout, Duration::from_secs(30));
        let tight = dev(&["fawkes", "dev", "--drain-window", "9s"]);
        let problems = tight.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("FAWKES_DRAIN_TIMEOUT"), "{problems:?}");
    }
}
