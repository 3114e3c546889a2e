//! Human byte sizes on the command line and in config: `4G`, `512M`, `1TiB`, `4096`.

use std::fmt;

/// A byte count parsed from text such as `4G` or `512MiB` (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// Why a size did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid size {text:?}: {why} (examples: 4096, 512M, 4G, 1T)")]
pub struct SizeError {
    text: String,
    why: &'static str,
}

impl std::str::FromStr for ByteSize {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| SizeError {
            text: s.to_string(),
            why,
        };
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err("no number"));
        }
        let n: u64 = num.parse().map_err(|_| err("number too large"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(err("unknown unit")),
        };
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| err("too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(self.0))
    }
}

/// `1536` -> `1.5 KiB`, for tables.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("4G".parse::<ByteSize>(), Ok(ByteSize(4 << 30)));
        assert_eq!("512MiB".parse::<ByteSize>(), Ok(ByteSize(512 << 20)));
        assert_eq!("4096".parse::<ByteSize>(), Ok(ByteSize(4096)));
        assert!("G".parse::<ByteSize>().is_err());
        assert!("4X".parse::<ByteSize>().is_err());
        assert!("99999999999999T".parse::<ByteSize>().is_err());
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(100), "100 B");
    }
}
