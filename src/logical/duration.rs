//! Durations as Vault parses and prints them.
//!
//! Vault accepts integer seconds, `"<n>d"` and any Go duration (`"1h30m"`,
//! `"1.5h"`, `"90s"`), and prints Go durations in warnings (`"1h"`, `"59m59s"`).
//! No trusted crate speaks Go's duration grammar, so it lives here, small and
//! tested.

/// Parses a duration string into seconds (fractional; the caller truncates).
pub fn parse_seconds(input: &str) -> Result<f64, String> {
    if input.is_empty() {
        return Ok(0.0);
    }
    if let Ok(i) = input.parse::<i64>() {
        return Ok(i as f64);
    }
    if let Some(days) = input.strip_suffix('d') {
        if let Ok(d) = days.parse::<i64>() {
            return Ok(d as f64 * 86_400.0);
        }
    }
    parse_go(input)
}

fn parse_go(input: &str) -> Result<f64, String> {
    let (negative, mut rest) = match input.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, input.strip_prefix('+').unwrap_or(input)),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err("expected a number".into());
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("bad number {:?}", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err("missing unit (use s, m, h or d)".into()),
            other => return Err(format!("unknown unit {other:?} (use s, m, h or d)")),
        };
        total += number * scale;
    }
    Ok(if negative { -total } else { total })
}

/// Formats seconds the way Go prints a `time.Duration`, with zero units
/// dropped as Vault's TTL warnings show them (`1h`, `59m59s`, `0s`).
pub fn format_go(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_vault_clients_send() {
        assert_eq!(parse_seconds("3600").unwrap(), 3600.0);
        assert_eq!(parse_seconds("90s").unwrap(), 90.0);
        assert_eq!(parse_seconds("30m").unwrap(), 1800.0);
        assert_eq!(parse_seconds("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_seconds("1h0m0s").unwrap(), 3600.0);
        assert_eq!(parse_seconds("0s").unwrap(), 0.0);
        assert_eq!(parse_seconds("1.5h").unwrap(), 5400.0);
        assert_eq!(parse_seconds("2d").unwrap(), 172_800.0);
        assert_eq!(parse_seconds("1500ms").unwrap(), 1.5);
        assert_eq!(parse_seconds("-5s").unwrap(), -5.0);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(parse_seconds("abc").is_err());
        assert!(parse_seconds("10").is_ok());
        assert!(parse_seconds("10x").unwrap_err().contains("unknown unit"));
        assert!(parse_seconds("1.2.3h").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go(3600), "1h");
        assert_eq!(format_go(3599), "59m59s");
        assert_eq!(format_go(0), "0s");
        assert_eq!(format_go(3661), "1h1m1s");
    }
}
