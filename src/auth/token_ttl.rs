//! How long a token lives: one calculation for creation and renewal, as
//! Vault's `framework.CalculateTTL` does it, warnings included (clients
//! show them: "TTL of "2h" exceeded the effective max_ttl of "1h"; ...").

use crate::logical::duration::format_go;

/// A TTL granted, and what the caller should be told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    pub ttl: u64,
    pub warnings: Vec<String>,
}

/// The TTL of a token asked for at `now` (unix seconds).
///
/// - `wanted`: the increment (renewal) or TTL (creation), 0 for "none";
/// - `fallback`: used when `wanted` is 0 (the last TTL on renewal, the
///   system default at creation);
/// - `period`: a periodic token gets its period every time, capped by the
///   system maximum; only `explicit_max_ttl` ends its life;
/// - otherwise the TTL ends at the earlier of `start + explicit_max_ttl`
///   and `start + system_max`.
pub fn calculate(
    wanted: u64,
    fallback: u64,
    period: u64,
    explicit_max_ttl: u64,
    system_max: u64,
    start: i64,
    now: i64,
) -> Granted {
    let mut warnings = Vec::new();
    let max = match explicit_max_ttl {
        0 => system_max,
        e => e.min(system_max),
    };
    let (mut ttl, hard_end) = if period > 0 {
        let mut period = period;
        if period > max {
            warnings.push(format!(
                "period of {:?} exceeded the effective max_ttl of {:?}; period value is capped accordingly",
                format_go(period),
                format_go(max)
            ));
            period = max;
        }
        (
            period,
            (explicit_max_ttl > 0).then(|| start + explicit_max_ttl as i64),
        )
    } else {
        let ttl = if wanted > 0 { wanted } else { fallback };
        (ttl, Some(start + max as i64))
    };
    if let Some(end) = hard_end {
        let left = u64::try_from(end - now).unwrap_or(0);
        if ttl > left {
            warnings.push(format!(
                "TTL of {:?} exceeded the effective max_ttl of {:?}; TTL value is capped accordingly",
                format_go(ttl),
                format_go(left)
            ));
            ttl = left;
        }
    }
    Granted { ttl, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 768 * 3600;

    #[test]
    fn durations_read_as_vault_prints_them() {
        assert_eq!(format_go(7200), "2h");
        assert_eq!(format_go(300), "5m");
        assert_eq!(format_go(150), "2m30s");
        assert_eq!(format_go(3630), "1h30s");
        assert_eq!(format_go(MAX), "768h");
        assert_eq!(format_go(0), "0s");
    }

    #[test]
    fn a_ttl_past_the_explicit_max_is_capped_with_a_warning() {
        let g = calculate(7200, MAX, 0, 3600, MAX, 1000, 1000);
        assert_eq!(g.ttl, 3600);
        assert_eq!(
            g.warnings,
            ["TTL of \"2h\" exceeded the effective max_ttl of \"1h\"; TTL value is capped accordingly"]
        );
    }

    #[test]
    fn the_cap_counts_from_the_start_not_from_now() {
        let g = calculate(300, 100, 0, 150, MAX, 1000, 1010);
        assert_eq!(g.ttl, 140);
        assert_eq!(g.warnings.len(), 1);
    }

    #[test]
    fn a_period_is_granted_whatever_is_asked_and_lives_past_the_system_max() {
        let g = calculate(10, 0, 3600, 0, MAX, 0, 10 * MAX as i64);
        assert_eq!(
            g,
            Granted {
                ttl: 3600,
                warnings: vec![]
            }
        );
        let g = calculate(0, 0, 7200, 3600, MAX, 0, 0);
        assert_eq!(g.ttl, 3600);
        assert!(
            g.warnings[0].starts_with("period of \"2h\" exceeded"),
            "{g:?}"
        );
    }

    #[test]
    fn without_a_wish_the_fallback_is_granted() {
        assert_eq!(calculate(0, 200, 0, 0, MAX, 0, 0).ttl, 200);
    }
}
