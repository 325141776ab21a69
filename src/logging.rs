//! Logging to stderr: `RUST_LOG` filters (default `info`, librqbit at `warn`); `-logFormat=text`
//! colours only when stderr is a terminal (and `NO_COLOR` is unset), `-logFormat=json` writes
//! one JSON object per line for log shippers (journald, Loki, …).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

const DEFAULT_FILTER: &str = "info,librqbit=warn,librqbit_dht=warn,librqbit_tracker_comms=warn";

/// Whether text logs get ANSI colours.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber; `format` is `text` or `json` (the flag allows nothing else).
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| DEFAULT_FILTER.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder
            .json()
            .with_ansi(false)
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        builder.with_ansi(colour()).init();
    }
}
