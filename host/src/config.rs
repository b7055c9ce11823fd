//! Config vars: an app's environment.
//!
//! Owns the typed key ([`ConfigKey`]), the set of vars ([`ConfigVars`]) and the
//! `.env` format that `renga dev` reads. It never decides where vars are stored
//! or when a change makes a release; the release ledger does.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A config var name, by the rule that shells and Heroku share: a letter or
/// underscore, then letters, digits or underscores.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ConfigKey(String);

impl ConfigKey {
    pub const MAX_LEN: usize = 256;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid config var name {0:?}: use letters, digits and underscores, not starting with a digit"
)]
pub struct InvalidConfigKey(pub String);

impl FromStr for ConfigKey {
    type Err = InvalidConfigKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = s.bytes();
        let valid = s.len() <= Self::MAX_LEN
            && bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid {
            Ok(ConfigKey(s.to_string()))
        } else {
            Err(InvalidConfigKey(s.to_string()))
        }
    }
}

impl<'de> serde::Deserialize<'de> for ConfigKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Lets a map keyed by [`ConfigKey`] be searched with a plain `&str`.
impl std::borrow::Borrow<str> for ConfigKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An app's config vars, ordered by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ConfigVars(BTreeMap<ConfigKey, String>);

impl ConfigVars {
    pub fn new() -> Self {
        Self::default()
    }

    /// Most config vars an app may have.
    pub const MAX_VARS: usize = 500;

    /// Most bytes an app's config vars may hold, names and values together
    /// (Heroku allows 32 KB).
    pub const MAX_TOTAL_BYTES: usize = 64 << 10;

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Names and values together, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.0.iter().map(|(k, v)| k.as_str().len() + v.len()).sum()
    }

    /// Whether the vars fit the limits every app has: at most
    /// [`ConfigVars::MAX_VARS`] vars and [`ConfigVars::MAX_TOTAL_BYTES`].
    pub fn check_limits(&self) -> Result<(), ConfigError> {
        if self.len() > Self::MAX_VARS {
            return Err(ConfigError::TooMany {
                count: self.len(),
                max: Self::MAX_VARS,
            });
        }
        let total = self.total_bytes();
        if total > Self::MAX_TOTAL_BYTES {
            return Err(ConfigError::TooLarge {
                total,
                max: Self::MAX_TOTAL_BYTES,
            });
        }
        Ok(())
    }

    pub fn set(&mut self, key: ConfigKey, value: impl Into<String>) {
        self.0.insert(key, value.into());
    }

    pub fn remove(&mut self, key: &ConfigKey) -> Option<String> {
        self.0.remove(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ConfigKey, &str)> {
        self.0.iter().map(|(k, v)| (k, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses a `.env` file: `KEY=VALUE` lines, `export ` prefixes, `#`
    /// comments, single quotes (literal) and double quotes (with `\n`, `\t`,
    /// `\"` and `\\` escapes). An error names the line.
    pub fn from_dotenv(text: &str) -> Result<ConfigVars, DotenvError> {
        let mut vars = ConfigVars::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let mut rest = raw.trim();
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            if let Some(after) = rest.strip_prefix("export")
                && after.starts_with(char::is_whitespace)
            {
                rest = after.trim_start();
            }
            let Some((key, value)) = rest.split_once('=') else {
                return Err(DotenvError {
                    line,
                    message: format!("expected KEY=VALUE, found {raw:?}"),
                });
            };
            let key: ConfigKey =
                key.trim_end()
                    .parse()
                    .map_err(|e: InvalidConfigKey| DotenvError {
                        line,
                        message: e.to_string(),
                    })?;
            let value =
                parse_value(value.trim_start()).map_err(|message| DotenvError { line, message })?;
            check_value(&key, &value).map_err(|e| DotenvError {
                line,
                message: e.to_string(),
            })?;
            vars.set(key, value);
        }
        Ok(vars)
    }
}

/// A config var value: any text but NUL, which no process environment can
/// carry (a guest would see the value cut short at it).
pub fn check_value(key: &ConfigKey, value: &str) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(ConfigError::Nul(key.to_string()));
    }
    Ok(())
}

/// Why a set of config vars is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config var {0} contains a NUL character, which no environment can carry")]
    Nul(String),
    #[error("an app may have at most {max} config vars; this change would make {count}")]
    TooMany { count: usize, max: usize },
    #[error(
        "an app's config vars may hold at most {} (names and values together); this change would make {}",
        crate::units::ByteSize(*max as u64),
        crate::units::ByteSize(*total as u64)
    )]
    TooLarge { total: usize, max: usize },
}

impl FromIterator<(ConfigKey, String)> for ConfigVars {
    fn from_iter<I: IntoIterator<Item = (ConfigKey, String)>>(iter: I) -> Self {
        ConfigVars(iter.into_iter().collect())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(".env line {line}: {message}")]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

fn parse_value(value: &str) -> Result<String, String> {
    let mut chars = value.chars();
    match chars.next() {
        Some(quote @ ('\'' | '"')) => {
            let mut out = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == quote {
                    closed = true;
                    break;
                }
                if c == '\\' && quote == '"' {
                    match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some(other @ ('"' | '\\' | '$')) => out.push(other),
                        Some(other) => {
                            out.push('\\');
                            out.push(other);
                        }
                        None => return Err("unterminated escape at end of line".to_string()),
                    }
                } else {
                    out.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated {quote} quote"));
            }
            let trailing = chars.as_str().trim();
            if !trailing.is_empty() && !trailing.starts_with('#') {
                return Err(format!(
                    "unexpected text after the closing quote: {trailing:?}"
                ));
            }
            Ok(out)
        }
        _ => {
            // Unquoted: a ` #` starts a comment; surrounding blanks are dropped.
            let value = match value.find(" #") {
                Some(at) => &value[..at],
                None => value,
            };
            Ok(value.trim().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_reads_every_form() {
        let vars = ConfigVars::from_dotenv(
            "# settings\nGREETING=Howdy\nexport NAME = 'single # not a comment'\nQUOTED=\"a\\nb \\\"c\\\"\" # trailing\nPLAIN=value # comment\nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(vars.get("GREETING"), Some("Howdy"));
        assert_eq!(vars.get("NAME"), Some("single # not a comment"));
        assert_eq!(vars.get("QUOTED"), Some("a\nb \"c\""));
        assert_eq!(vars.get("PLAIN"), Some("value"));
        assert_eq!(vars.get("EMPTY"), Some(""));
        assert_eq!(vars.len(), 5);
    }

    #[test]
    fn dotenv_errors_name_the_line() {
        let err = ConfigVars::from_dotenv("A=1\n\nthis line is wrong\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.to_string().starts_with(".env line 3:"), "{err}");
        let err = ConfigVars::from_dotenv("1BAD=x").unwrap_err();
        assert_eq!(err.line, 1);
        let err = ConfigVars::from_dotenv("A=\"open").unwrap_err();
        assert!(err.message.contains("unterminated"), "{err}");
    }

    #[test]
    fn a_nul_in_a_config_value_is_refused() {
        let key: ConfigKey = "TOKEN".parse().unwrap();
        assert!(check_value(&key, "abc").is_ok());
        assert_eq!(
            check_value(&key, "abc\0def"),
            Err(ConfigError::Nul("TOKEN".into()))
        );
        let err = ConfigVars::from_dotenv("A=\"x\\0y\"\nB=\"\0\"\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn limits_count_vars_and_bytes() {
        let mut vars = ConfigVars::new();
        for i in 0..ConfigVars::MAX_VARS {
            vars.set(format!("K{i}").parse().unwrap(), "v");
        }
        assert!(vars.check_limits().is_ok());
        vars.set("ONE_MORE".parse().unwrap(), "v");
        assert!(matches!(
            vars.check_limits(),
            Err(ConfigError::TooMany { .. })
        ));
        let mut big = ConfigVars::new();
        big.set(
            "BIG".parse().unwrap(),
            "x".repeat(ConfigVars::MAX_TOTAL_BYTES),
        );
        assert!(matches!(
            big.check_limits(),
            Err(ConfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn lookups_by_name_find_the_var() {
        let vars: ConfigVars = (0..10_000)
            .map(|i| (format!("KEY_{i}").parse().unwrap(), i.to_string()))
            .collect();
        assert_eq!(vars.get("KEY_9999"), Some("9999"));
        assert_eq!(vars.get("MISSING"), None);
    }

    #[test]
    fn config_keys_follow_the_shell_rule() {
        assert!("DATABASE_URL".parse::<ConfigKey>().is_ok());
        assert!("_x1".parse::<ConfigKey>().is_ok());
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert!(bad.parse::<ConfigKey>().is_err(), "{bad:?}");
        }
    }
}
