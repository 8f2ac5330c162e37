//! The `keyledger` binary: parse settings, start, stop on a signal.

use clap::Parser;
use keyledger_api::{rebuild_projections, Application, Cli, Command, Config, ProjectionsAction};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_env("KEYLEDGER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Projections { action: ProjectionsAction::Rebuild } => rebuild(cli.config).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
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
