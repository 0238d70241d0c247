//! Where log lines go and in which shape: human text (the default) or one JSON object per
//! line for a log shipper (`--log-format json`). Both go to standard error, which systemd's
//! journal captures as it does standard output.

use clap::ValueEnum;

/// The shape of each log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines: time, level, target, message and fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, and `fields` holding
    /// `message` and the event's other fields.
    Json,
}

/// Installs the global subscriber once; later calls (tests that start several nodes in one
/// process) keep the first.
pub fn init(filter: &str, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        // No ANSI colours inside JSON strings, and no span lists: each line stands alone.
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
