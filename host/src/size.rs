//! size: what one dyno of a process type may use.
//!
//! A size sets the linear memory of each instance, how many requests one web
//! dyno serves at once, and how long a request may take. Sizes keep Heroku's
//! names; the figures are renga's, chosen for Wasm instances (a hello
//! component needs a few MiB, an interpreter-carrying one tens of MiB).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::units::ByteSize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Size {
    Eco,
    Basic,
    #[default]
    Standard1x,
    Standard2x,
    PerformanceM,
    PerformanceL,
}

impl Size {
    pub const ALL: [Size; 6] = [
        Size::Eco,
        Size::Basic,
        Size::Standard1x,
        Size::Standard2x,
        Size::PerformanceM,
        Size::PerformanceL,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Size::Eco => "eco",
            Size::Basic => "basic",
            Size::Standard1x => "standard-1x",
            Size::Standard2x => "standard-2x",
            Size::PerformanceM => "performance-m",
            Size::PerformanceL => "performance-l",
        }
    }

    /// Linear memory one instance may use (R14 past it).
    pub fn memory(self) -> u64 {
        match self {
            Size::Eco => ByteSize::mib(64).0,
            Size::Basic => ByteSize::mib(128).0,
            Size::Standard1x => ByteSize::mib(256).0,
            Size::Standard2x => ByteSize::mib(512).0,
            Size::PerformanceM => ByteSize::mib(1024).0,
            Size::PerformanceL => ByteSize::mib(2048).0,
        }
    }

    /// Requests one web dyno serves at once; more wait in the app's backlog.
    pub fn concurrency(self) -> u32 {
        match self {
            Size::Eco => 4,
            Size::Basic => 8,
            Size::Standard1x => 16,
            Size::Standard2x => 32,
            Size::PerformanceM => 64,
            Size::PerformanceL => 128,
        }
    }

    /// From a request's arrival to its response head (H12 past it).
    /// How many CPU slices in a row the app takes when apps compete for the
    /// cores (Heroku's "compute" multiplier).
    pub fn cpu_share(self) -> u32 {
        match self {
            Size::Eco | Size::Basic | Size::Standard1x => 1,
            Size::Standard2x => 2,
            Size::PerformanceM => 4,
            Size::PerformanceL => 8,
        }
    }

    pub fn request_timeout(self) -> Duration {
        match self {
            Size::PerformanceM | Size::PerformanceL => Duration::from_secs(60),
            _ => Duration::from_secs(30),
        }
    }

    /// The largest memory any size gives: the runtime's per-instance ceiling.
    pub fn largest_memory() -> u64 {
        Size::ALL.iter().map(|s| s.memory()).max().unwrap_or(0)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown dyno size {0:?}: use eco, basic, standard-1x, standard-2x, performance-m or performance-l"
)]
pub struct UnknownSize(pub String);

impl FromStr for Size {
    type Err = UnknownSize;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        // Heroku's older names are accepted too.
        let wanted = match wanted.as_str() {
            "1x" | "standard" => "standard-1x",
            "2x" => "standard-2x",
            "pm" | "performance" => "performance-m",
            "pl" => "performance-l",
            other => other,
        };
        Size::ALL
            .into_iter()
            .find(|size| size.name() == wanted)
            .ok_or_else(|| UnknownSize(s.to_string()))
    }
}

impl serde::Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_by_name_and_grow_in_order() {
        for size in Size::ALL {
            assert_eq!(size.name().parse::<Size>(), Ok(size));
        }
        assert_eq!("2X".parse::<Size>(), Ok(Size::Standard2x));
        assert!("huge".parse::<Size>().is_err());
        for pair in Size::ALL.windows(2) {
            assert!(pair[0].memory() < pair[1].memory());
            assert!(pair[0].concurrency() < pair[1].concurrency());
        }
        assert_eq!(Size::largest_memory(), 2 << 30);
    }
}
