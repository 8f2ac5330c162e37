//! The data directory holds license keys, the machine-id key and the
//! operator token: nobody but its owner may read it, whatever the umask
//! the server was started under.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use super::{configure, post, start_command, Server};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// keyledger on SQLite in `data_dir`, started under umask 022 with no
/// operator token set (so it writes one to a file).
async fn start_under_umask_022(data_dir: &Path) -> Server {
    let mut command = Command::new("sh");
    command.arg("-c").arg("umask 022 && exec \"$0\"").arg(env!("CARGO_BIN_EXE_keyledger"));
    let database_url = format!("sqlite://{}/keyledger.db", data_dir.display());
    start_command(configure(command, data_dir, &database_url)).await
}

fn assert_private(data_dir: &Path) {
    assert_eq!(mode(data_dir), 0o700, "the data directory");
    let files: Vec<_> = std::fs::read_dir(data_dir).unwrap().map(|e| e.unwrap().path()).collect();
    for expected in ["keyledger.db", "keyledger.db-wal", "keyledger.db-shm", "operator-token", "checkpoint-signing-key"]
    {
        assert!(files.iter().any(|f| f.ends_with(expected)), "{expected} is missing from {files:?}");
    }
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_its_files_are_private_whatever_the_umask() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("data");
    let mut server = start_under_umask_022(&data_dir).await;
    let operator = std::fs::read_to_string(data_dir.join("operator-token")).unwrap();
    // Writes, so that SQLite's -wal and -shm files exist.
    let client = reqwest::Client::new();
    let (status, _) =
        post(&client, format!("{}/api/v1/tenants", server.base), Some(operator.trim()), json!({"name": "Acme"})).await;
    assert_eq!(status, 201);
    assert_private(&data_dir);
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    // Files an older version left readable are narrowed at the next start.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        std::fs::set_permissions(entry.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut server = start_under_umask_022(&data_dir).await;
    assert_private(&data_dir);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
