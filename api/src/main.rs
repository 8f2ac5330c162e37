//! The `keyledger` binary: parse settings, start, stop on a signal.

use clap::Parser;
use std::process::ExitCode;

use keyledger_api::{rebuild_projections, verify_log, Application, AuditAction, Cli, Command, Config, ProjectionsAction};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("KEYLEDGER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await.map(|()| ExitCode::SUCCESS),
        Command::Projections { action: ProjectionsAction::Rebuild } => {
            rebuild(cli.config).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Audit { action: AuditAction::Verify { license } } => verify(cli.config, license.as_deref()).await,
    };
    outcome.unwrap_or_else(|error| {
        tracing::error!("{error}");
        ExitCode::FAILURE
    })
}

/// Prints one line per broken chain; exit status 1 when there is any.
async fn verify(config: Config, license: Option<&str>) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let report = verify_log(&config, license).await?;
    for broken in &report.broken {
        println!("BROKEN license {}: {}", broken.license_id, serde_json::to_string(&broken.first_break)?);
    }
    let verdict = if report.broken.is_empty() { "OK" } else { "TAMPERED" };
    println!(
        "{verdict}: {} licenses, {} events checked, {} broken chains",
        report.licenses,
        report.events,
        report.broken.len()
    );
    Ok(if report.broken.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn rebuild(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let licenses = rebuild_projections(&config).await?;
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
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
