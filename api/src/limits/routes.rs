//! Per-route limits with progressive blocks, for a dialect whose document
//! gives each endpoint its own (seed 002: validate 5 a minute, blocked for
//! 2 minutes doubling up to 60; status 30, 1 to 10; deactivate 10, 2 to
//! 30). An address that runs past a route's budget is blocked from that
//! route; each block lasts twice the one before, up to the maximum, and
//! after a quiet spell as long as the maximum the next starts from the
//! base again. These blocks are per process and per route; the address
//! blocks of `blocks` (guessing, failed keys) apply on top, shared.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::buckets::{Buckets, Take};

/// One route's budget and blocks.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    /// The route template, as the router matched it.
    pub route: &'static str,
    pub per_minute: u32,
    pub block_base: Duration,
    pub block_max: Duration,
}

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
    /// Blocked (now or already) for this long.
    Blocked(Duration),
    /// Refused from the budget that newcomers share when too many
    /// addresses are tracked: retry after this long. Says nothing about
    /// this address, so it is not held against it.
    Busy(Duration),
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
        if take.overflow {
            return Verdict::Busy(take.retry_after);
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
        Verdict::Blocked(next)
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len() + self.blocks.lock().unwrap_or_else(|p| p.into_inner()).by_address.len()
    }
}

/// Every dialect route with a rule of its own, by route template.
pub struct RouteLimits(HashMap<&'static str, RouteLimit>);

impl RouteLimits {
    pub fn new(rules: &[RouteRule], max_tracked: usize) -> Self {
        Self(rules.iter().map(|rule| (rule.route, RouteLimit::new(*rule, max_tracked))).collect())
    }

    pub fn get(&self, route: &str) -> Option<&RouteLimit> {
        self.0.get(route)
    }

    pub fn tracked(&self) -> usize {
        self.0.values().map(RouteLimit::tracked).sum()
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
                Verdict::Blocked(length) => return (allowed, length),
                Verdict::Busy(_) => panic!("a single address never overflows"),
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
    fn a_refusal_from_the_shared_overflow_budget_blocks_nobody() {
        // Room for one address a shard: most of 200 share the overflow.
        let limit = RouteLimit::new(validate_rule(), 32);
        let now = Instant::now();
        let verdicts: Vec<Verdict> =
            (0..200u32).map(|n| limit.check(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)), now)).collect();
        assert!(verdicts.iter().any(|v| matches!(v, Verdict::Busy(_))), "the overflow budget ran out");
        assert!(!verdicts.iter().any(|v| matches!(v, Verdict::Blocked(_))), "one call each: nobody is blocked");
    }
}
