//! Usage over time: each tenant's activations and validations per hour,
//! for the panel's charts.
//!
//! The client path counts in memory ([`UsageCounts::count`]: one short
//! lock, no allocation once the tenant has a count this hour), and a
//! supervised consumer adds what was counted to `usage_hourly` every few
//! seconds ([`UsageStore::add`]), so a validation never waits for a
//! write. Every process adds its own counts to the same rows. These are
//! statistics, not the record (the log is): a process killed outright
//! loses the few seconds it had not written yet.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use keyledger_eventlog::{on_pool, Database};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A machine took a seat.
    Activation,
    /// A validation or heartbeat check of a license (valid or refused).
    Validation,
}

/// One hour's counts of a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hour {
    /// The hour's start, in seconds since the epoch.
    pub start: i64,
    pub activations: i64,
    pub validations: i64,
}

/// Counts not written yet, per tenant, per hour (almost always one hour).
#[derive(Default)]
pub struct UsageCounts {
    pending: Mutex<HashMap<String, Vec<Hour>>>,
}

/// The start of the hour of `at`, in seconds since the epoch.
pub fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600) * 3600
}

impl UsageCounts {
    pub fn count(&self, tenant_id: &str, usage: Usage, at: DateTime<Utc>) {
        let start = hour_of(at);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let hours = match pending.get_mut(tenant_id) {
            Some(hours) => hours,
            None => pending.entry(tenant_id.to_owned()).or_default(),
        };
        let hour = match hours.iter_mut().rev().find(|hour| hour.start == start) {
            Some(hour) => hour,
            None => {
                hours.push(Hour { start, ..Hour::default() });
                hours.last_mut().expect("just pushed")
            }
        };
        match usage {
            Usage::Activation => hour.activations += 1,
            Usage::Validation => hour.validations += 1,
        }
    }

    /// Everything counted and not yet taken.
    pub fn take(&self) -> HashMap<String, Vec<Hour>> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts counts back that could not be written (they go with the next).
    pub fn restore(&self, counts: HashMap<String, Vec<Hour>>) {
        for (tenant_id, hours) in counts {
            for hour in hours {
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                let kept = pending.entry(tenant_id.clone()).or_default();
                match kept.iter_mut().find(|kept| kept.start == hour.start) {
                    Some(kept) => {
                        kept.activations += hour.activations;
                        kept.validations += hour.validations;
                    }
                    None => kept.push(hour),
                }
            }
        }
    }
}

/// The `usage_hourly` table.
#[derive(Clone)]
pub struct UsageStore {
    db: Database,
}

impl UsageStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Adds the counts to the stored hours, in one transaction.
    pub async fn add(&self, counts: &HashMap<String, Vec<Hour>>) -> Result<(), sqlx::Error> {
        const SQL: &str = "INSERT INTO usage_hourly (tenant_id, hour_start, activations, validations) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, hour_start) DO UPDATE \
             SET activations = usage_hourly.activations + excluded.activations, \
                 validations = usage_hourly.validations + excluded.validations";
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for (tenant_id, hours) in counts {
                for hour in hours {
                    sqlx::query(SQL)
                        .bind(tenant_id)
                        .bind(hour.start)
                        .bind(hour.activations)
                        .bind(hour.validations)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await
        })
    }

    /// The tenant's hours from `from` (an hour's start) on, oldest first;
    /// hours without use are absent.
    pub async fn hours(&self, tenant_id: &str, from: i64) -> Result<Vec<Hour>, sqlx::Error> {
        const SQL: &str = "SELECT hour_start, activations, validations FROM usage_hourly \
             WHERE tenant_id = $1 AND hour_start >= $2 ORDER BY hour_start";
        let rows: Vec<(i64, i64, i64)> =
            on_pool!(&self.db, pool => sqlx::query_as(SQL).bind(tenant_id).bind(from).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(start, activations, validations)| Hour { start, activations, validations }).collect())
    }
}

/// `hours` in buckets of `width` seconds, `buckets` of them ending with
/// the one holding `now`: each bucket's start and sums, oldest first.
pub fn buckets(hours: &[Hour], now: DateTime<Utc>, width: i64, buckets: usize) -> Vec<Hour> {
    let last = now.timestamp().div_euclid(width) * width;
    let first = last - width * (buckets as i64 - 1);
    let mut out: Vec<Hour> =
        (0..buckets as i64).map(|n| Hour { start: first + n * width, ..Hour::default() }).collect();
    for hour in hours {
        if hour.start < first {
            continue;
        }
        let index = ((hour.start - first) / width) as usize;
        if let Some(bucket) = out.get_mut(index) {
            bucket.activations += hour.activations;
            bucket.validations += hour.validations;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn counts_go_to_their_tenant_and_hour_and_come_back_when_unwritten() {
        let counts = UsageCounts::default();
        counts.count("t1", Usage::Validation, at(7200 + 5));
        counts.count("t1", Usage::Validation, at(7200 + 3599));
        counts.count("t1", Usage::Activation, at(10_800));
        counts.count("t2", Usage::Validation, at(7200));
        let taken = counts.take();
        assert_eq!(
            taken["t1"],
            vec![
                Hour { start: 7200, activations: 0, validations: 2 },
                Hour { start: 10_800, activations: 1, validations: 0 }
            ]
        );
        assert_eq!(taken["t2"], vec![Hour { start: 7200, activations: 0, validations: 1 }]);
        assert!(counts.take().is_empty());
        counts.count("t1", Usage::Validation, at(7200));
        counts.restore(taken);
        assert_eq!(counts.take()["t1"][0], Hour { start: 7200, activations: 0, validations: 3 });
    }

    #[test]
    fn buckets_sum_the_hours_they_cover_and_drop_older_ones() {
        let hours = [
            Hour { start: 0, activations: 9, validations: 9 },
            Hour { start: 86_400, activations: 1, validations: 2 },
            Hour { start: 90_000, activations: 3, validations: 4 },
            Hour { start: 172_800, activations: 5, validations: 6 },
        ];
        let days = buckets(&hours, at(172_800 + 60), 86_400, 2);
        assert_eq!(
            days,
            vec![
                Hour { start: 86_400, activations: 4, validations: 6 },
                Hour { start: 172_800, activations: 5, validations: 6 }
            ]
        );
    }
}
