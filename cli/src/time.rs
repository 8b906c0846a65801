//! `--now`: seconds since the epoch, or an RFC 3339 date and time.

use tollgate::civil::days_from_civil;

/// Reads `1700000000`, `2023-11-14T22:13:20Z`, `2023-11-14T23:13:20+01:00` or
/// `2023-11-14 22:13:20.5Z` (fractions are cut) as seconds since the epoch.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map_err(|_| "too large a number of seconds".to_string());
    }
    rfc3339(text).ok_or_else(|| {
        "not seconds since the epoch nor an RFC 3339 time such as 2026-01-02T03:04:05Z".to_string()
    })
}

fn number(s: &str, digits: usize) -> Option<i64> {
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn rfc3339(s: &str) -> Option<u64> {
    let date = s.get(..10)?;
    let sep = s.get(10..11)?;
    if !matches!(sep, "T" | "t" | " ") {
        return None;
    }
    let rest = s.get(11..)?;
    let (year, month, day) = (
        number(date.get(..4)?, 4)?,
        number(date.get(5..7)?, 2)?,
        number(date.get(8..10)?, 2)?,
    );
    if date.get(4..5)? != "-" || date.get(7..8)? != "-" {
        return None;
    }
    let (hour, minute, second) = (
        number(rest.get(..2)?, 2)?,
        number(rest.get(3..5)?, 2)?,
        number(rest.get(6..8)?, 2)?,
    );
    if rest.get(2..3)? != ":" || rest.get(5..6)? != ":" {
        return None;
    }
    let mut zone = rest.get(8..)?;
    if let Some(fraction) = zone.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        zone = fraction.get(digits..)?;
    }
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = match zone.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            if zone.len() != 6 || zone.get(3..4)? != ":" {
                return None;
            }
            let (h, m) = (number(zone.get(1..3)?, 2)?, number(zone.get(4..6)?, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = *month_days.get(usize::try_from(month - 1).ok()?)?;
    if !(1..=max_day).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_rfc3339() {
        assert_eq!(parse("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse("2023-11-14t22:13:20.999z"), Ok(1_700_000_000));
        assert_eq!(parse("2023-11-14T23:13:20+01:00"), Ok(1_700_000_000));
        assert_eq!(parse("2023-11-14 21:13:20-01:00"), Ok(1_700_000_000));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse("2024-02-29T00:00:00Z"), Ok(1_709_164_800));
        for bad in [
            "",
            "-5",
            "yesterday",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20+0100",
            "1969-12-31T23:59:59Z",
            "99999999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
