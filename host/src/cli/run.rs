//! `run` and `run:detached`: one-off dynos.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::client::{Api, AppArg, credentials, field};
use crate::attach;

/// Run a command in a one-off dyno, attached to this terminal: its stdin is
/// yours, its output prints here, and `renga` exits with its exit code.
///
/// COMMAND is a process type of the current release (its Procfile command
/// runs, with ARGS added) or a command component in the slug: `migrate.wasm`,
/// or `migrate` for `migrate.wasm` or `bin/migrate.wasm`.
///
/// Example:
///   renga run -a hello -- migrate --step 2
///   echo data | renga run -a hello -- importer
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunCommand {
    #[command(flatten)]
    args: RunArgs,
}

/// What both `run` and `run:detached` take.
#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    app: AppArg,
    /// The dyno's size (default standard-1x).
    #[arg(long, short)]
    size: Option<String>,
    /// COMMAND and its ARGS.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    /// The app, and the body of `POST /apps/{app}/dynos`.
    fn request(&self, attach: bool) -> anyhow::Result<(String, Value)> {
        let name = self.app.resolve()?;
        let mut body = json!({ "argv": self.command, "attach": attach });
        if let Some(size) = &self.size {
            body["size"] = json!(size);
        }
        Ok((name, body))
    }
}

impl RunCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let (name, body) = self.args.request(true)?;
        eprintln!("Running `{}` on {name}...", self.args.command.join(" "));
        let code = attach_to(&name, &body)?;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(code);
    }
}

/// Run a command in a one-off dyno in the background; its output goes to
/// the app's log, as `app[run.N]` lines (`renga logs --tail`).
///
/// Example:
///   renga run:detached -a hello -- report --month 11
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunDetachedCommand {
    #[command(flatten)]
    args: RunArgs,
}

impl RunDetachedCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let (name, body) = self.args.request(false)?;
        let dyno = Api::connect()?.post(&format!("/apps/{name}/dynos"), &body)?;
        println!(
            "Running `{}` on {name}... up, {} ({})",
            self.args.command.join(" "),
            field(&dyno, &["name"]),
            field(&dyno, &["size"])
        );
        println!("Run `renga logs -a {name} --tail` to see its output.");
        Ok(())
    }
}

/// Opens an attached one-off dyno and relays its streams until it exits;
/// returns its exit code.
fn attach_to(app: &str, body: &Value) -> anyhow::Result<i32> {
    let credentials = credentials()?;
    let authority = credentials
        .api_url
        .strip_prefix("http://")
        .with_context(|| {
            format!(
                "`renga run` needs an http:// API URL, not {}",
                credentials.api_url
            )
        })?
        .trim_end_matches('/')
        .to_string();
    let body = serde_json::to_vec(body)?;
    let mut stream = TcpStream::connect(&authority)
        .with_context(|| format!("cannot reach the API at {}", credentials.api_url))?;
    let _ = stream.set_nodelay(true);
    let head = format!(
        "POST /apps/{app}/dynos HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: Upgrade\r\nUpgrade: {}\r\n\r\n",
        credentials.token,
        body.len(),
        attach::PROTOCOL
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;

    let mut reader = BufReader::new(stream.try_clone()?);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("the API answered {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("the API closed the connection");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    if status != 101 {
        let mut answer = vec![0u8; length];
        reader.read_exact(&mut answer)?;
        let message = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned());
        bail!("{message} ({status})");
    }

    // Our stdin, to the dyno, until it ends.
    let mut to_dyno = stream;
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        let mut buffer = vec![0u8; 16 << 10];
        loop {
            let n = match input.read(&mut buffer) {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let sent = to_dyno
                .write_all(&attach::header(attach::STDIN, n))
                .and_then(|()| to_dyno.write_all(&buffer[..n]));
            if n == 0 || sent.is_err() {
                return;
            }
        }
    });

    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        let mut header = [0u8; 8];
        if reader.read_exact(&mut header).is_err() {
            bail!("the connection to the dyno was lost before it exited");
        }
        let (stream, len) =
            attach::parse_header(header).context("the API sent a malformed frame")?;
        let mut data = vec![0u8; len as usize];
        reader.read_exact(&mut data)?;
        match stream {
            attach::STDOUT => {
                stdout.write_all(&data)?;
                stdout.flush()?;
            }
            attach::STDERR => {
                stderr.write_all(&data)?;
                stderr.flush()?;
            }
            attach::NOTE => eprintln!("{}", String::from_utf8_lossy(&data)),
            attach::EXIT => {
                let code: [u8; 4] = data
                    .as_slice()
                    .try_into()
                    .context("the API sent a malformed exit code")?;
                return Ok(i32::from_be_bytes(code));
            }
            _ => {}
        }
    }
}
