//! Durations as the flags take them and as messages say them: the one parser (on
//! `humantime`, the crate the flags have always used) and the two formats.
//!
//! Used by the operator's flags ([`crate::cli`]), the emulator binary's flags
//! (`--start-delay`, `--stop-delay`) and the controller's condition messages.

use std::time::Duration;

/// Parses a duration such as `500ms`, `5s`, `10m`, `1h`, `1h 30m` or `0`
/// (`humantime`'s grammar: an integer and a unit per term, terms may repeat).
///
/// # Errors
/// A message naming the problem and the accepted forms, e.g. `time unit needed, for
/// example 2sec or 2ms: use a number with a unit, e.g. 500ms, 5s, 10m, 1h`.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e}: use a number with a unit, e.g. 500ms, 5s, 10m, 1h"))
}

/// One term of [`parse`]: an integer and a unit (`500ms`, `2s`, `1m`), or `0`; no
/// fractions, signs, spaces or sums (the emulator's `--start-delay`/`--stop-delay`).
///
/// # Errors
/// As [`parse`], or a message naming the accepted form.
pub fn parse_term(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !t[digits..].bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("invalid duration {t:?}: expected an integer and a unit, e.g. 500ms, 2s, 1m"));
    }
    parse(t)
}

/// [`parse`], refusing zero (a period or delay the operator cannot run with).
///
/// # Errors
/// As [`parse`], or `must be greater than zero`.
pub fn parse_positive(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        d if d.is_zero() => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

/// A duration as the flags take it, e.g. `1ms`, `10s`, `5m`, `9s 999ms` (`humantime`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A duration for condition messages, whole seconds and minutes: `750ms` (below one
/// second), `5s`, `2m`, `2m30s` (sub-second parts of longer durations are dropped).
pub fn format_compact(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag_forms() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        for bad in ["", "2", "s", "2 fortnights", "-1s", "99999999999999999999s"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // the emulator's flags: one integer term
        assert_eq!(parse_term("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_term("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_term("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_term("0"), Ok(Duration::ZERO));
        for bad in ["", "2", "s", "1.5s", "2 days", "-1s", "99999999999999999999s"] {
            assert!(parse_term(bad).is_err(), "{bad:?}");
        }
        assert!(parse("x").unwrap_err().contains("e.g. 500ms"));
        assert_eq!(parse_positive("0s"), Err("must be greater than zero".into()));
        assert_eq!(parse_positive("5s"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_millis(9999)), "9s 999ms");
        assert_eq!(format_compact(Duration::from_millis(750)), "750ms");
        assert_eq!(format_compact(Duration::from_secs(5)), "5s");
        assert_eq!(format_compact(Duration::from_secs(120)), "2m");
        assert_eq!(format_compact(Duration::from_secs(150)), "2m30s");
    }
}
