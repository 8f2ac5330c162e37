//! Token buckets by key, in bounded memory.
//!
//! Each key (a client address, or an API key's id) has a bucket of `limit`
//! tokens that refills at `limit` per minute; a request takes one. The map
//! is sharded so concurrent requests rarely wait on one lock. It never
//! holds more than `max_keys` buckets: idle ones are swept, and when a
//! flood of new keys fills it anyway, the newcomers share one overflow
//! bucket, so the flood is limited as a whole rather than growing memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
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
    /// Taken from the overflow bucket that newcomers share when the map is full.
    pub overflow: bool,
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
    overflow: Mutex<Bucket>,
    hasher: RandomState,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(limit_per_minute: u32, max_keys: usize) -> Self {
        let full = Bucket { tokens: f64::from(limit_per_minute), updated: Instant::now() };
        Self {
            limit: limit_per_minute.max(1),
            max_keys: max_keys.max(SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            overflow: Mutex::new(full),
            hasher: RandomState::new(),
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
            drop(shard);
            let mut overflow = self.overflow.lock().unwrap_or_else(|p| p.into_inner());
            return Take { overflow: true, ..self.take_from(&mut overflow, now) };
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
            overflow: false,
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
    fn a_flood_of_new_keys_stays_within_the_bound() {
        let buckets = Buckets::new(10, 1024);
        let now = Instant::now();
        let mut refused = 0;
        for i in 0..100_000u32 {
            if !buckets.take(&i, now).allowed {
                refused += 1;
            }
        }
        assert!(buckets.len() <= 1024, "{} buckets", buckets.len());
        assert!(refused > 90_000, "the overflow is limited as one: {refused} refused");
        buckets.sweep(now + Duration::from_secs(61));
        assert_eq!(buckets.len(), 0);
    }
}
