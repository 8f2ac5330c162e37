//! Per-route limits with progressive blocks, for a dialect whose document
//! gives each endpoint its own (seed 002: validate 5 a minute, blocked for
//! 2 minutes doubling up to 60; status 30, 1 to 10; deactivate 10, 2 to
//! 30). An address that runs past a route's budget is blocked from that
//! route; each block lasts twice the one before, up to the maximum, and
//! after a quiet spell as long as the maximum the next starts from the
//! base again. Budgets are counted per process; blocks are shared through
//! `route_blocks`, which every process reads each second, as the address
//! blocks of `blocks` (guessing, failed keys) are, which apply on top.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use keyledger_app::blocks::{BlockStore, BlockStoreError, RouteBlock};

use super::buckets::{Buckets, Take};

pub use keyledger_http::dialect::RouteRule;

#[derive(Debug, Clone, Copy)]
struct Blocking {
    until: Instant,
    /// The length of the next block.
    next: Duration,
}

#[derive(Default)]
struct Blocks {
    by_address: HashMap<IpAddr, Blocking>,
    /// When the map was last swept of ended blocks.
    swept: Option<Instant>,
}

pub struct RouteLimit {
    pub rule: RouteRule,
    buckets: Buckets<IpAddr>,
    blocks: Mutex<Blocks>,
    max_tracked: usize,
}

/// What a request on a limited route came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Allowed(Take),
    /// Blocked already, for this long yet.
    Blocked(Duration),
    /// Blocked by this call, for this long: to be shared.
    BlockedNow(Duration),
}

impl RouteLimit {
    pub fn new(rule: RouteRule, max_tracked: usize) -> Self {
        Self { rule, buckets: Buckets::new(rule.per_minute, max_tracked), blocks: Mutex::default(), max_tracked }
    }

    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(blocking) = blocks.by_address.get(&ip) {
            if blocking.until > now {
                return Verdict::Blocked(blocking.until - now);
            }
        }
        let take = self.buckets.take(&ip, now);
        if take.allowed {
            return Verdict::Allowed(take);
        }
        let next = match blocks.by_address.get(&ip) {
            // A quiet spell as long as the longest block since the last
            // one ended starts the doubling over.
            Some(previous) if now.saturating_duration_since(previous.until) < self.rule.block_max => previous.next,
            _ => self.rule.block_base,
        };
        let full = blocks.by_address.len() >= self.max_tracked;
        if full && blocks.swept.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1)) {
            // Forget addresses whose blocks have ended and decayed; at
            // most once a second, so a flood can't keep the lock sweeping.
            let max = self.rule.block_max;
            blocks.by_address.retain(|_, b| now.saturating_duration_since(b.until) < max);
            blocks.swept = Some(now);
        }
        let blocking = Blocking { until: now + next, next: (next * 2).min(self.rule.block_max) };
        if blocks.by_address.len() < self.max_tracked || blocks.by_address.contains_key(&ip) {
            blocks.by_address.insert(ip, blocking);
        }
        Verdict::BlockedNow(next)
    }

    /// Takes in a block another process made (or this one, read back),
    /// unless this process knows a longer one.
    fn adopt(&self, ip: IpAddr, until: Instant, next: Duration) {
        let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        if blocks.by_address.get(&ip).is_some_and(|known| known.until >= until) {
            return;
        }
        if blocks.by_address.len() < self.max_tracked || blocks.by_address.contains_key(&ip) {
            blocks.by_address.insert(ip, Blocking { until, next: next.min(self.rule.block_max) });
        }
    }

    /// The length of the block after the one `ip` is serving.
    fn next_block(&self, ip: IpAddr) -> Duration {
        let blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
        blocks.by_address.get(&ip).map_or(self.rule.block_base, |blocking| blocking.next)
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len() + self.blocks.lock().unwrap_or_else(|p| p.into_inner()).by_address.len()
    }
}

/// Every dialect route with a rule of its own, by route template.
pub struct RouteLimits {
    limits: HashMap<&'static str, RouteLimit>,
    store: BlockStore,
}

impl RouteLimits {
    pub fn new(rules: &[RouteRule], max_tracked: usize, store: BlockStore) -> Self {
        let limits = rules.iter().map(|rule| (rule.route, RouteLimit::new(*rule, max_tracked))).collect();
        Self { limits, store }
    }

    pub fn get(&self, route: &str) -> Option<&RouteLimit> {
        self.limits.get(route)
    }

    pub fn tracked(&self) -> usize {
        self.limits.values().map(RouteLimit::tracked).sum()
    }

    pub fn evicted(&self) -> u64 {
        self.limits.values().map(|limit| limit.buckets.evicted()).sum()
    }

    /// Writes the block `limit` just made for `ip`, so every process holds
    /// it (and doubles the next one).
    pub async fn share(&self, limit: &RouteLimit, ip: IpAddr, length: Duration) -> Result<(), BlockStoreError> {
        let block = RouteBlock {
            route: limit.rule.route.to_owned(),
            address: ip.to_string(),
            until: Utc::now() + chrono::Duration::from_std(length).unwrap_or_default(),
            next_secs: i64::try_from(limit.next_block(ip).as_secs()).unwrap_or(i64::MAX),
        };
        self.store.put_route_block(&block).await
    }

    /// Takes in every route block in force, from whichever process made
    /// it, and forgets rows too old to decide a block's length.
    pub async fn poll(&self) -> Result<(), BlockStoreError> {
        if self.limits.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let instant_now = Instant::now();
        for block in self.store.route_blocks_in_force(now).await? {
            let (Some(limit), Ok(ip)) = (self.limits.get(block.route.as_str()), block.address.parse::<IpAddr>()) else {
                continue;
            };
            let left = (block.until - now).to_std().unwrap_or_default();
            limit.adopt(
                ip,
                instant_now + left,
                Duration::from_secs(u64::try_from(block.next_secs).unwrap_or_default()),
            );
        }
        // A block ended longer ago than the longest block no longer
        // doubles the next one (see `RouteLimit::check`).
        let longest = self.limits.values().map(|limit| limit.rule.block_max).max().unwrap_or_default();
        let forget_before = now - chrono::Duration::from_std(longest).unwrap_or_default();
        self.store.forget_route_blocks(forget_before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn validate_rule() -> RouteRule {
        RouteRule { route: "/api/licenses/validate", per_minute: 5, block_base: 2 * MINUTE, block_max: 60 * MINUTE }
    }

    /// Calls at `at` until the address is blocked: the block's length.
    fn block(limit: &RouteLimit, ip: IpAddr, at: Instant) -> (u32, Duration) {
        let mut allowed = 0;
        loop {
            match limit.check(ip, at) {
                Verdict::Allowed(_) => allowed += 1,
                Verdict::BlockedNow(length) => return (allowed, length),
                Verdict::Blocked(_) => panic!("blocked before its budget ran out"),
            }
        }
    }

    #[test]
    fn past_its_budget_an_address_is_blocked_for_twice_as_long_each_time_up_to_the_maximum() {
        let limit = RouteLimit::new(validate_rule(), 100);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let mut now = Instant::now();
        let mut minutes = Vec::new();
        for _ in 0..7 {
            let (allowed, length) = block(&limit, ip, now);
            assert_eq!(allowed, 5, "the whole budget, then the block");
            assert!(matches!(limit.check(ip, now + length / 2), Verdict::Blocked(_)), "blocked meanwhile");
            minutes.push(length.as_secs() / 60);
            now += length;
        }
        assert_eq!(minutes, [2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn a_block_made_elsewhere_holds_here_and_the_next_one_doubles_it() {
        let limit = RouteLimit::new(validate_rule(), 100);
        let ip: IpAddr = "203.0.113.12".parse().unwrap();
        let now = Instant::now();
        // Another process blocked it for 4 minutes: the next is 8.
        limit.adopt(ip, now + 4 * MINUTE, 8 * MINUTE);
        assert!(matches!(limit.check(ip, now + MINUTE), Verdict::Blocked(left) if left == 3 * MINUTE));
        assert_eq!(block(&limit, ip, now + 4 * MINUTE).1, 8 * MINUTE);
        // A shorter block read back later does not shorten this one.
        limit.adopt(ip, now + 5 * MINUTE, 2 * MINUTE);
        assert!(matches!(limit.check(ip, now + 10 * MINUTE), Verdict::Blocked(_)));
    }

    #[test]
    fn after_a_quiet_spell_as_long_as_the_longest_block_the_next_is_short_again() {
        let limit = RouteLimit::new(validate_rule(), 100);
        let ip: IpAddr = "203.0.113.10".parse().unwrap();
        let now = Instant::now();
        assert_eq!(block(&limit, ip, now).1, 2 * MINUTE);
        assert_eq!(block(&limit, ip, now + 2 * MINUTE).1, 4 * MINUTE, "soon after: twice as long");
        assert_eq!(block(&limit, ip, now + 6 * MINUTE + 61 * MINUTE).1, 2 * MINUTE, "after a quiet hour: short again");
        let other: IpAddr = "203.0.113.11".parse().unwrap();
        assert!(matches!(limit.check(other, now), Verdict::Allowed(_)), "another address has its own budget");
    }

    #[test]
    fn a_full_table_still_gives_each_new_address_its_own_budget() {
        // Room for one address a shard: 200 addresses, each served.
        let limit = RouteLimit::new(validate_rule(), 32);
        let now = Instant::now();
        for n in 0..200u32 {
            let verdict = limit.check(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)), now);
            assert!(matches!(verdict, Verdict::Allowed(_)), "address {n}: {verdict:?}");
        }
    }
}
