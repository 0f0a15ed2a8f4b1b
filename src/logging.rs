//! Sets up logging for every subcommand from `--log` (the filter) and `--log-format`: `text`
//! for people, `json` (one object per line, the event's fields at the top level) for log
//! collectors. Called once by `main`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init(filter: &str, format: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        builder.with_target(false).init();
    }
}
