//! Failed-authentication limit per client address (`limits.auth_failures_per_minute`).
//!
//! Each client IP address has a one-minute window that opens at its first failed
//! authentication; once the window holds the configured number of failures, every new
//! connection from that address is refused *before* authentication (no SCRAM exchange runs)
//! until the window ends. The refusal does not depend on the service name or the password, so
//! it reveals nothing about which services exist; a correct password is refused too while the
//! address is limited, otherwise the limit would still answer "right or wrong" to guesses.
//!
//! A successful login does not reset the window: an attacker holding one valid credential
//! could otherwise interleave it to keep guessing another service's password.
//!
//! Memory is bounded: at most [`MAX_TRACKED_ADDRESSES`] addresses are tracked. When the map is
//! full, expired windows are dropped; if it is still full, the new address is not tracked
//! (its failures go uncounted) and a warning is logged, rather than evicting the addresses
//! already being limited, which is what an attacker spraying from many addresses would want.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

/// Length of the counting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most client addresses tracked at once (~50 bytes each).
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// Failures of one address within its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
    /// Authentications from this address under way (see [`AuthAttempt`]).
    in_flight: u32,
}

/// Counts failed authentications per client address; shared by all sessions.
#[derive(Debug)]
pub struct AuthFailureLimiter {
    /// Failures allowed per address per window; 0 disables the limit.
    limit: u32,
    capacity: usize,
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl AuthFailureLimiter {
    pub fn new(limit: u32) -> Self {
        Self::with_capacity(limit, MAX_TRACKED_ADDRESSES)
    }

    fn with_capacity(limit: u32, capacity: usize) -> Self {
        AuthFailureLimiter {
            limit,
            capacity,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether connections from `ip` are refused now (before authentication).
    pub fn is_limited(&self, ip: IpAddr) -> bool {
        self.is_limited_at(ip, Instant::now())
    }

    /// Start an authentication from `ip`, or `None` if the address is refused. Once an address
    /// has failed in its window, attempts under way count against the limit too, so a burst of
    /// parallel guesses cannot all start before the first failures are recorded; an address
    /// without failures is not limited in parallelism (a pool opening many connections at once).
    /// The attempt counts as a failure only if [`AuthAttempt::failed`] is called.
    pub fn begin(&self, ip: IpAddr) -> Option<AuthAttempt<'_>> {
        self.begin_at(ip, Instant::now())
    }

    fn begin_at(&self, ip: IpAddr, now: Instant) -> Option<AuthAttempt<'_>> {
        if self.limit == 0 {
            return Some(AuthAttempt {
                limiter: self,
                ip,
                counted: false,
                failed: false,
            });
        }
        let mut windows = self.lock();
        let mut counted = false;
        if let Some(w) = windows.get_mut(&ip) {
            if now.duration_since(w.started) >= WINDOW {
                w.started = now;
                w.failures = 0;
            }
            if w.failures > 0 && w.failures.saturating_add(w.in_flight) >= self.limit {
                return None;
            }
            w.in_flight = w.in_flight.saturating_add(1);
            counted = true;
        }
        Some(AuthAttempt {
            limiter: self,
            ip,
            counted,
            failed: false,
        })
    }

    fn end(&self, ip: IpAddr, counted: bool, failed: bool) {
        if self.limit == 0 {
            return;
        }
        if counted {
            let mut windows = self.lock();
            if let Some(w) = windows.get_mut(&ip) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
        if failed {
            self.record_failure(ip);
        }
    }

    /// Count one failed authentication from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        self.record_failure_at(ip, Instant::now())
    }

    /// Addresses currently tracked (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_limited_at(&self, ip: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        self.lock()
            .get(&ip)
            .is_some_and(|w| now.duration_since(w.started) < WINDOW && w.failures >= self.limit)
    }

    fn record_failure_at(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut windows = self.lock();
        if !windows.contains_key(&ip) && windows.len() >= self.capacity {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
            if windows.len() >= self.capacity {
                warn!(%ip, "failed-authentication table full; this address is not limited");
                return;
            }
        }
        let window = windows.entry(ip).or_insert(Window {
            started: now,
            failures: 0,
            in_flight: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            window.started = now;
            window.failures = 0;
        }
        window.failures = window.failures.saturating_add(1);
        if window.failures == self.limit {
            warn!(%ip, failures = window.failures, "too many failed authentications; refusing this address for the rest of the minute");
        }
    }
}

/// One authentication under way; ends (as a success, or as nothing at all if the client just
/// left) when dropped, unless [`AuthAttempt::failed`] was called.
#[derive(Debug)]
pub struct AuthAttempt<'a> {
    limiter: &'a AuthFailureLimiter,
    ip: IpAddr,
    /// Counted in its address's `in_flight` (only addresses with a window are tracked).
    counted: bool,
    failed: bool,
}

impl AuthAttempt<'_> {
    /// The attempt failed: count it against the address.
    pub fn failed(mut self) {
        self.failed = true;
    }
}

impl Drop for AuthAttempt<'_> {
    fn drop(&mut self) {
        self.limiter.end(self.ip, self.counted, self.failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn limits_an_address_after_the_configured_failures_until_the_window_ends() {
        let limiter = AuthFailureLimiter::new(3);
        let t0 = Instant::now();
        for _ in 0..2 {
            limiter.record_failure_at(ip(1), t0);
        }
        assert!(!limiter.is_limited_at(ip(1), t0));
        limiter.record_failure_at(ip(1), t0 + Duration::from_secs(1));
        assert!(limiter.is_limited_at(ip(1), t0 + Duration::from_secs(2)));
        // Other addresses are unaffected.
        assert!(!limiter.is_limited_at(ip(2), t0 + Duration::from_secs(2)));
        // The window opened at the first failure; after it, the address is free again and a
        // new failure starts a new window.
        assert!(!limiter.is_limited_at(ip(1), t0 + WINDOW));
        limiter.record_failure_at(ip(1), t0 + WINDOW);
        assert!(!limiter.is_limited_at(ip(1), t0 + WINDOW));
    }

    #[test]
    fn after_a_failure_attempts_under_way_count_against_the_limit() {
        let limiter = AuthFailureLimiter::new(3);
        let t0 = Instant::now();
        // No failure yet: any number of parallel attempts (a pool connecting at once).
        let pool: Vec<_> = (0..10)
            .filter_map(|_| limiter.begin_at(ip(1), t0))
            .collect();
        assert_eq!(pool.len(), 10);
        drop(pool);
        limiter.record_failure_at(ip(1), t0);
        // One failure recorded: at most 2 more may be under way.
        let a = limiter.begin_at(ip(1), t0).unwrap();
        let b = limiter.begin_at(ip(1), t0).unwrap();
        assert!(limiter.begin_at(ip(1), t0).is_none());
        // One ends without failing (success, or the client left): room for one more.
        drop(a);
        let c = limiter.begin_at(ip(1), t0).unwrap();
        b.failed();
        c.failed();
        assert!(limiter.is_limited_at(ip(1), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = AuthFailureLimiter::new(0);
        let t0 = Instant::now();
        for _ in 0..100 {
            limiter.record_failure_at(ip(1), t0);
        }
        assert!(!limiter.is_limited_at(ip(1), t0));
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_keeps_limited_addresses_when_full() {
        let limiter = AuthFailureLimiter::with_capacity(1, 2);
        let t0 = Instant::now();
        limiter.record_failure_at(ip(1), t0);
        limiter.record_failure_at(ip(2), t0);
        // Full and nothing expired: a third address is not tracked, the first two stay limited.
        limiter.record_failure_at(ip(3), t0);
        assert_eq!(limiter.tracked(), 2);
        assert!(limiter.is_limited_at(ip(1), t0));
        assert!(!limiter.is_limited_at(ip(3), t0));
        // Once the old windows expired, room is made for new addresses.
        let later = t0 + WINDOW + Duration::from_secs(1);
        limiter.record_failure_at(ip(3), later);
        assert_eq!(limiter.tracked(), 1);
        assert!(limiter.is_limited_at(ip(3), later));
    }
}
