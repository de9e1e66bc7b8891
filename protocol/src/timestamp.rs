//! `Date.prototype.toISOString()` timestamps: `2026-11-26T02:20:51.123Z`
//! (UTC, milliseconds, `Z`), the form the chat gateway stamps on `newMessage`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats a wall-clock instant exactly like JavaScript's `toISOString()`.
pub fn format_iso(at: SystemTime) -> String {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64;
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// Parses a timestamp in exactly the `toISOString()` form (24 characters);
/// any other form (no milliseconds, an offset, lower-case `z`) is `None`.
pub fn parse_iso(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 24 || text.chars().count() != 24 {
        return None;
    }
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ];
    if seps.iter().any(|&(i, c)| b.get(i) != Some(&c)) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let total_ms = ((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms;
    u64::try_from(total_ms)
        .ok()
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-calendar algorithms (public domain).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_to_iso_string() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_660_851_123);
        assert_eq!(format_iso(t), "2026-11-26T02:40:51.123Z");
        assert_eq!(format_iso(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_000);
        assert_eq!(format_iso(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_only_the_exact_form() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_660_851_123);
        assert_eq!(parse_iso("2026-11-26T02:40:51.123Z"), Some(t));
        for bad in [
            "2026-11-26T02:40:51Z",
            "2026-11-26T02:40:51.123+00:00",
            "2026-11-26T02:40:51.123z",
            "2026-02-30T02:40:51.123Z",
            "2026-11-26 02:40:51.123Z",
            "1795660851123",
        ] {
            assert_eq!(parse_iso(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trips_over_a_range_of_days() {
        for day in (-800..40_000).step_by(97) {
            let t =
                UNIX_EPOCH + Duration::from_millis((day.max(0) as u64) * 86_400_000 + 45_296_789);
            assert_eq!(parse_iso(&format_iso(t)), Some(t));
        }
    }
}
