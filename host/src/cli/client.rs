//! The CLI's side of the API: where the server is, which token to send,
//! which app a command is about, and how answers and refusals are shown.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Where the API is when nothing says otherwise (`renga server`'s default).
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7070";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub api_url: String,
    pub token: String,
}

/// `$XDG_CONFIG_HOME/renga/credentials.json`, else `~/.config/renga/credentials.json`.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("renga").join("credentials.json"))
}

/// `RENGA_API_URL` and `RENGA_API_KEY` win over what `renga login` stored.
pub fn credentials() -> anyhow::Result<Credentials> {
    let stored: Option<Credentials> = credentials_path()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let api_url = std::env::var("RENGA_API_URL")
        .ok()
        .or_else(|| stored.as_ref().map(|c| c.api_url.clone()))
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let token = std::env::var("RENGA_API_KEY")
        .ok()
        .or_else(|| stored.map(|c| c.token))
        .context("not logged in: run `renga login`, or set RENGA_API_KEY")?;
    Ok(Credentials {
        api_url: api_url.trim_end_matches('/').to_string(),
        token,
    })
}

pub fn store_credentials(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let path = credentials_path()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::auth::write_private(&path, &serde_json::to_string_pretty(credentials)?)?;
    Ok(path)
}

/// An authenticated connection to the API.
pub struct Api {
    pub base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    pub fn connect() -> anyhow::Result<Api> {
        Ok(Api::with(credentials()?))
    }

    pub fn with(credentials: Credentials) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Api {
            base: credentials.api_url,
            token: credentials.token,
            agent,
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send("POST", path, Some(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send("PATCH", path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send("PUT", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send("DELETE", path, None)
    }

    /// Uploads bytes to a URL the API gave (a slug's blob).
    pub fn put_bytes(&self, url: &str, bytes: &[u8]) -> anyhow::Result<Value> {
        let request = http::Request::builder()
            .method("PUT")
            .uri(url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())?;
        answer(
            self.agent
                .run(request)
                .with_context(|| format!("uploading to {url}"))?,
        )
    }

    /// Reads a streaming text URL (a log session) line by line until it ends.
    pub fn stream_lines(&self, url: &str, mut on_line: impl FnMut(&str)) -> anyhow::Result<()> {
        let request = http::Request::builder()
            .method("GET")
            .uri(url)
            .header("Authorization", format!("Bearer {}", self.token))
            .body(())?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(None)
            .build()
            .into();
        let response = agent
            .run(request)
            .with_context(|| format!("connecting to {url}"))?;
        if !response.status().is_success() {
            return answer(response).map(|_| ());
        }
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            on_line(&line?);
        }
        Ok(())
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let builder = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/vnd.heroku+json; version=3");
        let response = match body {
            Some(body) => self.agent.run(
                builder
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(body)?)?,
            ),
            None => self.agent.run(builder.body(())?),
        }
        .with_context(|| format!("cannot reach the renga API at {}", self.base))?;
        answer(response)
    }
}

/// The JSON of a successful answer, or the server's own message as the error.
fn answer(response: http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.into_body().read_to_string().unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    match value.get("message").and_then(Value::as_str) {
        Some(message) => bail!("{message} ({})", status.as_u16()),
        None => bail!("the API answered {status}: {}", text.trim()),
    }
}

/// Which app a command is about: `-a APP`, `$RENGA_APP`, or the app named
/// by the current git repository's `renga` remote.
#[derive(clap::Args, Debug, Clone)]
pub struct AppArg {
    /// The app to act on (default: the app of the git remote named `renga`).
    #[arg(short = 'a', long = "app", env = "RENGA_APP")]
    pub app: Option<String>,
}

impl AppArg {
    pub fn resolve(&self) -> anyhow::Result<String> {
        if let Some(app) = &self.app {
            return Ok(app.clone());
        }
        if let Some(app) = app_from_git_remote() {
            return Ok(app);
        }
        bail!(
            "no app specified: use -a APP, or run inside a git repository with a remote named `renga`"
        )
    }
}

fn app_from_git_remote() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["remote", "get-url", "renga"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    app_from_remote_url(String::from_utf8_lossy(&output.stdout).trim())
}

/// `http://host:7070/git/NAME.git` → `NAME`.
pub fn app_from_remote_url(url: &str) -> Option<String> {
    let name = url.trim_end_matches('/').rsplit('/').next()?;
    let name = name.strip_suffix(".git").unwrap_or(name);
    (!name.is_empty()).then(|| name.to_string())
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    line(widths.iter().map(|w| "─".repeat(*w)).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A string field of a JSON object, or "".
pub fn field(value: &Value, path: &[&str]) -> String {
    let mut current = value;
    for key in path {
        current = &current[*key];
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_name_the_app() {
        assert_eq!(
            app_from_remote_url("http://127.0.0.1:7070/git/hello.git").as_deref(),
            Some("hello")
        );
        assert_eq!(
            app_from_remote_url("http://h/git/my-app.git/").as_deref(),
            Some("my-app")
        );
        assert_eq!(app_from_remote_url(""), None);
    }
}
