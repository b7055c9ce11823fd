//! Source builds from the client's side: `renga deploy [DIR]`, `builds`,
//! `buildpacks`, and the git glue (`git:remote`, and the hidden commands git
//! runs: the credential helper and the server's pre-receive hook).

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::client::{Api, AppArg, field, print_json, print_table};

/// Uploads a source tarball, starts a build, prints its output as it comes,
/// and returns the finished build. Fails with the build's reason if it failed.
pub fn build_source(
    api: &Api,
    app: &str,
    tarball: &[u8],
    version: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<Value> {
    let source = api.post("/sources", &json!({}))?;
    api.put_bytes(&field(&source, &["source_blob", "put_url"]), tarball)?;
    let build = api.post(
        &format!("/apps/{app}/builds"),
        &json!({ "source_blob": { "url": field(&source, &["source_blob", "get_url"]), "version": version } }),
    )?;
    api.stream_lines(&field(&build, &["output_stream_url"]), |line| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })?;
    let id = field(&build, &["id"]);
    let build = api.get(&format!("/apps/{app}/builds/{id}"))?;
    match field(&build, &["status"]).as_str() {
        "succeeded" => Ok(build),
        _ => bail!(
            "the build failed: {}",
            match field(&build, &["failure"]) {
                f if f.is_empty() => "see its output above".to_string(),
                f => f,
            }
        ),
    }
}

/// A folder as a gzipped source tarball: what git would see (`.gitignore`
/// honoured, in a repository or not), never `.git/`, `target/`,
/// `node_modules/`, `.env` or `.renga/`.
pub fn source_tarball(dir: &Path) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(dir.is_dir(), "{} is not a folder", dir.display());
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    tar.follow_symlinks(false);
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(false)
        .require_git(false)
        .parents(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|entry| {
            !crate::build::NEVER_COPIED
                .iter()
                .any(|skip| entry.file_name() == *skip)
        })
        .build();
    for entry in walk {
        let entry = entry?;
        let relative = entry.path().strip_prefix(dir)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        tar.append_path_with_name(entry.path(), relative)
            .with_context(|| format!("packing {}", entry.path().display()))?;
    }
    Ok(tar.into_inner()?.finish()?)
}

pub fn deploy_source(dir: &Path, app: &str) -> anyhow::Result<()> {
    let tarball = source_tarball(dir)?;
    let api = Api::connect()?;
    println!(
        "-----> Uploading {} ({} KB) to {app}",
        dir.display(),
        tarball.len().div_ceil(1024)
    );
    let version = git_head(dir);
    build_source(
        &api,
        app,
        &tarball,
        version.as_deref(),
        &mut std::io::stdout(),
    )?;
    Ok(())
}

/// The commit checked out in `dir`, if it is a git work tree.
fn git_head(dir: &Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// List an app's builds, newest last.
///
/// Example:
///   renga builds -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct BuildsCommand {
    #[command(flatten)]
    app: AppArg,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

impl BuildsCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let builds = Api::connect()?.get(&format!("/apps/{name}/builds"))?;
        if self.json {
            print_json(&builds);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = builds
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|b| {
                vec![
                    field(b, &["id"]),
                    field(b, &["status"]),
                    match field(b, &["release", "version"]) {
                        v if v.is_empty() => String::new(),
                        v => format!("v{v}"),
                    },
                    field(b, &["source_blob", "version"])
                        .chars()
                        .take(7)
                        .collect(),
                    field(b, &["user", "email"]),
                    field(b, &["created_at"]),
                ]
            })
            .collect();
        print_table(
            &["ID", "STATUS", "RELEASE", "VERSION", "BY", "CREATED"],
            &rows,
        );
        Ok(())
    }
}

/// Show one build (the latest by default) and its output.
///
/// Example:
///   renga builds:info -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct BuildsInfoCommand {
    /// The build's id (default: the latest).
    id: Option<String>,
    #[command(flatten)]
    app: AppArg,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

impl BuildsInfoCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let api = Api::connect()?;
        let id = match self.id {
            Some(id) => id,
            None => {
                let builds = api.get(&format!("/apps/{name}/builds"))?;
                builds
                    .as_array()
                    .and_then(|b| b.last())
                    .map(|b| field(b, &["id"]))
                    .context("the app has no builds yet")?
            }
        };
        let build = api.get(&format!("/apps/{name}/builds/{id}"))?;
        if self.json {
            print_json(&build);
            return Ok(());
        }
        println!("=== Build {id}");
        println!("Status:  {}", field(&build, &["status"]));
        if let Some(version) = build["release"]["version"].as_u64() {
            println!("Release: v{version}");
        }
        let failure = field(&build, &["failure"]);
        if !failure.is_empty() {
            println!("Failure: {failure}");
        }
        println!("Version: {}", field(&build, &["source_blob", "version"]));
        println!("By:      {}", field(&build, &["user", "email"]));
        println!("Created: {}", field(&build, &["created_at"]));
        println!();
        api.stream_lines(&field(&build, &["output_stream_url"]), |line| {
            println!("{line}")
        })
    }
}

/// Show the buildpacks an app builds with.
///
/// With none set, renga detects the app's language with its own buildpacks,
/// in order: rust, python, javascript, c, wasm.
///
/// Example:
///   renga buildpacks -a hello
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct BuildpacksCommand {
    #[command(flatten)]
    app: AppArg,
}

impl BuildpacksCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let list = Api::connect()?.get(&format!("/apps/{name}/buildpack-installations"))?;
        let list = list.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!(
                "{name} has no buildpack set: renga detects the language with its own ({})",
                crate::buildpack::DETECTION_ORDER.join(", ")
            );
        } else {
            println!(
                "=== {name} Buildpack URL{}",
                if list.len() > 1 { "s" } else { "" }
            );
            for (i, b) in list.iter().enumerate() {
                println!("{}. {}", i + 1, field(b, &["buildpack", "url"]));
            }
        }
        Ok(())
    }
}

/// Set the buildpack an app builds with: one of renga's by name, or a
/// classic buildpack folder (bin/detect, bin/compile, bin/release) on the
/// server by its absolute path. The next build uses it.
///
/// Example:
///   renga buildpacks:set python -a hello
///   renga buildpacks:set /srv/buildpacks/static -a site
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct BuildpacksSetCommand {
    /// A renga buildpack name, or an absolute folder path on the server.
    buildpack: String,
    #[command(flatten)]
    app: AppArg,
}

impl BuildpacksSetCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let buildpack = match std::fs::canonicalize(&self.buildpack) {
            Ok(path) if self.buildpack.contains('/') => path.display().to_string(),
            _ => self.buildpack.clone(),
        };
        Api::connect()?.put(
            &format!("/apps/{name}/buildpack-installations"),
            &json!({ "updates": [{ "buildpack": buildpack }] }),
        )?;
        println!("Buildpack set. Next release on {name} will use {buildpack}.");
        Ok(())
    }
}

/// Go back to detecting the app's language with renga's own buildpacks.
#[derive(clap::Args, Debug)]
pub struct BuildpacksClearCommand {
    #[command(flatten)]
    app: AppArg,
}

impl BuildpacksClearCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        Api::connect()?.put(
            &format!("/apps/{name}/buildpack-installations"),
            &json!({ "updates": [] }),
        )?;
        println!("Buildpacks cleared. Next release on {name} will detect the language.");
        Ok(())
    }
}

/// Add a git remote for an app, so `git push renga main` deploys it.
///
/// The remote's credentials come from `renga` itself (a git credential
/// helper set for the API's address in this repository), so the token never
/// lands in .git/config.
///
/// Example:
///   renga git:remote -a hello && git push renga main
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct GitRemoteCommand {
    #[command(flatten)]
    app: AppArg,
    /// The remote's name.
    #[arg(short = 'r', long, default_value = "renga")]
    remote: String,
}

impl GitRemoteCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let name = self.app.resolve()?;
        let api = Api::connect()?;
        let app = api.get(&format!("/apps/{name}"))?;
        let url = field(&app, &["git_url"]);
        let exists = git(&["remote", "get-url", &self.remote]).is_ok();
        if exists {
            git(&["remote", "set-url", &self.remote, &url])?;
        } else {
            git(&["remote", "add", &self.remote, &url])?;
        }
        let exe = std::env::current_exe().context("finding the renga executable")?;
        let helper = format!("!'{}' git:credential", exe.display());
        git(&[
            "config",
            &format!("credential.{}.helper", api.base),
            &helper,
        ])?;
        println!("set git remote {} to {url}", self.remote);
        Ok(())
    }
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new("git")
        .args(args)
        .output()
        .context("cannot run git: is it installed?")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// git's credential helper protocol: answers `get` with the renga token.
#[derive(clap::Args, Debug)]
pub struct GitCredentialCommand {
    /// get, store or erase (only get answers).
    operation: String,
}

impl GitCredentialCommand {
    pub fn run(self) -> anyhow::Result<()> {
        // Read what git asks about (and ignore it: one token for the API).
        for line in std::io::stdin().lock().lines() {
            if line?.is_empty() {
                break;
            }
        }
        if self.operation == "get" {
            let credentials = super::client::credentials()?;
            println!("username=renga");
            println!("password={}", credentials.token);
        }
        Ok(())
    }
}

/// Run by an app repository's pre-receive hook on the server: builds what
/// was pushed to main or master, printing the build's output for the pusher;
/// a failed build fails the hook, so the push is rejected.
#[derive(clap::Args, Debug)]
pub struct PreReceiveCommand {}

impl PreReceiveCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let app = std::env::var("RENGA_APP").context("RENGA_APP is not set")?;
        let app_name = std::env::var("RENGA_APP_NAME").unwrap_or_else(|_| app.clone());
        let mut pushed = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let mut words = line.split_whitespace();
            if let (Some(_old), Some(new), Some(reference)) =
                (words.next(), words.next(), words.next())
            {
                pushed.push((new.to_string(), reference.to_string()));
            }
        }
        let mut out = std::io::stdout();
        let deleted = |new: &str| new.bytes().all(|b| b == b'0');
        let deploy: Vec<&(String, String)> = pushed
            .iter()
            .filter(|(new, r)| {
                (r == "refs/heads/main" || r == "refs/heads/master") && !deleted(new)
            })
            .collect();
        for (_, reference) in pushed.iter().filter(|p| !deploy.contains(p)) {
            writeln!(
                out,
                "-----> {reference} is not built: push to main or master to deploy"
            )?;
        }
        let Some((commit, _)) = deploy.last() else {
            return Ok(());
        };
        let archive = std::process::Command::new("git")
            .args(["archive", "--format=tar.gz", commit])
            .output()
            .context("running git archive")?;
        if !archive.status.success() {
            bail!(
                "git archive failed: {}",
                String::from_utf8_lossy(&archive.stderr).trim()
            );
        }
        let api = Api::connect()?;
        writeln!(
            out,
            "-----> Building source (commit {})",
            &commit[..commit.len().min(7)]
        )?;
        match build_source(&api, &app, &archive.stdout, Some(commit), &mut out) {
            Ok(_) => Ok(()),
            Err(e) => {
                writeln!(out, " !     {e:#}")?;
                writeln!(out, " !     Push rejected to {app_name}.")?;
                out.flush()?;
                std::process::exit(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_tarballs_hold_what_git_would_see() {
        let dir = std::env::temp_dir().join(format!("renga-source-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for folder in ["src", "target/release", "node_modules/x", ".git", "logs"] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
        }
        for (file, text) in [
            ("Cargo.toml", "[package]\n"),
            ("src/main.rs", "fn main() {}\n"),
            (".gitignore", "logs/\n*.tmp\n"),
            ("notes.tmp", "scratch"),
            ("logs/today.log", "noise"),
            (".env", "SECRET=1\n"),
            ("target/release/app.wasm", "\0asm"),
            ("node_modules/x/index.js", ""),
            (".git/HEAD", "ref: refs/heads/main\n"),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let tarball = source_tarball(&dir).unwrap();
        let mut names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(&tarball[..]))
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type().is_file())
            .map(|e| e.path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".gitignore", "Cargo.toml", "src/main.rs"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
