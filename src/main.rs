//! The `tablewire` binary: parses flags and environment, then runs the chosen component.
//! All behaviour lives in the library crates (`tablewire-edge`, `tablewire-handlers`,
//! `tablewire-nats`, `tablewire-bench`); `dev` wires them together in one process.

mod backlog_metrics;
mod cli;
mod config_file;
mod dev;
mod inspect;
mod logging;
mod metrics_http;
mod run;
mod status;

use cli::{Command, ConfigCommand};

// Handlers build and drop many small JSON values per command; with glibc's allocator, malloc
// and free were ~40% of a collab handler's CPU in a profile. mimalloc's per-thread pools cut
// that (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = match config_file::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("tablewire: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    logging::init(&cli.log, &cli.log_format);
    // Every component holds sockets (an edge one per client, dev's nats-server one per
    // connection): use the open files the hard limit allows, not a shell's soft 1,024.
    match tablewire_edge::admission::raise_open_file_limit() {
        Ok(Some((before, after))) if after > before => {
            tracing::debug!(before, after, "raised the soft limit of open files");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the soft limit of open files"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tablewire: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Edge(args) => run::edge(args).await,
            Command::Handler(args) => run::handler(args).await,
            Command::Provision(args) => run::provision(args).await,
            Command::Token(args) => run::token(args),
            Command::Bench(args) => {
                // Interrupted (Ctrl-C, SIGTERM), the benchmark is dropped, and with it the
                // processes it started: none is left behind.
                let mut stop = run::shutdown_signal();
                tokio::select! {
                    result = tablewire_bench::run(args) => result,
                    _ = stop.wait_for(|stopped| *stopped) => {
                        Err(anyhow::anyhow!("benchmark interrupted"))
                    }
                }
            }
            Command::Transcriber(args) => run::transcriber(args).await,
            Command::Config(args) => match args.command {
                ConfigCommand::Check { file, command } => config_file::check(&file, &command),
            },
            Command::Status(args) => status::run(args).await,
            Command::Inspect(args) => inspect::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tablewire: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
