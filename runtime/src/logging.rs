//! The `tracing` subscriber: text or JSON lines, filtered by `RUST_LOG`.
//!
//! The environment names are the ones the deployments already set: `RUST_LOG` for the filter,
//! `LOG_FORMAT` (`text` or `json`, the handler's) and `LOG_JSON` (a flag, the controller's and
//! the webhook's). Every binary accepts both, so no manifest has to change.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

use crate::Error;

/// The filter used when `RUST_LOG` is unset or unreadable.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The logging flags every binary flattens into its own arguments
/// (`#[command(flatten)] log: LogArgs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log as JSON lines (the same as `--log-format json`). From the environment any value but
    /// `false`, `no`, `off`, `0` or empty counts, so `LOG_JSON=1` works too.
    #[arg(long, env = "LOG_JSON", value_parser = clap::builder::FalseyValueParser::new())]
    pub log_json: bool,
}

impl LogArgs {
    /// The format these flags ask for: JSON when either flag says so.
    pub fn format(&self) -> LogFormat {
        if self.log_json {
            LogFormat::Json
        } else {
            self.log_format
        }
    }

    /// Installs the subscriber in [`Self::format`] with the default level `info`.
    pub fn init(&self) -> Result<(), Error> {
        init_logging(self.format(), DEFAULT_LOG_LEVEL)
    }
}

/// The filter: `RUST_LOG` when it is set and valid, else `default_directives`.
fn filter(default_directives: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directives))
}

/// Installs the global `tracing` subscriber writing `format` lines to stdout (coloured only on a
/// terminal), filtered by `RUST_LOG` or else by `default_directives` (e.g. `"info"` or
/// `"info,kube=warn"`).
///
/// Fails only when a global subscriber is already installed (a second call in one process).
pub fn init_logging(format: LogFormat, default_directives: &str) -> Result<(), Error> {
    // Colours only on a terminal: in a pod's log (a pipe) escape codes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default_directives))
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .map_err(|e| Error::InstallLogSubscriber {
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use rstest::rstest;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    #[rstest]
    #[case(&[], LogFormat::Text)]
    #[case(&["--log-format", "json"], LogFormat::Json)]
    #[case(&["--log-format", "text"], LogFormat::Text)]
    #[case(&["--log-json"], LogFormat::Json)]
    #[case(&["--log-format", "text", "--log-json"], LogFormat::Json)]
    fn flags_choose_the_format(#[case] args: &[&str], #[case] want: LogFormat) {
        let cli = Cli::try_parse_from(std::iter::once("bin").chain(args.iter().copied())).unwrap();
        assert_eq!(cli.log.format(), want);
    }

    #[test]
    fn an_unknown_format_is_refused_with_the_choices() {
        let err = Cli::try_parse_from(["bin", "--log-format", "yaml"]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("yaml") && text.contains("text") && text.contains("json"),
            "{text}"
        );
    }

    #[test]
    fn the_format_parses_as_a_value_enum() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("TEXT", true), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("yaml", false).is_err());
    }

    #[test]
    fn a_second_subscriber_is_refused() {
        // The first call may lose against another test of this binary; the second never wins.
        let _ = init_logging(LogFormat::Text, DEFAULT_LOG_LEVEL);
        let err = init_logging(LogFormat::Json, DEFAULT_LOG_LEVEL).unwrap_err();
        assert_eq!(err.category(), "install-log-subscriber");
    }
}
