//! Event time: RFC 3339 parsing and formatting, and the duration syntax of the
//! config file (`90s`, `17m`, `1h30m`, `1d`).
//!
//! Hand-written because it sits on the hot path (every event has a `ts`) and
//! the format is small: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.

use std::fmt::Write as _;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The two-digit number at `b[at..at + 2]`; each digit is checked by one
/// wrapping subtraction (inlined on a fixed-size array, the bounds checks go).
#[inline]
fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let (hi, lo) = (b.get(at)?.wrapping_sub(b'0'), b.get(at + 1)?.wrapping_sub(b'0'));
    (hi <= 9 && lo <= 9).then(|| u32::from(hi) * 10 + u32::from(lo))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

thread_local! {
    /// The `YYYY-MM-DD` bytes of the last date [`parse_rfc3339_ms`] accepted,
    /// and its day number since 1970-01-01.
    static LAST_DATE: std::cell::Cell<Option<((u64, u16), i64)>> = const { std::cell::Cell::new(None) };
}

/// Parses an RFC 3339 timestamp into milliseconds since the Unix epoch.
/// Fractions beyond milliseconds are truncated. Returns `None` when the text is
/// not RFC 3339 (the caller reports the reason).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    // The fixed part, `YYYY-MM-DDTHH:MM:SS`, from one 19-byte array.
    let p: &[u8; 19] = b.first_chunk()?;
    let two = |i: usize| two_digits(p, i);
    let (hour, min, sec) = (two(11)?, two(14)?, two(17)?);
    if !matches!(p[10], b'T' | b't' | b' ') || p[13] != b':' || p[16] != b':' || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Events arrive in bursts of the same date: the last valid date and its
    // day number are remembered (per thread), so a repeated date costs one
    // comparison instead of the calendar arithmetic.
    let date = (u64::from_le_bytes(*p.first_chunk::<8>()?), u16::from_le_bytes([p[8], p[9]]));
    let days = match LAST_DATE.get() {
        Some((seen, days)) if seen == date => days,
        _ => {
            let year = i64::from(two(0)? * 100 + two(2)?);
            let (month, day) = (two(5)?, two(8)?);
            if p[4] != b'-' || p[7] != b'-' || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
                return None;
            }
            let days = days_from_civil(year, month, day);
            LAST_DATE.set(Some((date, days)));
            days
        }
    };
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_s: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = i64::from(two_digits(b, i + 1)?);
            let om = i64::from(two_digits(b, i + 4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec) - offset_s;
    Some(secs * 1000 + millis)
}

/// Formats milliseconds since the epoch as RFC 3339 UTC (`2026-03-02T08:00:00Z`,
/// with `.mmm` only when the milliseconds are not zero).
pub fn format_rfc3339_ms(ms: i64, out: &mut String) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, (sod / 60) % 60, sod % 60);
    if millis != 0 {
        let _ = write!(out, ".{millis:03}");
    }
    out.push('Z');
}

/// [`format_rfc3339_ms`] into a new string.
pub fn rfc3339(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    format_rfc3339_ms(ms, &mut s);
    s
}

/// Parses a duration such as `90s`, `17m`, `1h30m`, `250ms` or `1d` into
/// milliseconds. Units: `ms`, `s`, `m`, `h`, `d`. A bare number is rejected
/// (units are required so that a config file says what it means).
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. \"90s\", \"17m\", \"1h30m\"".into());
    }
    let b = t.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(format!("`{t}` is not a duration; write e.g. \"90s\", \"17m\", \"1h30m\""));
        }
        let num: f64 = t[start..i].parse().map_err(|_| format!("`{}` is not a number in duration `{t}`", &t[start..i]))?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms = match &t[ustart..i] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "" => return Err(format!("duration `{t}` needs a unit (ms, s, m, h, d)")),
            u => return Err(format!("unknown unit `{u}` in duration `{t}` (use ms, s, m, h, d)")),
        };
        let v = num * unit_ms;
        if !v.is_finite() || v > 1e15 {
            return Err(format!("duration `{t}` is too large"));
        }
        total += v.round() as i64;
    }
    Ok(total)
}

/// Formats milliseconds as the shortest duration string (`17m`, `1h30m`, `250ms`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, n) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if rest >= n {
            let _ = write!(out, "{}{unit}", rest / n);
            rest %= n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-03-02T08:00:00Z"), Some(1_772_438_400_000));
        assert_eq!(parse_rfc3339_ms("2026-03-02T09:00:00+01:00"), Some(1_772_438_400_000));
        assert_eq!(parse_rfc3339_ms("2026-03-02T08:00:00.5Z"), Some(1_772_438_400_500));
        assert_eq!(parse_rfc3339_ms("2026-03-02T08:00:00.123456Z"), Some(1_772_438_400_123));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Some(-1000));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2026-03-02",
            "2026-13-02T08:00:00Z",
            "2026-02-30T08:00:00Z",
            "2026-03-02T08:00:00",
            "2026-03-02T08:00:00.Z",
            "2026-03-02T08:00:00+0100",
            "2026-03-02T25:00:00Z",
            "x026-03-02T08:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(s), None, "{s}");
        }
    }

    /// The remembered date must never leak into another date, nor make a
    /// bad time or a bad date acceptable.
    #[test]
    fn remembered_date_changes_nothing() {
        for ms in (0..2000).map(|i| 1_772_438_400_000 + (i % 7) * 86_400_000 + i * 1_234_567) {
            assert_eq!(parse_rfc3339_ms(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339_ms("2026-03-02T08:00:00Z"), Some(1_772_438_400_000));
        assert_eq!(parse_rfc3339_ms("2026-03-02T24:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-03-02X08:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-02-29T08:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2024-02-29T08:00:00Z"), Some(1_709_193_600_000));
        assert_eq!(parse_rfc3339_ms("2026-02-29T08:00:00Z"), None);
    }

    #[test]
    fn format_round_trips() {
        for ms in [0, 1_772_438_400_000, 1_772_438_400_500, -1000, 4_102_444_800_000] {
            assert_eq!(parse_rfc3339_ms(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(rfc3339(1_772_438_400_000), "2026-03-02T08:00:00Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("17m"), Ok(1_020_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("1.5m"), Ok(90_000));
        assert!(parse_duration_ms("17").is_err());
        assert!(parse_duration_ms("17x").is_err());
        assert!(parse_duration_ms("").is_err());
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
    }
}
