//! The Rust buildpack's helper.
//!
//! `renga-rust-helper build --build-dir DIR --target-dir DIR --target TRIPLE
//! [--sdk DIR]` runs `cargo build --release` for the app, prints cargo's
//! progress and the compiler's own diagnostics (indented, as Heroku's build
//! output is), copies every component it produced to the top of the build
//! folder, and records the process types for `bin/release` in
//! `.renga/rust/process-types`. renga's SDKs are not on crates.io: a crate
//! that depends on `renga-sdk` gets it from `--sdk` (renga's `sdk/rust`),
//! and one that depends on `renga-provider-sdk` (an add-on provider) gets
//! it from the `provider` folder beside `--sdk` (`sdk/provider`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use cargo_metadata::{Message, MetadataCommand, TargetKind};

/// Binaries with these names become the process type of the same name; any
/// other single binary is the web process when it serves HTTP.
const PROCESS_TYPES: &[&str] = &["web", "worker", "release", "clock"];

struct Args {
    build_dir: PathBuf,
    target_dir: PathBuf,
    target: String,
    sdk: Option<PathBuf>,
}

/// The app-side SDK's crate name: it is the `--sdk` folder.
const SDK: &str = "renga-sdk";
/// The provider SDK's crate name, and its folder beside `--sdk`.
const PROVIDER_SDK: (&str, &str) = ("renga-provider-sdk", "provider");

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("renga-rust-helper: {e}");
            return ExitCode::from(2);
        }
    };
    match build(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!(" !     {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("build") {
        return Err("usage: renga-rust-helper build --build-dir DIR --target-dir DIR --target TRIPLE [--sdk DIR]".into());
    }
    let (mut build_dir, mut target_dir, mut target, mut sdk) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--build-dir" => build_dir = Some(PathBuf::from(value)),
            "--target-dir" => target_dir = Some(PathBuf::from(value)),
            "--target" => target = Some(value),
            "--sdk" => sdk = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        build_dir: build_dir.ok_or("--build-dir is required")?,
        target_dir: target_dir.ok_or("--target-dir is required")?,
        target: target.ok_or("--target is required")?,
        sdk,
    })
}

fn build(args: &Args) -> Result<(), String> {
    let manifest = args.build_dir.join("Cargo.toml");
    let metadata = MetadataCommand::new()
        .manifest_path(&manifest)
        .no_deps()
        .exec()
        .map_err(|e| format!("cargo cannot read the app's Cargo.toml: {e}"))?;
    let buildable = metadata.workspace_packages().iter().any(|p| {
        p.targets
            .iter()
            .any(|t| t.kind.contains(&TargetKind::Bin) || t.kind.contains(&TargetKind::CDyLib))
    });
    if !buildable {
        return Err(
            "the crate has neither a binary nor a cdylib target, so it builds no component: \
             add a src/main.rs with a `#[wstd::http_server]` function (see examples/hello-rust)"
                .into(),
        );
    }

    let mut cargo = Command::new("cargo");
    cargo
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "--target",
        ])
        .arg(&args.target)
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&args.target_dir);
    for (name, dir) in sdks(args.sdk.as_deref()) {
        let used = metadata
            .workspace_packages()
            .iter()
            .any(|p| p.dependencies.iter().any(|d| d.name == name));
        // A patch that no package uses is a warning in every build.
        if used {
            say(&format!("Using renga's SDK ({name}) from the buildpack"));
            cargo.arg("--config").arg(format!(
                "patch.crates-io.{name}.path={:?}",
                dir.display().to_string()
            ));
        }
    }
    let mut child = cargo
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;

    // Cargo's progress ("Compiling hello v0.1.0") arrives on stderr.
    let stderr = child.stderr.take().expect("piped");
    let progress = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            say(&line);
        }
    });

    let mut components: Vec<(String, PathBuf)> = Vec::new();
    let mut succeeded = false;
    let stdout = child.stdout.take().expect("piped");
    for message in Message::parse_stream(BufReader::new(stdout)) {
        match message.map_err(|e| format!("reading cargo's output: {e}"))? {
            Message::CompilerMessage(msg) => {
                if let Some(rendered) = &msg.message.rendered {
                    for line in rendered.lines() {
                        say(line);
                    }
                }
            }
            Message::CompilerArtifact(artifact) => {
                let is_app = metadata.workspace_members.contains(&artifact.package_id)
                    && (artifact.target.kind.contains(&TargetKind::Bin)
                        || artifact.target.kind.contains(&TargetKind::CDyLib));
                if is_app {
                    for file in &artifact.filenames {
                        if file.extension() == Some("wasm") {
                            components.push((artifact.target.name.clone(), file.clone().into()));
                        }
                    }
                }
            }
            Message::BuildFinished(finished) => succeeded = finished.success,
            Message::TextLine(line) => say(&line),
            _ => {}
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    let _ = progress.join();
    if !status.success() || !succeeded {
        return Err("cargo build failed; the compiler's messages are above".into());
    }
    if components.is_empty() {
        return Err(format!("cargo built nothing for {}", args.target));
    }

    components.sort();
    components.dedup_by(|a, b| a.0 == b.0);
    let mut process_types = String::new();
    let single = components.len() == 1;
    for (name, file) in &components {
        let out = args.build_dir.join(format!("{name}.wasm"));
        std::fs::copy(file, &out).map_err(|e| format!("copying {}: {e}", file.display()))?;
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        say(&format!("Built {name}.wasm ({} KB)", size.div_ceil(1024)));
        let kind = if PROCESS_TYPES.contains(&name.as_str()) {
            Some(name.as_str())
        } else if single && serves_http(&out) {
            Some("web")
        } else {
            None
        };
        if let Some(kind) = kind {
            process_types.push_str(&format!("{kind}: {name}.wasm\n"));
        }
    }
    write_process_types(&args.build_dir, &process_types)
}

/// renga's SDKs that are there to patch in, by crate name: `--sdk` itself,
/// and the provider SDK beside it when that folder exists.
fn sdks(sdk: Option<&Path>) -> Vec<(&'static str, PathBuf)> {
    let Some(sdk) = sdk else {
        return Vec::new();
    };
    let mut found = vec![(SDK, sdk.to_path_buf())];
    let (name, folder) = PROVIDER_SDK;
    if let Some(provider) = sdk.parent().map(|d| d.join(folder)).filter(|d| d.is_dir()) {
        found.push((name, provider));
    }
    found
}

/// Whether a component exports `wasi:http/incoming-handler`: the export's
/// name is in the component's bytes (a guest never imports that interface).
/// A command component (`wasi:cli/run` only) is left to the Procfile.
/// Whether a component exports an HTTP handler: WASI 0.2's
/// `incoming-handler`, or WASI 0.3's `handler` (`wasi:http/service`).
fn serves_http(component: &Path) -> bool {
    const EXPORTS: &[&[u8]] = &[b"wasi:http/incoming-handler@", b"wasi:http/handler@0.3"];
    std::fs::read(component).is_ok_and(|bytes| {
        EXPORTS
            .iter()
            .any(|export| bytes.windows(export.len()).any(|w| w == *export))
    })
}

fn write_process_types(build_dir: &Path, text: &str) -> Result<(), String> {
    let dir = build_dir.join(".renga/rust");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(dir.join("process-types"), text)
        .map_err(|e| format!("writing process types: {e}"))
}

/// Build output, indented under the `-----> ` headings.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "       {line}");
    let _ = out.flush();
}
