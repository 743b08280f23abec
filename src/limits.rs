//! Abuse limits by token bucket: messages and bytes per second per connection, and
//! handshakes per second per client address.
//!
//! A bucket refills at its rate and holds at most two seconds' worth (the burst). A message
//! that finds the bucket empty is refused (`rate_limited`) and counts a strike; an accepted
//! message takes one strike back. A connection that keeps sending into an empty bucket
//! reaches [`STRIKES_TO_CLOSE`] and is closed with [`RATE_LIMIT_CLOSE`] (4429).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// The close code for a connection that exceeded its rate limit repeatedly.
pub const RATE_LIMIT_CLOSE: u16 = 4429;

/// Refused messages, net of accepted ones, after which the connection is closed.
pub const STRIKES_TO_CLOSE: u32 = 20;

/// Per-connection rates; zero turns a limit off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePolicy {
    /// Messages per second.
    pub messages: f64,
    /// Bytes per second.
    pub bytes: f64,
}

impl RatePolicy {
    /// No limits.
    pub const OFF: Self = Self {
        messages: 0.0,
        bytes: 0.0,
    };

    /// Whether any limit is on.
    pub fn is_on(&self) -> bool {
        self.messages > 0.0 || self.bytes > 0.0
    }
}

/// What to do with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits.
    Allow,
    /// Over a limit: refuse it with `rate_limited`.
    Refuse,
    /// Over a limit again and again: close the connection with 4429.
    Close,
}

/// The buckets of one connection (a few words; kept where the connection's messages are
/// read).
#[derive(Clone, Debug)]
pub struct Limiter {
    messages: f64,
    bytes: f64,
    last_ms: u64,
    strikes: u32,
}

impl Limiter {
    /// Full buckets for `policy`.
    pub fn new(policy: &RatePolicy, now_ms: u64) -> Self {
        Self {
            messages: policy.messages * 2.0,
            bytes: policy.bytes * 2.0,
            last_ms: now_ms,
            strikes: 0,
        }
    }

    /// Accounts for one message of `size` bytes. The clock (`now_ms`) is read only when a
    /// bucket runs low (a clock read costs more than the rest of the check on virtual
    /// machines): the refill then counts all the time since the previous refill, so after a
    /// quiet spell a client may get one extra burst; the sustained rate is exact.
    pub fn check(
        &mut self,
        policy: &RatePolicy,
        size: usize,
        now_ms: impl FnOnce() -> u64,
    ) -> Verdict {
        let fits = |l: &Self| {
            (policy.messages <= 0.0 || l.messages >= 1.0)
                && (policy.bytes <= 0.0 || l.bytes >= size as f64)
        };
        if !fits(self) {
            let now = now_ms();
            let elapsed = now.saturating_sub(self.last_ms) as f64 / 1000.0;
            self.last_ms = now.max(self.last_ms);
            let refill = |tokens: f64, rate: f64| (tokens + rate * elapsed).min(rate * 2.0);
            self.messages = refill(self.messages, policy.messages);
            self.bytes = refill(self.bytes, policy.bytes);
        }
        if fits(self) {
            self.messages -= 1.0;
            self.bytes -= size as f64;
            self.strikes = self.strikes.saturating_sub(1);
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes >= STRIKES_TO_CLOSE {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

/// Handshakes per second per client address, with a burst of twice the rate.
#[derive(Debug)]
pub struct AddressLimiter {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, u64)>>,
}

/// Addresses tracked before full buckets (idle addresses) are forgotten.
const PRUNE_AT: usize = 10_000;

impl AddressLimiter {
    /// `rate` handshakes per second per address; zero is off.
    pub fn new(rate: f64) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `addr` may make one more handshake at `now_ms`.
    pub fn allow(&self, addr: IpAddr, now_ms: u64) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let burst = self.rate * 2.0;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT {
            let rate = self.rate;
            map.retain(|_, (tokens, last)| {
                *tokens + rate * now_ms.saturating_sub(*last) as f64 / 1000.0 < burst
            });
        }
        let (tokens, last) = map.entry(addr).or_insert((burst, now_ms));
        *tokens = (*tokens + self.rate * now_ms.saturating_sub(*last) as f64 / 1000.0).min(burst);
        *last = now_ms.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_abuse_closes() {
        let p = RatePolicy {
            messages: 10.0,
            bytes: 0.0,
        };
        let mut l = Limiter::new(&p, 0);
        // Two seconds' worth at once.
        for _ in 0..20 {
            assert_eq!(l.check(&p, 10, || 0), Verdict::Allow);
        }
        assert_eq!(l.check(&p, 10, || 0), Verdict::Refuse);
        // 100 ms later one more token.
        assert_eq!(l.check(&p, 10, || 100), Verdict::Allow);
        let mut v = Verdict::Allow;
        for _ in 0..STRIKES_TO_CLOSE {
            v = l.check(&p, 10, || 100);
        }
        assert_eq!(v, Verdict::Close);
    }

    #[test]
    fn bytes_are_limited_too() {
        let p = RatePolicy {
            messages: 0.0,
            bytes: 1000.0,
        };
        let mut l = Limiter::new(&p, 0);
        assert_eq!(l.check(&p, 1500, || 0), Verdict::Allow);
        assert_eq!(l.check(&p, 600, || 0), Verdict::Refuse);
        assert_eq!(l.check(&p, 500, || 0), Verdict::Allow);
        assert_eq!(l.check(&p, 600, || 1000), Verdict::Allow);
        assert!(!RatePolicy::OFF.is_on());
    }

    #[test]
    fn addresses_have_their_own_buckets() {
        let a = AddressLimiter::new(1.0);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(a.allow(x, 0) && a.allow(x, 0));
        assert!(!a.allow(x, 0));
        assert!(a.allow(y, 0));
        assert!(a.allow(x, 1000));
        assert!(AddressLimiter::new(0.0).allow(x, 0));
    }
}
