//! When to renew a lease, when to replace it, and how long to wait after a
//! failure: pure decisions on [`Instant`]s, tested here without a server.
//!
//! A lease is renewed at two thirds of its TTL, asking again for the TTL it
//! was issued with. The server caps a renewal at the lease's hard end (its
//! max TTL) and says so in a warning; from then on renewing cannot keep the
//! credential alive, so a new one is fetched at once, while the old one
//! still has the rest of its time left.

use std::time::{Duration, Instant};

use super::api::Lease;

/// What a credential's loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fetch a new credential and write it to the sink.
    Fetch,
    /// Renew the lease whose credential is in the sink.
    Renew,
}

/// The lease whose credential is in the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub lease_id: String,
    /// What each renewal asks for: the TTL the lease was issued with.
    pub increment: Duration,
    pub renewable: bool,
    /// When the request that issued or last renewed the lease was sent
    /// (the server counted its TTL from a moment no earlier).
    pub since: Instant,
    pub ttl: Duration,
    /// A renewal came back shorter than asked: the hard end is near.
    pub capped: bool,
}

impl Held {
    pub fn issued(lease: &Lease, sent: Instant) -> Held {
        Held {
            lease_id: lease.id.clone(),
            increment: lease.duration,
            renewable: lease.renewable,
            since: sent,
            ttl: lease.duration,
            capped: false,
        }
    }

    /// Takes in a renewal's answer.
    pub fn renewed(&mut self, lease: &Lease, sent: Instant) {
        self.since = sent;
        self.ttl = lease.duration;
        self.renewable = lease.renewable;
        self.capped = is_capped(self.increment, lease);
    }

    pub fn expires(&self) -> Instant {
        self.since + self.ttl
    }

    /// The next action on this lease and when; `None` for a lease without
    /// expiry, which needs nothing.
    pub fn next(&self) -> Option<(Action, Instant)> {
        if self.ttl.is_zero() && !self.capped {
            return None;
        }
        if self.capped {
            return Some((Action::Fetch, self.since));
        }
        let at = self.since + self.ttl * 2 / 3;
        if self.renewable {
            Some((Action::Renew, at))
        } else {
            Some((Action::Fetch, at))
        }
    }
}

/// Whether a renewal ran into the lease's max TTL: the server's warning says
/// so, or it granted less than was asked.
pub fn is_capped(asked: Duration, lease: &Lease) -> bool {
    lease.duration < asked || lease.warnings.iter().any(|w| w.contains("max_ttl"))
}

/// Capped exponential backoff with a little jitter, so agents that lost the
/// same server do not all come back in the same instant.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt: doubles each time up to `max`, and
    /// is drawn between 80% and 100% of that.
    pub fn delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let mut byte = [0u8; 1];
        crate::random::fill(&mut byte);
        base.mul_f64(0.8 + 0.2 * f64::from(byte[0]) / 255.0)
    }

    /// After a success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(seconds: u64, warning: Option<&str>) -> Lease {
        Lease {
            id: "database/creds/c/d/r/x".into(),
            duration: Duration::from_secs(seconds),
            renewable: true,
            warnings: warning.map(String::from).into_iter().collect(),
        }
    }

    #[test]
    fn a_lease_is_renewed_at_two_thirds_of_its_ttl() {
        let t0 = Instant::now();
        let held = Held::issued(&lease(30, None), t0);
        assert_eq!(
            held.next(),
            Some((Action::Renew, t0 + Duration::from_secs(20)))
        );
        assert_eq!(held.expires(), t0 + Duration::from_secs(30));
    }

    #[test]
    fn a_capped_renewal_means_fetching_a_new_credential_now() {
        let t0 = Instant::now();
        let mut held = Held::issued(&lease(30, None), t0);
        let t1 = t0 + Duration::from_secs(20);
        held.renewed(&lease(30, None), t1);
        assert_eq!(
            held.next(),
            Some((Action::Renew, t1 + Duration::from_secs(20)))
        );
        let t2 = t1 + Duration::from_secs(20);
        held.renewed(&lease(12, None), t2);
        assert_eq!(held.next(), Some((Action::Fetch, t2)));
        assert_eq!(held.expires(), t2 + Duration::from_secs(12));
        // The warning alone is enough (a cap that happens to equal the TTL).
        held.renewed(
            &lease(
                30,
                Some("TTL of \"30s\" exceeded the effective max_ttl of \"30s\"; TTL value is capped accordingly"),
            ),
            t2,
        );
        assert_eq!(held.next(), Some((Action::Fetch, t2)));
    }

    #[test]
    fn a_lease_that_cannot_be_renewed_is_replaced_at_two_thirds() {
        let t0 = Instant::now();
        let mut l = lease(9, None);
        l.renewable = false;
        let held = Held::issued(&l, t0);
        assert_eq!(
            held.next(),
            Some((Action::Fetch, t0 + Duration::from_secs(6)))
        );
        assert_eq!(Held::issued(&lease(0, None), t0).next(), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<Duration> = (0..4).map(|_| b.delay()).collect();
        let within = |d: Duration, base: u64| {
            d <= Duration::from_millis(base) && d >= Duration::from_millis(base * 8 / 10)
        };
        assert!(within(delays[0], 100), "{delays:?}");
        assert!(within(delays[1], 200), "{delays:?}");
        assert!(within(delays[2], 350), "{delays:?}");
        assert!(within(delays[3], 350), "{delays:?}");
        b.reset();
        assert!(within(b.delay(), 100));
    }
}
