//! The node's log: human text or one JSON record a line (`--log-format`),
//! and what a panic writes before the process aborts.
//!
//! Rules:
//! 1. Colour only for a person at a terminal: journald and files get plain
//!    text.
//! 2. With JSON logs, a panic is one JSON record too (level `ERROR`, target
//!    `caxton::panic`, the thread, where, the message and, when
//!    `RUST_BACKTRACE` asks for it, the backtrace in one field), so a log
//!    pipeline that parses every line sees it; with text logs, Rust's usual
//!    report.
//! 3. Any panic, on any thread, ends the process (docs/OPERATING.md): a node
//!    with one shard gone would look alive to its peers while it could no
//!    longer serve, whereas a crash is seen at once and a restart repairs
//!    it. (This rather than `panic = "abort"` in the release profile, which
//!    would build every dependency twice for `cargo test`, whose harness
//!    unwinds.)

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The format `init` chose, for the panic hook (rule 2).
static JSON: AtomicBool = AtomicBool::new(false);

const ABORTING: &str = "a thread panicked: aborting the process (a restart repairs it; nothing committed is lost)";

/// Installs the log subscriber, filtered by `CAXTON_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAXTON_LOG").unwrap_or_else(|_| "info".into());
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Makes every panic end the process, reported as rule 2 says.
pub fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if JSON.load(Ordering::Relaxed) {
            let thread = std::thread::current();
            let message =
                info.payload().downcast_ref::<&str>().copied().or_else(|| info.payload().downcast_ref::<String>().map(String::as_str)).unwrap_or("(not text)");
            let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
            let backtrace = std::backtrace::Backtrace::capture();
            let backtrace = (backtrace.status() == std::backtrace::BacktraceStatus::Captured).then(|| backtrace.to_string());
            tracing::error!(
                target: "caxton::panic",
                thread = thread.name().unwrap_or("unnamed"),
                location = location.as_str(),
                panic = message,
                backtrace = backtrace.as_deref(),
                "{ABORTING}"
            );
        } else {
            report(info);
            eprintln!("caxton: {ABORTING}");
        }
        std::process::abort();
    }));
}
