//! Wall-clock helpers. Stored times are epoch milliseconds; usage periods are `YYYY-MM` in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The UTC calendar month (`YYYY-MM`) containing `ms`.
pub fn period_of(ms: i64) -> String {
    let (y, m, _) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}")
}

/// The current UTC usage period.
pub fn current_period() -> String {
    period_of(now_ms())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_utc_month_boundaries() {
        assert_eq!(period_of(0), "1970-01");
        // 2026-04-30T23:59:59.999Z and one millisecond later.
        assert_eq!(period_of(1_777_593_599_999), "2026-04");
        assert_eq!(period_of(1_777_593_600_000), "2026-05");
        // 2024-02-29 (leap day).
        assert_eq!(period_of(1_709_208_000_000), "2024-02");
        assert_eq!(period_of(-1), "1969-12");
    }
}
