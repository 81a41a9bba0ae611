//! The command line. Every flag has a `FAWKES_*` environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use connector::JwtSecret;

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
    /// Mint a development JWT.
    Token(TokenArgs),
}

/// Settings of `fawkes dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, env = "FAWKES_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// Directory for the embedded log and store.
    #[arg(long, env = "FAWKES_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Do not create the demo campaigns.
    #[arg(long, env = "FAWKES_NO_SEED")]
    pub no_seed: bool,
    /// HS256 secret for socket and API tokens; a development secret is used when absent.
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
}

impl DevArgs {
    /// Every problem with these settings, so all can be fixed at once.
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
        if self.jwt_secret.as_deref() == Some("") {
            problems.push("FAWKES_JWT_SECRET is set but empty".to_owned());
        }
        problems
    }

    /// The JWT secret, and whether it is the development default.
    pub fn secret(&self) -> (JwtSecret, bool) {
        match &self.jwt_secret {
            Some(secret) => (JwtSecret::new(secret.clone()), false),
            None => (JwtSecret::new(DEV_JWT_SECRET), true),
        }
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
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

/// Parses a lifetime such as `90s`, `15m`, `1h` or `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a lifetime like 90s, 15m, 1h or 7d"))?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{unit}` is not a unit: use s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
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
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("5y").is_err());
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
}
