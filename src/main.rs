//! The `imlogin` binary: parses the CLI, loads config, starts telemetry, builds the app and waits.

use std::process::ExitCode;

use clap::Parser;
use imlogin::app::{shutdown_signal, Application};
use imlogin::cli::{Cli, Command};
use imlogin::config::Settings;

/// mimalloc: logins allocate many small, short-lived objects across threads; glibc malloc spent ~15 % of a
/// login's CPU time (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    imlogin::app::tune_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        other => imlogin::cli::run_offline(other),
    }
}

fn serve(config: Option<std::path::PathBuf>) -> ExitCode {
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::from(2);
        }
    };
    let log = imlogin::app::telemetry::init(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let shutdown = shutdown_signal();
        imlogin::app::raise_open_files_limit();
        for public in settings.public_secrets() {
            tracing::warn!(
                key = %public.key,
                from = public.from,
                "a public example secret is in use: for trying only, replace it"
            );
        }
        let mut app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        app.reload_on_sighup(config, log);
        match app.run_until_stopped(shutdown).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}
