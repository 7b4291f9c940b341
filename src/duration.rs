//! Durations as the flags take them (`120`, `90s`, `2m`, `500ms`) and as messages name them back.

use std::time::Duration;

/// Seconds, bare or with an `s`, `m` or `ms` suffix: `120`, `90s`, `2m`, `500ms`. Every duration of every
/// command is read by this.
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1000)
    };
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .map(Duration::from_millis)
        .ok_or_else(|| "not a duration such as 120, 90s, 2m or 500ms".into())
}

/// A duration as a flag takes it and as the operator gave it (`10s`, `2m`, `500ms`): `duration`'s inverse.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms % 1000 != 0 => format!("{ms}ms"),
        _ if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
        _ => format!("{}s", ms / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_as_a_flag_takes_them_and_read_back_the_same() {
        assert_eq!(show_duration(Duration::from_secs(10)), "10s");
        assert_eq!(show_duration(Duration::from_secs(120)), "2m");
        assert_eq!(show_duration(Duration::from_secs(90)), "90s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        for ms in [0, 1, 999, 1000, 1500, 59_000, 60_000, 90_000, 120_000, 3_600_000, 86_400_123] {
            let d = Duration::from_millis(ms);
            assert_eq!(duration(&show_duration(d)), Ok(d), "{ms} ms");
        }
    }
}
