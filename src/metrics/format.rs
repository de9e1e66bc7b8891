//! How latencies are written for people: milliseconds at the histograms'
//! precision, shared by the terminal table, the reports, the progress line
//! and the driver's own notes.

/// Formats microseconds as milliseconds with about three significant
/// digits (the precision of the histograms): `0.125`, `4.25`, `42.0`, `1234`.
pub fn format_ms(micros: f64) -> String {
    let ms = micros / 1000.0;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_milliseconds() {
        assert_eq!(format_ms(125.0), "0.125");
        assert_eq!(format_ms(4_250.0), "4.25");
        assert_eq!(format_ms(42_000.0), "42.0");
        assert_eq!(format_ms(1_234_000.0), "1234");
    }
}
