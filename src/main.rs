//! The `hubbub` binary: reads the configuration, raises the open-files limit, serves until
//! SIGINT or SIGTERM, and exits 0 after a graceful shutdown.

use clap::Parser;
use hubbub::{
    config::{Args, Config, LogFormat},
    server::{raise_fd_limit, shutdown_signal, FD_RESERVE},
    Hubbub,
};

fn main() -> std::process::ExitCode {
    // One core (e.g. pinned with taskset): a current-thread runtime serves connections in
    // FIFO order; the work-stealing scheduler's LIFO slot and overflow queue let a few
    // connections run ahead of the others when one worker is saturated.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build().expect("the tokio runtime");
    runtime.block_on(run())
}

async fn run() -> std::process::ExitCode {
    ignore_file_size_signal();
    let args = Args::parse();
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hubbub: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logs(config.log_format);
    match raise_fd_limit() {
        Some(limit) => {
            let ceiling = limit.saturating_sub(FD_RESERVE);
            tracing::info!("open-files limit {limit}: about {ceiling} connections at most");
            if config.max_connections as u64 > ceiling {
                tracing::warn!(
                    "max_connections is {} but the open-files limit allows about {ceiling}",
                    config.max_connections
                );
            }
        }
        None => tracing::warn!("could not read or raise the open-files limit"),
    }
    let listener = match hubbub::server::bind(config.bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hubbub: cannot listen on {}: {e}", config.bind);
            return std::process::ExitCode::from(1);
        }
    };
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!("hubbub listening on {scheme}://{}", config.bind);
    let hubbub = match Hubbub::try_new(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("hubbub: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let app = hubbub.router();
    match hubbub.serve(listener, app, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubbub: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Logs to standard output, filtered by `RUST_LOG` (default `info`): text, coloured only
/// when standard output is a terminal (and `NO_COLOR` is unset), or one JSON object a line.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        _ => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init()
        }
    }
}

/// A write past the process's file-size limit (`ulimit -f`) raises SIGXFSZ, whose default
/// action ends the process. Taking the signal turns such a write into an error the store
/// reports (`unavailable`), like a full disk, instead.
fn ignore_file_size_signal() {
    #[cfg(target_os = "linux")]
    {
        const SIGXFSZ: i32 = 25;
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut s) = signal(SignalKind::from_raw(SIGXFSZ)) {
            tokio::spawn(async move { while s.recv().await.is_some() {} });
        }
    }
}
