//! Lease TTLs as Vault computes them (`sdk/framework/lease.go`): the
//! effective maximum is the mount's, lowered by the role's; the hard end is
//! `issue_time + max`; a renewal counts from now and is capped at the hard end.

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

/// TTL of a new lease issued at `now`, and its hard end.
pub fn issue(limits: &TtlLimits, now: i64) -> (u64, i64) {
    let max = max_ttl(limits);
    (default_ttl(limits).min(max), now + max as i64)
}

/// A renewal's TTL from `now`: `increment` if given, else the default;
/// capped at `max_end`, with Vault's warning when capped.
pub fn renew(limits: &TtlLimits, increment: u64, now: i64, max_end: i64) -> (u64, Option<String>) {
    let wanted = if increment > 0 {
        increment
    } else {
        default_ttl(limits)
    };
    let left = u64::try_from(max_end - now).unwrap_or(0);
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
        assert_eq!(issue(&l, 1000), (600, 2200));
        let l = TtlLimits {
            role_default: 0,
            role_max: 0,
            mount_default: 0,
            mount_max: 0,
        };
        assert_eq!(issue(&l, 0), (3600, 86400));
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
        assert_eq!(renew(&l, 60, 100, 3600), (60, None));
        assert_eq!(renew(&l, 0, 100, 3600), (600, None));
        let (ttl, warning) = renew(&l, 7200, 1, 3600);
        assert_eq!(ttl, 3599);
        assert_eq!(
            warning.unwrap(),
            "TTL of \"2h\" exceeded the effective max_ttl of \"59m59s\"; TTL value is capped accordingly"
        );
    }
}
