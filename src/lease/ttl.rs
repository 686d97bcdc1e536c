//! Lease TTLs as Vault computes them (`sdk/framework/lease.go`): the
//! effective maximum is the mount's, lowered by the role's; the hard end is
//! `issue_time + max`; a renewal counts from now and is capped at the hard end.
//!
//! Times are stored in whole seconds, but "now" is taken in milliseconds:
//! an end is rounded up to the second and a TTL shown rounded down, so a
//! lease of N seconds lives at least N seconds from the request that made
//! it. (Rounding the start down instead ended users up to a second early.)

use super::TtlLimits;
use crate::logical::duration::format_go;

/// Defaults of a database mount whose TTLs were never tuned.
pub const MOUNT_DEFAULT_TTL: u64 = 3600;
pub const MOUNT_MAX_TTL: u64 = 24 * 3600;

/// The effective maximum TTL.
pub fn max_ttl(limits: &TtlLimits) -> u64 {
    let mount_max = if limits.mount_max > 0 {
        limits.mount_max
    } else {
        MOUNT_MAX_TTL
    };
    if limits.role_max > 0 && limits.role_max < mount_max {
        limits.role_max
    } else {
        mount_max
    }
}

/// The default TTL (role, else mount, else the engine's default).
pub fn default_ttl(limits: &TtlLimits) -> u64 {
    if limits.role_default > 0 {
        limits.role_default
    } else if limits.mount_default > 0 {
        limits.mount_default
    } else {
        MOUNT_DEFAULT_TTL
    }
}

/// The end (unix milliseconds) of `ttl` seconds from `now_ms`.
pub fn end_ms(now_ms: i64, ttl: u64) -> i64 {
    let ttl_ms = i64::try_from(ttl).unwrap_or(i64::MAX).saturating_mul(1000);
    now_ms.saturating_add(ttl_ms)
}

/// The end (unix seconds) of `ttl` seconds from `now_ms` (unix
/// milliseconds), rounded up: never before the TTL has passed.
pub fn expiry(now_ms: i64, ttl: u64) -> i64 {
    seconds_up(end_ms(now_ms, ttl))
}

/// `end_ms` (unix milliseconds) in unix seconds, rounded up.
pub fn seconds_up(end_ms: i64) -> i64 {
    end_ms.div_euclid(1000) + i64::from(end_ms.rem_euclid(1000) > 0)
}

/// Whole seconds from `now_ms` until `end_ms`, rounded down: never more
/// than is left.
pub fn remaining_ms(end_ms: i64, now_ms: i64) -> u64 {
    u64::try_from(end_ms.saturating_sub(now_ms).div_euclid(1000)).unwrap_or(0)
}

/// Whole seconds from `now_ms` until `end` (unix seconds), rounded down:
/// never more than is left.
pub fn remaining(end: i64, now_ms: i64) -> u64 {
    u64::try_from(
        end.saturating_mul(1000)
            .saturating_sub(now_ms)
            .div_euclid(1000),
    )
    .unwrap_or(0)
}

/// TTL of a new lease issued at `now_ms`, and its hard end.
pub fn issue(limits: &TtlLimits, now_ms: i64) -> (u64, i64) {
    let max = max_ttl(limits);
    (default_ttl(limits).min(max), expiry(now_ms, max))
}

/// A renewal's TTL from `now_ms`: `increment` if given, else the default;
/// capped at what is left until `max_end`, with Vault's warning when capped.
pub fn renew(
    limits: &TtlLimits,
    increment: u64,
    now_ms: i64,
    max_end: i64,
) -> (u64, Option<String>) {
    let wanted = if increment > 0 {
        increment
    } else {
        default_ttl(limits)
    };
    let left = remaining(max_end, now_ms);
    if wanted > left {
        let warning = format!(
            "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
            format_go(wanted),
            format_go(left)
        );
        (left, Some(warning))
    } else {
        (wanted, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_ttls_win_and_are_capped_by_the_mount() {
        let l = TtlLimits {
            role_default: 600,
            role_max: 1200,
            mount_default: 0,
            mount_max: 0,
        };
        assert_eq!(issue(&l, 1_000_000), (600, 2200));
        let l = TtlLimits {
            role_default: 0,
            role_max: 0,
            mount_default: 0,
            mount_max: 0,
        };
        assert_eq!(issue(&l, 0), (3600, 86400));
        // Issued part-way into a second: the hard end rounds up.
        assert_eq!(issue(&l, 100), (3600, 86401));
        let l = TtlLimits {
            role_default: 7200,
            role_max: 0,
            mount_default: 0,
            mount_max: 3600,
        };
        assert_eq!(issue(&l, 0), (3600, 3600));
    }

    #[test]
    fn renewals_count_from_now_and_warn_when_capped() {
        let l = TtlLimits {
            role_default: 600,
            role_max: 3600,
            ..TtlLimits::default()
        };
        assert_eq!(renew(&l, 60, 100_000, 3600), (60, None));
        assert_eq!(renew(&l, 0, 100_000, 3600), (600, None));
        let (ttl, warning) = renew(&l, 7200, 1_000, 3600);
        assert_eq!(ttl, 3599);
        assert_eq!(
            warning.unwrap(),
            "TTL of \"2h\" exceeded the effective max_ttl of \"59m59s\"; TTL value is capped accordingly"
        );
        // Part-way into a second, only whole seconds left count.
        assert_eq!(renew(&l, 7200, 1_500, 3600).0, 3598);
    }

    #[test]
    fn ends_round_up_and_what_is_left_rounds_down() {
        assert_eq!(expiry(100_000, 2), 102);
        assert_eq!(expiry(100_001, 2), 103);
        assert_eq!(expiry(100_999, 2), 103);
        assert_eq!(expiry(-1, 0), 0);
        assert_eq!(remaining(103, 100_001), 2);
        assert_eq!(remaining(103, 101_000), 2);
        assert_eq!(remaining(103, 103_000), 0);
        assert_eq!(remaining(103, 104_000), 0);
        // A TTL shown is always covered by the end it came from.
        for now_ms in [100_000, 100_001, 100_500, 100_999] {
            let end = expiry(now_ms, 2);
            assert!(end * 1000 >= now_ms + 2000);
            assert!(remaining(end, now_ms) <= 2);
        }
    }
}
