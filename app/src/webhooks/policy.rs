//! When a failed delivery is tried again, and when an endpoint is given up.

use std::time::Duration;

use rand::Rng;

/// Standard Webhooks' schedule after the first, immediate attempt: 5 s,
/// 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
pub const DEFAULT_SCHEDULE: &str = "5,300,1800,7200,18000,36000,50400,72000,86400";
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// The waits before the second, third, … attempt.
    pub delays: Vec<Duration>,
    /// An endpoint failing for this long, with no success, is disabled.
    pub disable_after: Duration,
    /// How long an attempt may take.
    pub timeout: Duration,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A 2xx.
    Delivered,
    /// 410 Gone: the endpoint is disabled and the delivery given up.
    Gone,
    /// Anything else: a timeout, a connection error, another status. A
    /// 429 or 503 may say when to come back.
    Failed { retry_after: Option<Duration> },
}

impl Outcome {
    pub fn of_status(status: u16, retry_after: Option<&str>) -> Self {
        match status {
            200..=299 => Outcome::Delivered,
            410 => Outcome::Gone,
            429 | 503 => Outcome::Failed { retry_after: retry_after.and_then(parse_retry_after) },
            _ => Outcome::Failed { retry_after: None },
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let wait = match raw.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

impl RetryPolicy {
    /// Parses `KEYLEDGER_WEBHOOK_RETRY_SCHEDULE`: delays in seconds,
    /// comma-separated (fractions allowed, for tests).
    pub fn parse_schedule(raw: &str) -> Result<Vec<Duration>, String> {
        raw.split(',')
            .map(|part| {
                let seconds: f64 = part.trim().parse().map_err(|_| format!("{part:?} is not a number of seconds"))?;
                if !(0.0..=7.0 * 86400.0).contains(&seconds) {
                    return Err(format!("{seconds} is not between 0 and a week"));
                }
                Ok(Duration::from_secs_f64(seconds))
            })
            .collect()
    }

    /// After `attempts` failed attempts, how long to wait before the next,
    /// or None when the schedule is spent. The wait is the schedule's
    /// with ±10% jitter, so deliveries that failed together don't all
    /// come back at once; a `Retry-After` longer than it wins.
    pub fn next_wait(&self, attempts: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let scheduled = *self.delays.get(attempts.checked_sub(1)? as usize)?;
        let jitter = rand::thread_rng().gen_range(0.9..=1.1);
        Some(scheduled.mul_f64(jitter).max(retry_after.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &str) -> RetryPolicy {
        RetryPolicy {
            delays: RetryPolicy::parse_schedule(schedule).unwrap(),
            disable_after: Duration::from_secs(3600),
            timeout: Duration::from_secs(15),
        }
    }

    #[test]
    fn the_schedule_is_followed_with_jitter_then_given_up() {
        let policy = policy(DEFAULT_SCHEDULE);
        let first = policy.next_wait(1, None).unwrap();
        assert!(first >= Duration::from_millis(4500) && first <= Duration::from_millis(5500), "{first:?}");
        let last = policy.next_wait(9, None).unwrap();
        assert!(last >= Duration::from_secs(77760) && last <= Duration::from_secs(95040), "{last:?}");
        assert_eq!(policy.next_wait(10, None), None, "ten attempts in all");
        assert!(RetryPolicy::parse_schedule("1,x").is_err());
        assert_eq!(
            RetryPolicy::parse_schedule("0.2,0.5").unwrap(),
            [Duration::from_millis(200), Duration::from_millis(500)]
        );
    }

    #[test]
    fn statuses_decide_the_outcome_and_retry_after_is_honoured() {
        assert_eq!(Outcome::of_status(204, None), Outcome::Delivered);
        assert_eq!(Outcome::of_status(410, None), Outcome::Gone);
        assert_eq!(Outcome::of_status(500, Some("60")), Outcome::Failed { retry_after: None });
        let busy = Outcome::of_status(429, Some("120"));
        assert_eq!(busy, Outcome::Failed { retry_after: Some(Duration::from_secs(120)) });
        let short = policy("5");
        assert_eq!(short.next_wait(1, Some(Duration::from_secs(120))), Some(Duration::from_secs(120)));
    }
}
