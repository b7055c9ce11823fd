//! Human units on the command line: durations (`30s`, `250ms`, `2m`) and byte
//! sizes (`512MiB`, `64M`, `1G`). Parsing only; no behaviour.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written as a number and a unit: `ms`, `s`, `m` or `h`. A bare
/// number is seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 250ms or 2m"))?;
        let seconds = match unit.trim() {
            "" | "s" | "sec" => number,
            "ms" => number / 1000.0,
            "m" | "min" => number * 60.0,
            "h" => number * 3600.0,
            other => {
                return Err(format!(
                    "invalid duration unit {other:?} in {s:?}: use ms, s, m or h"
                ));
            }
        };
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(format!("invalid duration {s:?}"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0s"),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1000 == 0 => write!(f, "{}s", ms / 1000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

/// A byte size: a number and an optional unit. `K`, `M`, `G` (and `KiB`,
/// `MiB`, `GiB`, `KB`, `MB`, `GB`) are all powers of 1024, as memory sizes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n << 20)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected e.g. 512MiB, 64M or 1G"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {s:?}: use K, M or G"
                ));
            }
        };
        number
            .checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 3] = [("GiB", 30), ("MiB", 20), ("KiB", 10)];
        for (unit, shift) in UNITS {
            let one = 1u64 << shift;
            if self.0 >= one {
                return if self.0.is_multiple_of(one) {
                    write!(f, "{} {unit}", self.0 >> shift)
                } else {
                    write!(f, "{:.1} {unit}", self.0 as f64 / one as f64)
                };
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!("30s".parse(), Ok(HumanDuration(Duration::from_secs(30))));
        assert_eq!(
            "250ms".parse(),
            Ok(HumanDuration(Duration::from_millis(250)))
        );
        assert_eq!("2m".parse(), Ok(HumanDuration(Duration::from_secs(120))));
        assert_eq!("5".parse(), Ok(HumanDuration(Duration::from_secs(5))));
        assert!("5 parsecs".parse::<HumanDuration>().is_err());
        assert!("".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!("512MiB".parse(), Ok(ByteSize(512 << 20)));
        assert_eq!("64M".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!("1g".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("100".parse(), Ok(ByteSize(100)));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize::mib(64).to_string(), "64 MiB");
        assert_eq!(HumanDuration(Duration::from_secs(1800)).to_string(), "30m");
        assert_eq!(HumanDuration(Duration::from_secs(90)).to_string(), "90s");
        assert_eq!(
            HumanDuration(Duration::from_millis(250)).to_string(),
            "250ms"
        );
        assert_eq!(ByteSize(236_979).to_string(), "231.4 KiB");
        assert_eq!(ByteSize(12).to_string(), "12 bytes");
    }
}
