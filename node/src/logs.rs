//! Logging: tracing to standard error, as text for people or as JSON for log collectors.
//!
//! `hearth run --log-format json` (or `HEARTH_LOG_FORMAT=json`, which other commands follow
//! too) writes one JSON object per line: `timestamp`, `level`, `target` and the event's
//! fields (`message`, `peer`, `record`, counts) at the top level. The filter is `HEARTH_LOG`
//! (tracing's `EnvFilter` syntax), else the command's default. Logs carry peer ids, record ids,
//! counts and reasons; never record content, keys or tokens, whatever the format.

use clap::ValueEnum;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The format `HEARTH_LOG_FORMAT` asks for (text if unset or not understood).
    pub fn from_env() -> LogFormat {
        match std::env::var("HEARTH_LOG_FORMAT").ok().as_deref() {
            Some(v) => LogFormat::from_str(v.trim(), true).unwrap_or_default(),
            None => LogFormat::Text,
        }
    }
}

/// The daemon's default filter: it logs its network events (peers, rounds; never content).
pub const DAEMON_FILTER: &str = "warn,hearth_node=info,sled=off";

/// Every other command's default filter.
pub const COMMAND_FILTER: &str = "warn,sled=off";

/// Installs the daemon's text subscriber, its lines filtered by [`DAEMON_FILTER`] and written
/// nowhere, beside `extra`, a layer with a filter of its own: for a benchmark running nodes in
/// its own process, so that it does the work the daemon's logging does (spans and events
/// filtered, lines formatted) without printing them, and records what `extra` records (the
/// benchmark's record of an edit's stages, [`crate::live::EDIT_STAGES`]).
///
/// Records of the `log` crate (yamux and sled write theirs there) are passed on up to the
/// level the daemon's filter lets through, as [`init`] passes them for the daemon, whatever
/// `extra` asks for: a layer wanting `TRACE` events of one target would otherwise have every
/// `log::trace!` of yamux, for every frame, checked against both filters, work the daemon
/// never does.
pub fn init_discarded_with<L>(extra: L)
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_log::AsLog;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::new(DAEMON_FILTER);
    let as_daemon = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE)
        .as_log();
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_ansi(false)
        .with_filter(filter);
    let subscriber = tracing_subscriber::registry().with(extra).with(lines);
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(as_daemon)
            .init();
    }
}

/// Installs the process's subscriber: `format`, filtered by `HEARTH_LOG` or else by
/// `default_filter`, written to standard error.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Prints the one-line reason a command failed, in `format` (a JSON line carries the exit
/// code too). The reason never holds content: see [`crate::fail`].
pub fn print_failure(format: LogFormat, message: &str, exit_code: u8) {
    match format {
        LogFormat::Text => eprintln!("error: {message}"),
        LogFormat::Json => {
            let line = serde_json::json!({
                "timestamp": jiff::Timestamp::now().to_string(),
                "level": "ERROR",
                "target": "hearth",
                "message": message,
                "exit_code": exit_code,
            });
            eprintln!("{line}");
        }
    }
}
