//! The `keyledger` binary: parse settings, start, stop on a signal.

use clap::Parser;
use std::path::Path;
use std::process::ExitCode;

use keyledger_eventlog::{CheckpointCheck, SignedCheckpoint};

use keyledger_api::{
    rebuild_projections, verify_log, Application, AuditAction, Cli, Command, Config, ProjectionsAction,
};
use tracing_subscriber::EnvFilter;

/// See the workspace manifest: the request paths' many small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // PostgreSQL's notices (such as "relation _sqlx_migrations already
    // exists, skipping" on every start) are noise at info.
    let filter = EnvFilter::try_from_env("KEYLEDGER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{}", keyledger_eventlog::QUIET_DATABASE_NOTICES)));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await.map(|()| ExitCode::SUCCESS),
        Command::Projections { action: ProjectionsAction::Rebuild { name } } => {
            rebuild(cli.config, name.as_deref()).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Configuration => {
            print!("{}", keyledger_api::configuration_reference());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { action: AuditAction::Verify { license, checkpoint, public_key } } => {
            verify(cli.config, license.as_deref(), checkpoint.as_deref(), public_key.as_deref()).await
        }
    };
    outcome.unwrap_or_else(|error| {
        tracing::error!("{}", keyledger_app::client::error_chain(&*error));
        ExitCode::FAILURE
    })
}

/// Prints one line per broken chain and the checkpoint's outcome; exit
/// status 1 when anything is wrong.
async fn verify(
    config: Config,
    license: Option<&str>,
    checkpoint_file: Option<&Path>,
    public_key: Option<&str>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let checkpoint: Option<SignedCheckpoint> = match checkpoint_file {
        Some(path) => Some(serde_json::from_str(&std::fs::read_to_string(path)?)?),
        None => None,
    };
    let trusted = checkpoint.as_ref().zip(public_key);
    let (report, check) = verify_log(&config, license, trusted).await?;
    for broken in &report.broken {
        let kind = broken.aggregate_type.to_lowercase();
        println!("BROKEN {kind} {}: {}", broken.license_id, serde_json::to_string(&broken.first_break)?);
    }
    let chains_hold = report.broken.is_empty();
    println!(
        "{}: {} licenses, {} other chains (products), {} events checked, {} broken chains",
        if chains_hold { "OK" } else { "TAMPERED" },
        report.licenses,
        report.other_chains,
        report.events,
        report.broken.len()
    );
    let checkpoint_holds = match &check {
        None => true,
        Some(check) => {
            println!("checkpoint: {}", serde_json::to_string(check)?);
            *check == CheckpointCheck::Matches
        }
    };
    Ok(if chains_hold && checkpoint_holds { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn rebuild(config: Config, name: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let licenses = rebuild_projections(&config, name).await?;
    println!("Rebuilt read models from the event log: {licenses} licenses replayed.");
    Ok(())
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = config.data_dir.clone();
    let app = Application::build(config).await?;
    if let Some(token) = &app.new_operator_token {
        // Shown once, on the terminal only; it is also in the 0600 file.
        println!("Operator token (saved to {}/operator-token): {token}", data_dir.display());
    }
    tracing::info!(addr = %app.local_addr(), "keyledger listening");
    app.run_until(shutdown_signal()).await?;
    tracing::info!("keyledger stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let signal = tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    };
    tracing::info!(signal, "stop signal received: finishing requests in flight and the consumers' current steps");
}
