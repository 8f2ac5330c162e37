//! Word that events were committed, so consumers of the tail wake up
//! when there is something to read instead of only on a timer.
//!
//! Appends made by this process are announced as they commit. Appends
//! made by other processes on the same PostgreSQL database arrive through
//! `LISTEN`/`NOTIFY` (see `keyledger_workers::CommitSignal`), which
//! announces them with [`committed_elsewhere`]. Consumers still poll at
//! their idle interval, so a lost notice only costs latency.

use std::sync::LazyLock;

use tokio::sync::watch;

/// The PostgreSQL channel processes tell each other of commits on.
pub const COMMITS_CHANNEL: &str = "keyledger_commits";

/// Any commit seen by this process, its own or another's.
static ANY: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);
/// Commits made by this process, for passing on to the others.
static LOCAL: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// Changes whenever events were committed; `changed()` on it ends a wait.
pub fn commits() -> watch::Receiver<u64> {
    ANY.subscribe()
}

/// Changes whenever this process committed events.
pub fn local_commits() -> watch::Receiver<u64> {
    LOCAL.subscribe()
}

/// How many commits this process has seen announced, its own and (on
/// PostgreSQL) other processes': a reader that remembers it can tell
/// whether anything was announced since.
pub(crate) fn generation() -> u64 {
    *ANY.borrow()
}

/// This process committed events.
pub(crate) fn committed_here() {
    LOCAL.send_modify(|n| *n = n.wrapping_add(1));
    ANY.send_modify(|n| *n = n.wrapping_add(1));
}

/// Another process committed events.
pub fn committed_elsewhere() {
    ANY.send_modify(|n| *n = n.wrapping_add(1));
}
