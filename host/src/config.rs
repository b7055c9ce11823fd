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

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.as_str())
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
            if let Some(after) = rest.strip_prefix("export") {
                if after.starts_with(char::is_whitespace) {
                    rest = after.trim_start();
                }
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
            vars.set(key, value);
        }
        Ok(vars)
    }
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
    fn config_keys_follow_the_shell_rule() {
        assert!("DATABASE_URL".parse::<ConfigKey>().is_ok());
        assert!("_x1".parse::<ConfigKey>().is_ok());
        for bad in ["", "1A", "A-B", "A B", "É"] {
            assert!(bad.parse::<ConfigKey>().is_err(), "{bad:?}");
        }
    }
}
