//! Token buckets by key, in bounded memory.
//!
//! Each key (a client address, or an API key's id) has a bucket of `limit`
//! tokens that refills at `limit` per minute; a request takes one. The map
//! is sharded so concurrent requests rarely wait on one lock. It never
//! holds more than `max_keys` buckets: idle ones are swept, and when a
//! flood of new keys fills it anyway, the bucket used least recently makes
//! room for the newcomer (and is counted as an eviction). Memory stays
//! bounded and a new client always has a bucket of its own: a full table
//! never shuts new clients out. The cost is that a caller evicted mid-flood
//! starts again from a full bucket.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// What a request's take from its bucket came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Take {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// Until the next token, when refused.
    pub retry_after: Duration,
}

pub struct Buckets<K> {
    limit: u32,
    max_keys: usize,
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
    hasher: RandomState,
    /// Buckets dropped to make room for a new caller.
    evicted: AtomicU64,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(limit_per_minute: u32, max_keys: usize) -> Self {
        Self {
            limit: limit_per_minute.max(1),
            max_keys: max_keys.max(SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            evicted: AtomicU64::new(0),
        }
    }

    fn per_second(&self) -> f64 {
        f64::from(self.limit) / 60.0
    }

    /// Shards by a hash keyed per process, so nobody can pick addresses
    /// that all land in one shard and fill it.
    fn shard(&self, key: &K) -> &Mutex<HashMap<K, Bucket>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Takes a token for `key` at `now`.
    pub fn take(&self, key: &K, now: Instant) -> Take {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = shard.get_mut(key) {
            return self.take_from(bucket, now);
        }
        if shard.len() >= self.max_keys / SHARDS {
            self.sweep_shard(&mut shard, now);
        }
        if shard.len() >= self.max_keys / SHARDS {
            // Still full of live buckets: the least recently used makes room.
            let oldest = shard.iter().min_by_key(|(_, bucket)| bucket.updated).map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                shard.remove(&oldest);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let bucket = shard.entry(key.clone()).or_insert(Bucket { tokens: f64::from(self.limit), updated: now });
        self.take_from(bucket, now)
    }

    fn take_from(&self, bucket: &mut Bucket, now: Instant) -> Take {
        let rate = self.per_second();
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(f64::from(self.limit));
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let missing = f64::from(self.limit) - bucket.tokens;
        Take {
            allowed,
            limit: self.limit,
            remaining: bucket.tokens.floor() as u32,
            reset_after: Duration::from_secs_f64(missing / rate),
            retry_after: Duration::from_secs_f64(((1.0 - bucket.tokens) / rate).max(0.0)),
        }
    }

    /// Drops buckets that have refilled completely: they hold nothing a
    /// fresh bucket would not.
    fn sweep_shard(&self, shard: &mut HashMap<K, Bucket>, now: Instant) {
        let full_after = Duration::from_secs_f64(f64::from(self.limit) / self.per_second());
        shard.retain(|_, b| now.saturating_duration_since(b.updated) < full_after);
    }

    /// Sweeps every shard; run now and then so idle keys don't linger.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            self.sweep_shard(&mut shard, now);
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Buckets dropped to make room for new callers since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refills_at_its_rate() {
        let buckets = Buckets::new(60, 1000);
        let start = Instant::now();
        for i in 0..60 {
            let take = buckets.take(&"a", start);
            assert!(take.allowed);
            assert_eq!(take.remaining, 59 - i);
        }
        let refused = buckets.take(&"a", start);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after.as_secs_f64().ceil(), 1.0);
        assert!(buckets.take(&"b", start).allowed, "another key has its own bucket");
        assert!(buckets.take(&"a", start + Duration::from_secs(1)).allowed, "one token a second");
    }

    #[test]
    fn a_flood_of_new_keys_stays_within_the_bound_and_a_new_client_is_served() {
        let buckets = Buckets::new(10, 1024);
        let now = Instant::now();
        for i in 0..100_000u32 {
            buckets.take(&i, now);
        }
        assert!(buckets.len() <= 1024, "{} buckets", buckets.len());
        assert!(buckets.evicted() >= 100_000 - 1024, "{} evicted", buckets.evicted());
        // The table is full of the flood's live buckets, yet a newcomer gets
        // a full bucket of its own.
        let take = buckets.take(&1_000_000, now + Duration::from_millis(1));
        assert!(take.allowed);
        assert_eq!(take.remaining, 9);
        buckets.sweep(now + Duration::from_secs(61));
        assert_eq!(buckets.len(), 0);
    }
}
