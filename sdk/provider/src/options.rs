//! The options an add-on was provisioned with (`renga addons:create
//! SERVICE -- --ttl 60` gives `ttl` = `60`; names are in lowercase): the
//! argument of `provision`, and `wasi:config/store` on every later call.
//!
//! [`Options`] reads both alike, so one function can check the options at
//! provisioning and read them afterwards:
//!
//! ```no_run
//! use renga_provider_sdk::options::Options;
//!
//! fn ttl_seconds(options: &Options) -> Result<u64, String> {
//!     options.check_known(&["ttl"])?;
//!     options.parse("ttl", 3600)
//! }
//!
//! // In `provision(options)`: ttl_seconds(&Options::new(options))?
//! // In a bucket method:       ttl_seconds(&Options::current()?)
//! ```

use std::fmt;
use std::str::FromStr;

use crate::bindings::wasi::config::store;

/// Why the options could not be read (renga never fails these calls).
#[derive(Debug, Clone)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        match e {
            store::Error::Upstream(m) | store::Error::Io(m) => Error(m),
        }
    }
}

/// One option of the add-on, if it was given.
pub fn get(name: &str) -> Result<Option<String>, Error> {
    Ok(store::get(name)?)
}

/// An add-on's options, by name.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pairs: Vec<(String, String)>,
}

impl Options {
    /// The options `provision` was given.
    pub fn new(pairs: Vec<(String, String)>) -> Options {
        Options { pairs }
    }

    /// The options this add-on was provisioned with (`wasi:config/store`).
    pub fn current() -> Result<Options, Error> {
        Ok(Options::new(store::get_all()?))
    }

    /// The value of the option `name`, if it was given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The option `name` parsed as a `T`, or `default` when it was not
    /// given; the message names the option and its value.
    pub fn parse<T>(&self, name: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("--{name} {text:?}: {e}")),
        }
    }

    /// Refuses options other than `known`, naming the ones the provider
    /// has (a misspelt option would otherwise be ignored silently).
    pub fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(key, _)| !known.contains(&key.as_str()))
        {
            None => Ok(()),
            Some((key, _)) if known.is_empty() => Err(format!(
                "unknown option --{key}: this service takes no options"
            )),
            Some((key, _)) => Err(format!(
                "unknown option --{key}: this service takes --{}",
                known.join(", --")
            )),
        }
    }

    /// Every option, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}
