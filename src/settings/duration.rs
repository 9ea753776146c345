//! Durations on the command line: plain seconds (`300`, as before) or with units as people
//! write them (`90s`, `5m`, `1h30m`, `2d`).

/// `--…-timeout` and `--jitter` values, in seconds.
pub fn parse_seconds(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration: give seconds (300) or a value with units (90s, 5m, 1h30m)"
        )
    };
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let (mut total, mut digits) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn seconds_or_units() {
        for (s, want) in [
            ("300", 300),
            ("90s", 90),
            ("5m", 300),
            ("1h30m", 5400),
            ("2d", 172_800),
        ] {
            assert_eq!(parse_seconds(s), Ok(want), "{s}");
        }
        for bad in ["", "5x", "m", "1h30", "-5", "99999999999999999999d"] {
            assert!(
                parse_seconds(bad).unwrap_err().contains("not a duration"),
                "{bad}"
            );
        }
    }
}
