//! Tells the other processes on a PostgreSQL database of this process's
//! commits, and this process of theirs, with `LISTEN`/`NOTIFY`, so their
//! consumers wake up as soon as there is something to read.
//!
//! Notices are coalesced: however many events this process commits, it
//! sends at most one notice per [`COALESCE`]. They carry nothing; a
//! consumer woken by one reads the tail as it would after its poll
//! interval, so a lost notice only costs latency. SQLite has one process
//! per database and needs none of this.

use std::time::Duration;

use keyledger_eventlog::{committed_elsewhere, local_commits, COMMITS_CHANNEL};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use crate::runtime::{Consumer, ConsumerError, Step};

/// The shortest time between two notices from this process.
const COALESCE: Duration = Duration::from_millis(5);
/// How long one step waits for something to pass on, so that shutdown
/// never waits on a quiet database for longer than this.
const STEP_WAIT: Duration = Duration::from_millis(500);

/// The name it runs under.
pub const COMMIT_SIGNAL: &str = "commit-signal";

pub struct CommitSignal {
    pool: PgPool,
    listener: Option<PgListener>,
    local: watch::Receiver<u64>,
}

impl CommitSignal {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, listener: None, local: local_commits() }
    }
}

impl Consumer for CommitSignal {
    async fn start(&mut self) -> Result<(), ConsumerError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(COMMITS_CHANNEL).await?;
        self.listener = Some(listener);
        // Whatever was committed while not listening is read by polls.
        committed_elsewhere();
        Ok(())
    }

    async fn step(&mut self) -> Result<Step, ConsumerError> {
        let listener = self.listener.as_mut().ok_or("not listening")?;
        tokio::select! {
            notice = listener.recv() => {
                notice?;
                committed_elsewhere();
            }
            changed = self.local.changed() => {
                changed?;
                tokio::time::sleep(COALESCE).await;
                // Marks what gathered meanwhile as passed on too.
                self.local.borrow_and_update();
                sqlx::query("SELECT pg_notify($1, '')").bind(COMMITS_CHANNEL).execute(&self.pool).await?;
            }
            _ = tokio::time::sleep(STEP_WAIT) => {}
        }
        Ok(Step::Busy)
    }
}
