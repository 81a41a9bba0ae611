//! How settings write lengths of time (`500ms`, `90s`, `15m`, `1h`, `7d`), shared by every
//! command's flags.

use std::time::Duration;

/// Parses a lifetime such as `500ms`, `90s`, `15m`, `1h` or `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a lifetime like 90s, 15m, 1h or 7d"))?;
    if unit == "ms" {
        return Ok(Duration::from_millis(number));
    }
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{unit}` is not a unit: use ms, s, m, h or d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}
