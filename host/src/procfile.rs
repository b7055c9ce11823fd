//! Procfile: which process types an app runs, and with what command.
//!
//! Parses Heroku's format (`type: command`, one per line, `#` comments) into
//! typed [`ProcessType`]s at the edge, with errors that name the line. It never
//! decides how a command runs; the dyno manager does.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A process type name: `web`, `worker`, `release`, `clock`, ...
///
/// Heroku's rule: letters, digits, dashes and underscores. renga also bounds the
/// length so that dyno names (`worker.12`) stay readable in logs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessType(String);

impl ProcessType {
    pub const MAX_LEN: usize = 30;

    pub fn web() -> Self {
        ProcessType("web".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_web(&self) -> bool {
        self.0 == "web"
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid process type {0:?}: use 1 to 30 letters, digits, dashes or underscores (for example `web` or `worker`)"
)]
pub struct InvalidProcessType(pub String);

impl FromStr for ProcessType {
    type Err = InvalidProcessType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(ProcessType(s.to_string()))
        } else {
            Err(InvalidProcessType(s.to_string()))
        }
    }
}

impl fmt::Display for ProcessType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a Procfile line says to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A WebAssembly component inside the slug, named by its path relative to
    /// the slug root (`web: app.wasm`, `worker: bin/worker.wasm --verbose`).
    Component { path: String, args: Vec<String> },
    /// Anything else: a native command line, run by the native dyno fallback.
    Native(String),
}

impl Command {
    pub fn parse(line: &str) -> Command {
        let mut words = line.split_whitespace();
        match words.next() {
            Some(first) if first.ends_with(".wasm") => Command::Component {
                path: first.trim_start_matches("./").to_string(),
                args: words.map(str::to_string).collect(),
            },
            _ => Command::Native(line.trim().to_string()),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Component { path, args } => {
                f.write_str(path)?;
                for arg in args {
                    write!(f, " {arg}")?;
                }
                Ok(())
            }
            Command::Native(line) => f.write_str(line),
        }
    }
}

/// A parsed Procfile: process types in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Procfile {
    processes: BTreeMap<ProcessType, Command>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcfileError {
    #[error(
        "Procfile line {line}: expected `TYPE: COMMAND` (for example `web: app.wasm`), found {text:?}"
    )]
    Malformed { line: usize, text: String },
    #[error("Procfile line {line}: {source}")]
    BadType {
        line: usize,
        source: InvalidProcessType,
    },
    #[error("Procfile line {line}: process type `{name}` has no command")]
    EmptyCommand { line: usize, name: String },
    #[error("Procfile line {line}: process type `{name}` is already defined on line {first}")]
    Duplicate {
        line: usize,
        name: String,
        first: usize,
    },
}

impl Procfile {
    pub fn parse(text: &str) -> Result<Procfile, ProcfileError> {
        let mut processes = BTreeMap::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((name, command)) = trimmed.split_once(':') else {
                return Err(ProcfileError::Malformed {
                    line,
                    text: raw.to_string(),
                });
            };
            let name = name.trim();
            let kind: ProcessType = name
                .parse()
                .map_err(|source| ProcfileError::BadType { line, source })?;
            let command = command.trim();
            if command.is_empty() {
                return Err(ProcfileError::EmptyCommand {
                    line,
                    name: name.to_string(),
                });
            }
            if let Some(&first) = seen.get(name) {
                return Err(ProcfileError::Duplicate {
                    line,
                    name: name.to_string(),
                    first,
                });
            }
            seen.insert(name.to_string(), line);
            processes.insert(kind, Command::parse(command));
        }
        Ok(Procfile { processes })
    }

    pub fn from_map(processes: BTreeMap<ProcessType, Command>) -> Procfile {
        Procfile { processes }
    }

    pub fn get(&self, kind: &ProcessType) -> Option<&Command> {
        self.processes.get(kind)
    }

    pub fn web(&self) -> Option<&Command> {
        self.processes.get(&ProcessType::web())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ProcessType, &Command)> {
        self.processes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Process types from `other` that this Procfile does not define, the way
    /// Heroku merges a buildpack's default process types under the app's own.
    pub fn with_defaults(mut self, other: &Procfile) -> Procfile {
        for (kind, command) in &other.processes {
            self.processes
                .entry(kind.clone())
                .or_insert_with(|| command.clone());
        }
        self
    }
}

impl fmt::Display for Procfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (kind, command) in &self.processes {
            writeln!(f, "{kind}: {command}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_components_and_native_commands() {
        let procfile = Procfile::parse(
            "# processes\nweb: app.wasm\n\nworker: ./bin/worker.wasm --queue fast\nclock: node clock.js\n",
        )
        .unwrap();
        assert_eq!(
            procfile.web(),
            Some(&Command::Component {
                path: "app.wasm".into(),
                args: vec![]
            })
        );
        assert_eq!(
            procfile.get(&"worker".parse().unwrap()),
            Some(&Command::Component {
                path: "bin/worker.wasm".into(),
                args: vec!["--queue".into(), "fast".into()]
            })
        );
        assert_eq!(
            procfile.get(&"clock".parse().unwrap()),
            Some(&Command::Native("node clock.js".into()))
        );
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            Procfile::parse("web: app.wasm\nthis is not a process\n"),
            Err(ProcfileError::Malformed {
                line: 2,
                text: "this is not a process".into()
            })
        );
        assert!(matches!(
            Procfile::parse("web app: x.wasm"),
            Err(ProcfileError::BadType { line: 1, .. })
        ));
        assert!(matches!(
            Procfile::parse("\n\nweb:   "),
            Err(ProcfileError::EmptyCommand { line: 3, .. })
        ));
        assert!(matches!(
            Procfile::parse("web: a.wasm\nweb: b.wasm"),
            Err(ProcfileError::Duplicate {
                line: 2,
                first: 1,
                ..
            })
        ));
    }

    #[test]
    fn app_procfile_wins_over_buildpack_defaults() {
        let app = Procfile::parse("web: mine.wasm").unwrap();
        let defaults = Procfile::parse("web: theirs.wasm\nworker: w.wasm").unwrap();
        let merged = app.with_defaults(&defaults);
        assert_eq!(merged.web().unwrap().to_string(), "mine.wasm");
        assert_eq!(
            merged.get(&"worker".parse().unwrap()).unwrap().to_string(),
            "w.wasm"
        );
    }
}
