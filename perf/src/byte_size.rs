//! Parses byte counts given on the command line: `1048576`, `64K`, `512M`, `2G`, `2GiB`.
//!
//! Suffixes are binary (K = 1024); a trailing `B` or `iB` is accepted and ignored. Throughput
//! is *reported* in decimal MB (10^6 bytes), which is a separate matter.

/// Parses `text` as a byte count with an optional K/M/G suffix.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a byte count (expected e.g. 1048576, 512M, 2G)"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|error| format!("{text:?} is not a byte count: {error}"))?;
    let unit = suffix.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {suffix:?} (use K, M, G or T)"
            ))
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} does not fit in 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_and_binary_suffixes_parse() {
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert_eq!(parse_byte_size("64K"), Ok(64 << 10));
        assert_eq!(parse_byte_size("512M"), Ok(512 << 20));
        assert_eq!(parse_byte_size("2G"), Ok(2 << 30));
        assert_eq!(parse_byte_size("2g"), Ok(2 << 30));
        assert_eq!(parse_byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_byte_size("1MB"), Ok(1 << 20));
    }

    #[test]
    fn garbage_and_overflow_are_refused() {
        assert!(parse_byte_size("").is_err());
        assert!(parse_byte_size("M").is_err());
        assert!(parse_byte_size("12Q").is_err());
        assert!(parse_byte_size("-5").is_err());
        assert!(parse_byte_size("99999999999T").is_err());
    }
}
