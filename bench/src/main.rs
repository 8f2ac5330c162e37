//! `keyledger-bench <scenario>`: drives a real keyledger server over HTTP
//! from this process and, in the same run, the raw baselines of the same
//! work, and reports each figure beside its baseline as a ratio, which
//! survives a noisy machine where absolute numbers don't.
//!
//! The server and each baseline run as child processes of this binary
//! (hidden subcommands), so load generator and server never share a
//! runtime. Everything listens on 127.0.0.1 and every run stops by itself.

mod baseline;
mod calibrate;
mod cpu;
mod dialects;
mod fan_out;
mod lag;
mod load;
mod mixed;
mod panel;
mod replay;
mod scale;
mod scenario;
mod search;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The keyledger binary's allocator, so the keyledger this binary serves
/// is the one that ships, and the baselines it serves use the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The first argument that makes this binary a keyledger server.
pub const SERVE_KEYLEDGER: &str = "__serve-keyledger";
/// The first argument that makes this binary a raw baseline server.
pub const BASELINE: &str = "__baseline";
/// The first argument that makes this binary rebuild keyledger's read
/// models and print how long the rebuild took.
pub const REBUILD_KEYLEDGER: &str = "__rebuild-keyledger";
/// The first argument that makes this binary run `keyledger audit verify`
/// over the whole log and print how long it took.
pub const VERIFY_KEYLEDGER: &str = "__verify-keyledger";

/// A baseline server's own arguments.
#[derive(Parser)]
struct BaselineArgs {
    #[arg(long, value_enum)]
    kind: baseline::Kind,
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Validate,
    Activate,
    Mixed,
    History,
    Replay,
    Lag,
    Calibrate,
    Webhooks,
    Dialects,
    Search,
    Panel,
    Scale,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // A keyledger server, configured by KEYLEDGER_* variables: the
        // same code as the `keyledger` binary, in a process of its own.
        Some(SERVE_KEYLEDGER) => {
            let config = keyledger_api::Cli::parse_from(["keyledger"]).config;
            let app = keyledger_api::Application::build(config).await.expect("keyledger starts");
            app.run_until(std::future::pending()).await.expect("keyledger serves");
        }
        Some(REBUILD_KEYLEDGER) => {
            let config = keyledger_api::Cli::parse_from(["keyledger"]).config;
            let started = std::time::Instant::now();
            let licenses = keyledger_api::rebuild_projections(&config, None).await.expect("rebuild");
            let seconds = started.elapsed().as_secs_f64();
            println!("{}", serde_json::json!({"licenses": licenses, "seconds": seconds}));
        }
        Some(VERIFY_KEYLEDGER) => {
            let config = keyledger_api::Cli::parse_from(["keyledger"]).config;
            let started = std::time::Instant::now();
            let (report, _) = keyledger_api::verify_log(&config, None, None).await.expect("verify");
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({"events": report.events, "licenses": report.licenses, "broken": report.broken.len(), "seconds": seconds})
            );
        }
        Some(BASELINE) => {
            let BaselineArgs { kind, listen, database_url } = BaselineArgs::parse_from(&args[1..]);
            baseline::serve(kind, listen, database_url).await;
        }
        _ => return scenario::run(scenario::Options::parse()).await,
    }
    std::process::ExitCode::SUCCESS
}

/// Where this binary is, to start its children from.
fn this_binary() -> PathBuf {
    std::env::current_exe().expect("the bench knows its own path")
}
