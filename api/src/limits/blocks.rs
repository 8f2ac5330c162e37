//! Progressive blocks: an address whose calls keep failing the way
//! guessing does (unknown or malformed license keys, failed
//! authentication) or that keeps running into its rate limit is blocked,
//! and each block lasts twice the one before, from a base to a maximum.
//! After a quiet period with no block the address starts from the base
//! again.
//!
//! Failures are counted per process (a token bucket of `after` a minute).
//! Blocks are shared: each is written to `address_blocks`, which every
//! process reads each second, so a block made by one process holds in all
//! of them within about a second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keyledger_app::blocks::{AddressBlock, BlockStore, BlockStoreError};

use super::buckets::Buckets;

#[derive(Debug, Clone, Copy)]
pub struct BlockSettings {
    /// Failures a minute an address may have before it is blocked.
    pub after_failures: u32,
    pub base: Duration,
    pub max: Duration,
    /// A quiet period after which the next block starts from the base.
    pub decay: Duration,
}

pub struct Blocks {
    settings: BlockSettings,
    store: BlockStore,
    failures: Buckets<IpAddr>,
    active: RwLock<HashMap<IpAddr, DateTime<Utc>>>,
    /// Whether `active` holds anything: the common case, none, costs no lock.
    any_active: std::sync::atomic::AtomicBool,
    pub made: AtomicU64,
}

impl Blocks {
    pub fn new(store: BlockStore, settings: BlockSettings, max_counted: usize) -> Self {
        Self {
            failures: Buckets::new(settings.after_failures, max_counted),
            settings,
            store,
            active: RwLock::default(),
            any_active: std::sync::atomic::AtomicBool::new(false),
            made: AtomicU64::new(0),
        }
    }

    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    pub fn evicted(&self) -> u64 {
        self.failures.evicted()
    }

    /// How long `ip` stays blocked, if it is.
    pub fn blocked(&self, ip: IpAddr, now: DateTime<Utc>) -> Option<Duration> {
        if !self.any_active.load(Ordering::Relaxed) {
            return None;
        }
        let until = *self.active.read().unwrap_or_else(|p| p.into_inner()).get(&ip)?;
        (until > now).then(|| (until - now).to_std().unwrap_or_default())
    }

    pub fn active_count(&self, now: DateTime<Utc>) -> usize {
        self.active.read().unwrap_or_else(|p| p.into_inner()).values().filter(|until| **until > now).count()
    }

    /// Counts a failure of `ip`; blocks it when it has failed too often,
    /// returning the new block's length.
    pub async fn record_failure(&self, ip: IpAddr) -> Result<Option<Duration>, BlockStoreError> {
        let take = self.failures.take(&ip, Instant::now());
        if take.allowed {
            return Ok(None);
        }
        self.block(ip).await.map(Some)
    }

    async fn block(&self, ip: IpAddr) -> Result<Duration, BlockStoreError> {
        let now = Utc::now();
        let address = ip.to_string();
        let decay = chrono::Duration::from_std(self.settings.decay).unwrap_or_default();
        let level = match self.store.address_block(&address).await? {
            Some(previous) if previous.until > now => {
                // Blocked already, by another process a moment ago.
                self.active.write().unwrap_or_else(|p| p.into_inner()).insert(ip, previous.until);
                self.any_active.store(true, Ordering::Relaxed);
                return Ok((previous.until - now).to_std().unwrap_or_default());
            }
            Some(previous) if now - previous.until < decay => previous.level + 1,
            _ => 1,
        };
        let doubling = 2u32.saturating_pow(u32::try_from(level - 1).unwrap_or(u32::MAX).min(31));
        let length = self.settings.base.saturating_mul(doubling).min(self.settings.max);
        let until = now + chrono::Duration::from_std(length).unwrap_or_default();
        self.store.put_address_block(&address, &AddressBlock { level, until }).await?;
        self.active.write().unwrap_or_else(|p| p.into_inner()).insert(ip, until);
        self.any_active.store(true, Ordering::Relaxed);
        self.made.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(address = %ip, level, seconds = length.as_secs(), "address blocked for repeated failures");
        Ok(length)
    }

    /// Takes in every block in force, from whichever process made it, and
    /// forgets those that ended. Also sweeps idle failure counts.
    pub async fn poll(&self) -> Result<(), BlockStoreError> {
        let now = Utc::now();
        let active = self
            .store
            .address_blocks_in_force(now)
            .await?
            .into_iter()
            .filter_map(|(address, until)| Some((address.parse().ok()?, until)))
            .collect();
        {
            let mut held = self.active.write().unwrap_or_else(|p| p.into_inner());
            *held = active;
            self.any_active.store(!held.is_empty(), Ordering::Relaxed);
        }
        self.failures.sweep(Instant::now());
        // Rows past the decay period no longer decide a block's length.
        let forget_before = now - chrono::Duration::from_std(self.settings.decay).unwrap_or_default();
        self.store.forget_address_blocks(forget_before).await
    }
}
