//! Hardening end to end: a hostile second user's build reaches nothing of
//! the host or of other apps; a tampered slug is never run; instances,
//! tasks, processes and files come back after traps, timeouts and abandoned
//! clients; one app cannot take the pool, the workers or the disk from the
//! others; secrets stay private and tokens can be revoked. Each smaller
//! defect found while hardening has a regression test named after it.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest as _;
use support::{ADMIN_TOKEN, Server, Steady, TempDir, built_component, request};

const HELLO: &str = "examples/hello-rust";
const MISBEHAVE: &str = "tests/guests/misbehave";
const COMMAND: &str = "tests/guests/command";

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn all(ran: &support::Ran) -> String {
    format!("{}\n{}", ran.stdout, ran.stderr)
}

fn sha256(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The unpacked copy of the app's current slug, in the server's data folder.
fn unpacked_slug(server: &Server, app: &str) -> PathBuf {
    let releases = server.cli(&["releases", "-a", app, "--json"]).ok();
    let releases: Value = serde_json::from_str(&releases.stdout).unwrap();
    let current = releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["current"] == true)
        .unwrap();
    let slug_id = current["slug"]["id"].as_str().unwrap();
    let slug = server.api_request(
        "GET",
        &format!("/apps/{app}/slugs/{slug_id}"),
        Some(ADMIN_TOKEN),
        None,
    );
    let slug: Value = serde_json::from_str(&slug.body).unwrap();
    let checksum = slug["checksum"]
        .as_str()
        .unwrap()
        .trim_start_matches("SHA256:");
    server.data.join("slugs").join(checksum)
}

fn app_id(server: &Server, app: &str) -> String {
    let info = server.api_request("GET", &format!("/apps/{app}"), Some(ADMIN_TOKEN), None);
    let info: Value = serde_json::from_str(&info.body).unwrap();
    info["id"].as_str().unwrap().to_string()
}

/// Host processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// A Rust crate whose build script tries, one by one, what a hostile tenant
/// would: it reports each attempt as `ATTACK name: blocked (...)` or
/// `ATTACK name: SUCCEEDED ...` in the build output.
fn write_attacking_app(dir: &Path, targets: &str) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"attacker\"\nversion = \"0.1.0\"\nedition = \"2021\"\nbuild = \"build.rs\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(dir.join("targets.txt"), targets).unwrap();
    std::fs::write(
        dir.join("build.rs"),
        r#"
use std::io::Write as _;

fn report(name: &str, outcome: Result<String, String>) {
    match outcome {
        Ok(detail) => println!("cargo:warning=ATTACK {name}: SUCCEEDED {detail}"),
        Err(why) => println!("cargo:warning=ATTACK {name}: blocked ({why})"),
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read(path)
        .map(|b| format!("read {} bytes of {path}", b.len()))
        .map_err(|e| e.to_string())
}

fn write(path: &str) -> Result<String, String> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"pwned"))
        .map(|()| format!("wrote {path}"))
        .map_err(|e| e.to_string())
}

fn connect(address: &str) -> Result<String, String> {
    let address: std::net::SocketAddr = address.parse().unwrap();
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2))
        .map(|_| format!("connected to {address}"))
        .map_err(|e| e.to_string())
}

fn main() {
    let targets = std::fs::read_to_string("targets.txt").unwrap();
    let get = |key: &str| {
        targets
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap()
            .to_string()
    };
    let data = get("data");
    let pid = get("pid");
    let slug = get("victim_slug");
    report(
        "list-data-folder",
        std::fs::read_dir(&data)
            .map(|d| format!("{} entries", d.count()))
            .map_err(|e| e.to_string()),
    );
    report("read-store", read(&format!("{data}/db/conf")));
    report("read-server-environ", read(&format!("/proc/{pid}/environ")));
    let mut leaked = Err("no process environment names RENGA_ADMIN_TOKEN".to_string());
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(env) = std::fs::read(entry.path().join("environ")) {
            if String::from_utf8_lossy(&env).contains("RENGA_ADMIN_TOKEN") {
                leaked = Ok(format!("{:?}", entry.path()));
            }
        }
    }
    report("find-admin-token", leaked);
    report(
        "see-server-process",
        if std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            && read(&format!("/proc/{pid}/cmdline")).is_ok()
            && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .contains("server\0--api")
        {
            Ok(format!("/proc/{pid} is the server"))
        } else {
            Err("not visible".into())
        },
    );
    let mut held = Err("only its own descriptors".to_string());
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.display().to_string();
            if target.contains(&format!("/proc/{pid}/")) || target.contains("renga-seccomp") || target.contains(&data) {
                held = Ok(format!("fd {:?} is {target}", entry.file_name()));
            }
        }
    }
    report("inherit-server-files", held);
    report(
        "make-user-namespace",
        std::process::Command::new("unshare")
            .args(["-U", "true"])
            .status()
            .map_err(|e| e.to_string())
            .and_then(|s| if s.success() { Ok("unshare -U worked".into()) } else { Err(format!("{s}")) }),
    );
    report("read-other-slug", read(&slug));
    report("write-other-slug", write(&slug));
    report(
        "list-other-cache",
        std::fs::read_dir(get("victim_cache"))
            .map(|d| format!("{} entries", d.count()))
            .map_err(|e| e.to_string()),
    );
    report("write-tools", write("/renga/tools/pwned"));
    report("write-buildpack", write("/renga/buildpacks/rust/bin/pwned"));
    report("write-system", write("/usr/pwned"));
    report("write-etc", write("/etc/pwned"));
    report("reach-api", connect(&format!("127.0.0.1:{}", get("api_port"))));
    report("reach-api-via-gateway", connect(&format!("10.0.2.2:{}", get("api_port"))));
    report("reach-router", connect(&format!("127.0.0.1:{}", get("http_port"))));
    let spawned = std::process::Command::new("sh")
        .arg("-c")
        .arg("setsid sleep 98765 >/dev/null 2>&1 < /dev/null &")
        .status();
    println!("cargo:warning=LEFT-BEHIND spawned: {spawned:?}");
}
"#,
    )
    .unwrap();
}

#[test]
fn a_second_users_hostile_build_reaches_nothing_and_a_normal_build_still_works() {
    let tmp = TempDir::new("hostile");
    let server = Server::start(&tmp.join("data"));
    // The victim: the admin's app with a secret and an unpacked slug.
    server.deploy_component("victim", HELLO);
    server
        .cli(&["config:set", "SECRET=victim-secret-value", "-a", "victim"])
        .ok();
    let victim_slug = unpacked_slug(&server, "victim").join("hello-rust.wasm");
    assert!(victim_slug.is_file());
    let victim_digest = sha256(&victim_slug);
    let victim_cache = support::shared_cache()
        .join("builds")
        .join(app_id(&server, "victim"));
    std::fs::create_dir_all(&victim_cache).unwrap();

    let mallory = server.create_user("mallory");
    server.cli_as(&mallory, &["apps:create", "attacker"]).ok();

    // A path buildpack would run any folder of the server: admin only.
    let refused = server
        .cli_as(&mallory, &["buildpacks:set", "/usr/bin", "-a", "attacker"])
        .failed();
    assert!(all(&refused).contains("only the admin"), "{refused}");

    let app = tmp.join("attacker");
    let api_port = server.api.rsplit(':').next().unwrap().to_string();
    write_attacking_app(
        &app,
        &format!(
            "data={}\npid={}\nvictim_slug={}\nvictim_cache={}\napi_port={api_port}\nhttp_port={}\n",
            server.data.display(),
            server.pid(),
            victim_slug.display(),
            victim_cache.display(),
            server.http_port,
        ),
    );
    // Pushed with git, as the second user, like any app.
    server.git(&app, &["init", "-q", "-b", "main"]).ok();
    server.commit_all(&app, "attack");
    let url = server
        .api
        .replace("http://", &format!("http://renga:{mallory}@"));
    let build = server.git(&app, &["push", &format!("{url}/git/attacker.git"), "main"]);
    let output = all(&build);
    let attacks: Vec<&str> = output.lines().filter(|l| l.contains("ATTACK ")).collect();
    for name in [
        "list-data-folder",
        "read-store",
        "read-server-environ",
        "find-admin-token",
        "see-server-process",
        "inherit-server-files",
        "make-user-namespace",
        "read-other-slug",
        "write-other-slug",
        "list-other-cache",
        "write-tools",
        "write-buildpack",
        "write-system",
        "write-etc",
        "reach-api",
        "reach-api-via-gateway",
        "reach-router",
    ] {
        let line = attacks
            .iter()
            .find(|l| l.contains(&format!("ATTACK {name}:")))
            .unwrap_or_else(|| panic!("the build did not try {name}:\n{output}"));
        assert!(line.contains(": blocked ("), "{line}\n\n{output}");
    }
    assert!(output.contains("LEFT-BEHIND spawned: Ok"), "{output}");
    assert!(!output.contains(ADMIN_TOKEN), "{output}");
    assert!(!output.contains("victim-secret-value"), "{output}");

    // Nothing of the build outlived it, and nothing outside it changed.
    assert!(
        processes_with("sleep 98765").is_empty(),
        "{:?}",
        processes_with("sleep 98765")
    );
    assert_eq!(sha256(&victim_slug), victim_digest);
    assert!(!Path::new("/usr/pwned").exists());
    assert!(!Path::new("/etc/pwned").exists());
    let stats = server.stats();
    assert_eq!(stats["live"]["jails"], 0, "{stats}");
    assert_eq!(stats["live"]["child_processes"], 0, "{stats}");
    assert_eq!(server.app_get("victim", "/").body, "hello from renga\n");

    // The same user's ordinary build works, in the same sandbox.
    server.cli_as(&mallory, &["apps:create", "honest"]).ok();
    let hello = support::copy_app(HELLO, tmp.path());
    let built = server
        .cli_as(&mallory, &["deploy", path(&hello), "-a", "honest"])
        .ok();
    assert!(built.stdout.contains("Released v2"), "{built}");
    assert_eq!(server.app_get("honest", "/").body, "hello from renga\n");
    let stats = server.stats();
    assert_eq!(stats["live"]["jails"], 0, "{stats}");
    assert_eq!(stats["live"]["child_processes"], 0, "{stats}");
}

#[test]
fn a_tampered_unpacked_slug_is_refused_and_unpacked_again() {
    let tmp = TempDir::new("tamper");
    let data = tmp.join("data");
    let server = Server::start(&data);
    server.deploy_component("tampered", HELLO);
    let file = unpacked_slug(&server, "tampered").join("hello-rust.wasm");
    let genuine = sha256(&file);
    // Someone with access to the disk swaps the component for another
    // valid one; the server notices at its next start.
    std::fs::copy(built_component(MISBEHAVE), &file).unwrap();
    server.terminate();
    let server = Server::start(&data);
    assert_eq!(server.app_get("tampered", "/").body, "hello from renga\n");
    assert_eq!(sha256(&file), genuine, "unpacked again from the archive");
    let log = server.logs("tampered");
    assert!(log.contains("does not match the slug's archive"), "{log}");
}

#[test]
fn a_damaged_stored_archive_is_a_server_fault_not_the_apps() {
    let tmp = TempDir::new("damaged");
    let data = tmp.join("data");
    let server = Server::start(&data);
    server.deploy_component("damaged", HELLO);
    let unpacked = unpacked_slug(&server, "damaged");
    let archive = unpacked.with_extension("tgz");
    server.terminate();
    std::fs::remove_dir_all(&unpacked).unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let server = Server::start(&data);
    let restart = server.api_request("DELETE", "/apps/damaged/dynos", Some(ADMIN_TOKEN), None);
    assert_eq!(restart.status, 500, "{}", restart.body);
    assert!(
        restart.body.contains("internal_server_error"),
        "{}",
        restart.body
    );
    assert!(
        restart.body.contains("stored slug archive is damaged"),
        "{}",
        restart.body
    );
}

/// Sends a request and hangs up without reading the answer.
fn abandon(port: u16, host: &str, path: &str) {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    drop(stream);
}

#[test]
fn instances_tasks_and_files_come_back_after_traps_timeouts_and_abandoned_clients() {
    let tmp = TempDir::new("resources");
    let server = Server::start_with(&tmp.join("data"), &["--timeout", "2s"]);
    server.deploy_component("leaky", MISBEHAVE);
    assert_eq!(server.app_get("leaky", "/").body, "ok\n");
    let before = server.wait_for_stats("the baseline", |s| {
        s["live"]["guest_tasks"] == 0 && s["live"]["instances"] == 0
    });

    let port = server.http_port;
    let host = "leaky.localhost".to_string();
    let mut threads = Vec::new();
    for (path, times) in [
        ("/", 200),
        ("/trap", 40),
        ("/overflow", 10),
        ("/oom", 4),
        ("/loop", 4),
        ("/trap-after-head", 20),
        ("/sleep/50", 40),
    ] {
        for chunk in 0..4 {
            let host = host.clone();
            threads.push(std::thread::spawn(move || {
                for _ in (chunk..times).step_by(4) {
                    let _ = support::try_request(
                        "GET",
                        &format!("http://127.0.0.1:{port}{path}"),
                        &[("Host", &host)],
                        None,
                    );
                }
            }));
        }
    }
    for _ in 0..20 {
        abandon(port, &host, "/sleep/300");
        abandon(port, &host, "/trap-after-head");
    }
    for thread in threads {
        thread.join().unwrap();
    }
    // Kept instances, then back to a fresh one per request.
    server
        .cli(&["ps:type", "web=standard-1x", "--reuse", "20", "-a", "leaky"])
        .ok();
    for _ in 0..60 {
        server.app_get("leaky", "/count");
    }
    server.app_get("leaky", "/trap");
    server
        .cli(&["ps:type", "web=standard-1x", "--reuse", "0", "-a", "leaky"])
        .ok();

    let after = server.wait_for_stats("instances and tasks", |s| {
        s["live"]["guest_tasks"] == 0
            && s["live"]["instances"] == 0
            && s["live"]["tasks"].as_u64() <= before["live"]["tasks"].as_u64()
            && s["live"]["open_files"].as_u64() <= before["live"]["open_files"].as_u64()
    });
    assert_eq!(after["live"]["jails"], 0, "{after:#}");
    assert_eq!(after["live"]["one_off_dynos"], 0, "{after:#}");
    assert_eq!(
        after["live"]["child_processes"], before["live"]["child_processes"],
        "{after:#}"
    );
    assert_eq!(server.app_get("leaky", "/").body, "ok\n");
}

/// A slug whose only component is the command guest, with `console:` as a
/// process type for one-off dynos.
fn deploy_console(server: &Server, tmp: &Path, app: &str) {
    server.cli(&["apps:create", app]).ok();
    let procfile = tmp.join("Procfile.console");
    std::fs::write(&procfile, "console: command.wasm\n").unwrap();
    let command = tmp.join("command.wasm");
    std::fs::copy(built_component(COMMAND), &command).unwrap();
    server
        .cli(&[
            "deploy",
            "--component",
            path(&command),
            "--procfile",
            path(&procfile),
            "-a",
            app,
        ])
        .ok();
}

fn run_dynos(server: &Server, app: &str) -> usize {
    server
        .cli(&["ps", "-a", app])
        .ok()
        .stdout
        .lines()
        .filter(|l| l.starts_with("run."))
        .count()
}

fn wait_for_run_dynos(server: &Server, app: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while run_dynos(server, app) != count {
        assert!(
            Instant::now() < deadline,
            "ps never showed {count} one-off dynos:\n{}",
            server.cli(&["ps", "-a", app]).ok().stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_app_cannot_flood_the_pool_with_one_off_dynos() {
    let tmp = TempDir::new("one-offs");
    let server = Server::start(&tmp.join("data"));
    server.deploy_component("neighbour", HELLO);
    deploy_console(&server, tmp.path(), "flood");
    let steady = Steady::start_with_host(
        format!("http://127.0.0.1:{}/", server.http_port),
        Some("neighbour.localhost".into()),
        "hello from renga",
    );
    let start_one = || {
        server.cli(&[
            "run:detached",
            "-a",
            "flood",
            "--",
            "console",
            "sleep",
            "120",
        ])
    };
    for _ in 0..renga::platform::MAX_ONE_OFFS {
        start_one().ok();
    }
    let refused = start_one().failed();
    assert!(
        all(&refused).contains("at most 10 one-off dynos"),
        "{refused}"
    );
    wait_for_run_dynos(&server, "flood", 10);

    server.cli(&["ps:stop", "run.3", "-a", "flood"]).ok();
    wait_for_run_dynos(&server, "flood", 9);
    // A restart stops one-off dynos (they are not restarted).
    server.cli(&["ps:restart", "-a", "flood"]).ok();
    wait_for_run_dynos(&server, "flood", 0);

    for _ in 0..2 {
        start_one().ok();
    }
    wait_for_run_dynos(&server, "flood", 2);
    server
        .cli(&["apps:destroy", "-a", "flood", "--confirm", "flood"])
        .ok();
    server.wait_for_stats("one-off dynos", |s| {
        s["live"]["one_off_dynos"] == 0 && s["live"]["instances"] == 0
    });
    let (ok, failures) = steady.stop();
    assert!(ok > 0 && failures.is_empty(), "{ok} ok, {failures:?}");
}

#[test]
fn a_config_var_flood_is_refused_and_stalls_no_one() {
    let tmp = TempDir::new("config-flood");
    let server = Server::start(&tmp.join("data"));
    server.deploy_component("neighbour", HELLO);
    server.cli(&["apps:create", "flooder"]).ok();
    let steady = Steady::start_with_host(
        format!("http://127.0.0.1:{}/", server.http_port),
        Some("neighbour.localhost".into()),
        "hello from renga",
    );
    let vars = |n: usize| -> Vec<u8> {
        let map: serde_json::Map<String, Value> =
            (0..n).map(|i| (format!("K{i}"), json!("v"))).collect();
        serde_json::to_vec(&map).unwrap()
    };
    let flood = server.api_request(
        "PATCH",
        "/apps/flooder/config-vars",
        Some(ADMIN_TOKEN),
        Some(&vars(60_000)),
    );
    assert_eq!(flood.status, 422, "{}", flood.body);
    assert!(
        flood.body.contains("at most 500 config vars"),
        "{}",
        flood.body
    );
    let most = server.api_request(
        "PATCH",
        "/apps/flooder/config-vars",
        Some(ADMIN_TOKEN),
        Some(&vars(500)),
    );
    assert_eq!(most.status, 200, "{}", most.body);
    let one_more = server.api_request(
        "PATCH",
        "/apps/flooder/config-vars",
        Some(ADMIN_TOKEN),
        Some(br#"{"ONE_MORE": "v"}"#),
    );
    assert_eq!(one_more.status, 422, "{}", one_more.body);
    let big = serde_json::to_vec(&json!({ "K1": "x".repeat(70 << 10) })).unwrap();
    let too_big = server.api_request(
        "PATCH",
        "/apps/flooder/config-vars",
        Some(ADMIN_TOKEN),
        Some(&big),
    );
    assert_eq!(too_big.status, 422, "{}", too_big.body);
    assert!(too_big.body.contains("64 KiB"), "{}", too_big.body);
    let releases = server.cli(&["releases", "-a", "flooder", "--json"]).ok();
    let releases: Value = serde_json::from_str(&releases.stdout).unwrap();
    assert_eq!(
        releases.as_array().unwrap().len(),
        2,
        "only the 500 vars made a release"
    );
    let (ok, failures) = steady.stop();
    assert!(ok > 0 && failures.is_empty(), "{ok} ok, {failures:?}");
}

/// A gzipped tarball of `entries` (path, size of zeros).
fn tarball(entries: &[(String, usize)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    for (name, size) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(*size as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, std::io::repeat(0).take(*size as u64))
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

use std::io::Read as _;

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_slug_bomb_is_refused_and_leaves_nothing_behind() {
    let tmp = TempDir::new("bomb");
    let server = Server::start_with(&tmp.join("data"), &["--max-unpacked", "8MiB"]);
    server.cli(&["apps:create", "bomb"]).ok();
    let slug = server.api_request(
        "POST",
        "/apps/bomb/slugs",
        Some(ADMIN_TOKEN),
        Some(br#"{"process_types": {"web": "app.wasm"}}"#),
    );
    let slug: Value = serde_json::from_str(&slug.body).unwrap();
    let blob = slug["blob"]["url"].as_str().unwrap();
    let put = |bytes: &[u8]| {
        request(
            "PUT",
            blob,
            &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            Some(bytes),
        )
    };
    let big = tarball(&[("app.wasm".into(), 64 << 20)]);
    assert!(big.len() < 1 << 20, "the bomb is small: {}", big.len());
    let refused = put(&big);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("unpacks to more than 8 MiB"),
        "{}",
        refused.body
    );
    let many: Vec<(String, usize)> = (0..50_001).map(|i| (format!("f/{i}"), 0)).collect();
    let refused = put(&tarball(&many));
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("more than 50000 files"),
        "{}",
        refused.body
    );

    // The same bomb as a source: the build fails, saying why.
    let source = server.api_request("POST", "/sources", Some(ADMIN_TOKEN), None);
    let source: Value = serde_json::from_str(&source.body).unwrap();
    let put_url = source["source_blob"]["put_url"].as_str().unwrap();
    let uploaded = request(
        "PUT",
        put_url,
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        Some(&big),
    );
    assert_eq!(uploaded.status, 200, "{}", uploaded.body);
    let body = serde_json::to_vec(&json!({ "source_blob": { "url": put_url } })).unwrap();
    let build = server.api_request("POST", "/apps/bomb/builds", Some(ADMIN_TOKEN), Some(&body));
    assert_eq!(build.status, 201, "{}", build.body);
    let build: Value = serde_json::from_str(&build.body).unwrap();
    let output = request(
        "GET",
        build["output_stream_url"].as_str().unwrap(),
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert!(
        output.body.contains("unpacks to more than 8 MiB"),
        "{}",
        output.body
    );

    assert!(leftovers(&server.data.join("slugs")).is_empty());
    assert!(leftovers(&server.data.join("sources")).is_empty());
    let work = server.data.join("builds/work");
    assert!(
        std::fs::read_dir(&work).map_or(true, |mut d| d.next().is_none()),
        "{:?}",
        std::fs::read_dir(&work).map(|d| d.count())
    );
}

#[test]
fn a_misbehaving_app_does_not_fail_its_neighbours_requests() {
    let tmp = TempDir::new("neighbour");
    let server = Server::start_with(&tmp.join("data"), &["--timeout", "2s"]);
    server.deploy_component("rowdy", MISBEHAVE);
    server.deploy_component("quiet", HELLO);
    let url = format!("http://127.0.0.1:{}/", server.http_port);
    let steady: Vec<Steady> = (0..2)
        .map(|_| {
            Steady::start_with_host(
                url.clone(),
                Some("quiet.localhost".into()),
                "hello from renga",
            )
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = server.http_port;
    let rowdy: Vec<_> = ["/loop", "/loop", "/loop", "/trap", "/oom", "/overflow"]
        .into_iter()
        .map(|path| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = support::try_request(
                        "GET",
                        &format!("http://127.0.0.1:{port}{path}"),
                        &[("Host", "rowdy.localhost")],
                        None,
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in rowdy {
        thread.join().unwrap();
    }
    for steady in steady {
        let (ok, failures) = steady.stop();
        assert!(ok > 0 && failures.is_empty(), "{ok} ok, {failures:?}");
    }
    server.wait_for_stats("the CPU queue", |s| {
        s["waiting_for_cpu"] == 0 && s["live"]["guest_tasks"] == 0
    });
}

#[test]
fn secrets_at_rest_are_private_and_tokens_can_be_listed_made_and_revoked() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("secrets");
    let data = tmp.join("data");
    let server = Server::start(&data);
    server.cli(&["apps:create", "private"]).ok();
    server
        .cli(&["config:set", "API_KEY=sekrit", "-a", "private"])
        .ok();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for entry in std::fs::read_dir(data.join("db")).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }

    let listed = server.cli(&["auth:tokens"]).ok();
    assert!(
        listed.stdout.contains("from $RENGA_ADMIN_TOKEN"),
        "{listed}"
    );
    let created = server
        .cli(&["auth:tokens:create", "--description", "deploys from CI"])
        .ok();
    let token = created.stdout.lines().last().unwrap().trim().to_string();
    let id = created
        .stdout
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches('.')
        .to_string();
    assert!(
        server
            .cli_as(&token, &["apps"])
            .ok()
            .stdout
            .contains("private")
    );
    let listed = server.cli(&["auth:tokens"]).ok();
    assert!(listed.stdout.contains("deploys from CI"), "{listed}");
    assert!(
        !listed.stdout.contains(&token),
        "a token is shown once only"
    );
    server.cli(&["auth:revoke", &id]).ok();
    let denied = server.cli_as(&token, &["apps"]).failed();
    assert!(all(&denied).contains("Invalid credentials"), "{denied}");

    // A new $RENGA_ADMIN_TOKEN replaces the old one.
    server.terminate();
    let server =
        Server::start_with_env(&data, &[], &[("RENGA_ADMIN_TOKEN", "rotated-admin-token")]);
    let old = server.api_request("GET", "/apps", Some(ADMIN_TOKEN), None);
    assert_eq!(old.status, 401, "{}", old.body);
    let new = server.api_request("GET", "/apps", Some("rotated-admin-token"), None);
    assert_eq!(new.status, 200, "{}", new.body);
}

// ---- regressions: each pins one defect found while hardening --------------

#[test]
fn a_symlinked_procfile_is_not_followed_by_the_server() {
    let tmp = TempDir::new("procfile-link");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "linked"]).ok();
    let bp = tmp.join("plain-bp");
    std::fs::create_dir_all(bp.join("bin")).unwrap();
    for (name, text) in [
        ("detect", "#!/bin/sh\necho Plain\n"),
        (
            "compile",
            "#!/bin/sh\ncp \"$1/vendor/app.wasm\" \"$1/app.wasm\"\n",
        ),
    ] {
        let file = bp.join("bin").join(name);
        std::fs::write(&file, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    server
        .cli(&["buildpacks:set", path(&bp), "-a", "linked"])
        .ok();
    let site = tmp.join("site");
    std::fs::create_dir_all(site.join("vendor")).unwrap();
    std::fs::copy(built_component(HELLO), site.join("vendor/app.wasm")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", site.join("Procfile")).unwrap();
    let build = server
        .cli(&["deploy", path(&site), "-a", "linked"])
        .failed();
    let output = all(&build);
    assert!(
        output.contains("Procfile must be a regular file"),
        "{output}"
    );
    assert!(!output.contains("root:x:0:0"), "{output}");
}

#[test]
fn an_idle_period_of_two_to_the_64_over_1000_seconds_is_refused_not_wrapped() {
    let tmp = TempDir::new("idle-wrap");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "sleepy"]).ok();
    let body = format!("{{\"idle_after\": {}}}", u64::MAX / 1000);
    let refused = server.api_request(
        "PATCH",
        "/apps/sleepy",
        Some(ADMIN_TOKEN),
        Some(body.as_bytes()),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("longer than the longest"),
        "{}",
        refused.body
    );
}

#[test]
fn a_nul_in_a_config_value_is_refused() {
    let tmp = TempDir::new("nul");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "nul"]).ok();
    let refused = server.api_request(
        "PATCH",
        "/apps/nul/config-vars",
        Some(ADMIN_TOKEN),
        Some(br#"{"TOKEN": "abc\u0000def"}"#),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("NUL"), "{}", refused.body);
    let config = server.cli(&["config", "-a", "nul", "--json"]).ok();
    assert!(!config.stdout.contains("TOKEN"), "{config}");
}

#[test]
fn upload_urls_come_from_the_public_address_not_the_host_header() {
    let tmp = TempDir::new("public-url");
    let server = Server::start_with(
        &tmp.join("data"),
        &["--public-url", "https://renga.example.test/"],
    );
    let source = request(
        "POST",
        &format!("{}/sources", server.api),
        &[
            ("Authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("Host", "attacker.example"),
        ],
        None,
    );
    assert_eq!(source.status, 201, "{}", source.body);
    let source: Value = serde_json::from_str(&source.body).unwrap();
    let put_url = source["source_blob"]["put_url"].as_str().unwrap();
    assert!(
        put_url.starts_with("https://renga.example.test/sources/"),
        "{put_url}"
    );
    let app = server.api_request(
        "POST",
        "/apps",
        Some(ADMIN_TOKEN),
        Some(br#"{"name": "public"}"#),
    );
    assert!(
        app.body
            .contains("\"git_url\": \"https://renga.example.test/git/public.git\""),
        "{}",
        app.body
    );
}

/// A log session's URL is its credential, as Heroku's `logplex_url` is: it
/// opens without a token, only for an app its creator can reach, and no
/// longer once the app is gone.
#[test]
fn a_log_session_opens_by_its_url_only_while_its_app_exists() {
    let tmp = TempDir::new("log-session");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "watched"]).ok();
    let mallory = server.create_user("mallory");
    let theirs = server.api_request(
        "POST",
        "/apps/watched/log-sessions",
        Some(&mallory),
        Some(b"{}"),
    );
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    let session = server.api_request(
        "POST",
        "/apps/watched/log-sessions",
        Some(ADMIN_TOKEN),
        Some(b"{}"),
    );
    let session: Value = serde_json::from_str(&session.body).unwrap();
    let url = session["logplex_url"].as_str().unwrap();
    let mine = request("GET", url, &[], None);
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert!(mine.body.contains("Release v1 created"), "{}", mine.body);

    // Tails that no line passes, plain and event-stream, end when their
    // clients hang up.
    let before = server.wait_for_stats("the baseline", |_| true);
    for accept in ["text/plain", "text/event-stream"] {
        for _ in 0..5 {
            use std::io::{Read as _, Write as _};
            let session = server.api_request(
                "POST",
                "/apps/watched/log-sessions",
                Some(ADMIN_TOKEN),
                Some(br#"{"tail": true, "dyno": "nosuch"}"#),
            );
            let session: Value = serde_json::from_str(&session.body).unwrap();
            let path = session["logplex_url"].as_str().unwrap();
            let path = &path[path.find("/log-sessions/").unwrap()..];
            let port: u16 = server.api.rsplit(':').next().unwrap().parse().unwrap();
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
            )
            .unwrap();
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"HTTP/1.1 200", "{accept}");
        }
    }
    server.wait_for_stats("tasks after abandoned tails", |s| {
        s["live"]["tasks"].as_u64() <= before["live"]["tasks"].as_u64()
    });

    server
        .cli(&["apps:destroy", "-a", "watched", "--confirm", "watched"])
        .ok();
    let gone = request("GET", url, &[], None);
    assert_eq!(gone.status, 404, "{}", gone.body);
}

#[test]
fn a_non_gzip_upload_error_does_not_echo_its_bytes() {
    let tmp = TempDir::new("echo");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "echo"]).ok();
    let slug = server.api_request(
        "POST",
        "/apps/echo/slugs",
        Some(ADMIN_TOKEN),
        Some(br#"{"process_types": {"web": "app.wasm"}}"#),
    );
    let slug: Value = serde_json::from_str(&slug.body).unwrap();
    // A plain tar header whose name, mode and checksum fields hold escape
    // sequences and NULs.
    let mut junk = vec![b'A'; 512];
    let name = b"\x1b[31mowned\x00";
    junk[..name.len()].copy_from_slice(name);
    junk[100..108].copy_from_slice(b"\x1b]0;x\x07\x00\x01");
    junk[148..156].copy_from_slice(b"\x1b\x1b\x1b\x1b\x00\x00\x00\x00");
    let refused = request(
        "PUT",
        slug["blob"]["url"].as_str().unwrap(),
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        Some(&junk),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    let message: Value = serde_json::from_str(&refused.body).unwrap();
    let message = message["message"].as_str().unwrap();
    assert!(
        !message.chars().any(|c| c.is_control()),
        "control characters in {message:?}"
    );
}

#[test]
fn a_guest_failing_after_its_response_head_is_logged_as_an_error() {
    let tmp = TempDir::new("late-trap");
    let server = Server::start(&tmp.join("data"));
    server.deploy_component("late", MISBEHAVE);
    let reply = support::try_request(
        "GET",
        &format!("http://127.0.0.1:{}/trap-after-head", server.http_port),
        &[("Host", "late.localhost")],
        None,
    );
    assert!(
        reply.as_ref().map_or(true, |r| !r.body.contains("chunk 2")),
        "{reply:?}"
    );
    server.wait_for_log("late", Duration::from_secs(10), |log| {
        log.lines().any(|l| {
            l.contains("renga[router]")
                && l.contains("path=\"/trap-after-head\"")
                && l.contains("at=error code=H18")
        }) && log.contains("Error (Guest failed while responding)")
    });
    let log = server.logs("late");
    assert!(log.contains("the /trap-after-head route panics"), "{log}");
}

#[test]
fn apps_info_into_a_closed_pipe_does_not_panic() {
    let tmp = TempDir::new("pipe");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "piped"]).ok();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' apps:info -a piped | head -c 1",
            support::renga().display()
        ))
        .env("RENGA_API_URL", &server.api)
        .env("RENGA_API_KEY", ADMIN_TOKEN)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_oversized_body_is_refused_before_the_app_is_woken() {
    let tmp = TempDir::new("body-wake");
    let server = Server::start_with(&tmp.join("data"), &["--max-body", "1KiB"]);
    server.deploy_component("asleep", HELLO);
    server.cli(&["ps:idle", "1s", "-a", "asleep"]).ok();
    server.wait_for_log("asleep", Duration::from_secs(20), |log| {
        log.contains("unloaded 1 web dyno(s)")
    });
    let refused = request(
        "POST",
        &format!("http://127.0.0.1:{}/", server.http_port),
        &[("Host", "asleep.localhost")],
        Some(&vec![b'x'; 4096]),
    );
    assert_eq!(refused.status, 413, "{}", refused.body);
    std::thread::sleep(Duration::from_millis(300));
    let log = server.logs("asleep");
    assert!(!log.contains("Woke"), "{log}");
    assert!(
        server
            .cli(&["ps", "-a", "asleep"])
            .ok()
            .stdout
            .contains("web.1: idle"),
        "the app still sleeps"
    );
}

#[test]
fn a_release_phase_that_outruns_its_follower_is_followed_to_its_end() {
    let tmp = TempDir::new("chatty-release");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "chatty"]).ok();
    let app = tmp.join("chatty");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(built_component(HELLO), app.join("hello.wasm")).unwrap();
    std::fs::copy(built_component(COMMAND), app.join("command.wasm")).unwrap();
    std::fs::write(
        app.join("Procfile"),
        "web: hello.wasm\nrelease: command.wasm lines 30000\n",
    )
    .unwrap();
    let deployed = server.cli(&["deploy", path(&app), "-a", "chatty"]).ok();
    assert!(
        deployed.stdout.contains("Running release command"),
        "{deployed}"
    );
    let lines: Vec<&str> = deployed.stdout.lines().collect();
    let done = lines
        .iter()
        .position(|l| l.trim() == "done")
        .unwrap_or_else(|| {
            panic!(
                "the release's last line never arrived:\n{}",
                deployed.stdout
            )
        });
    assert!(
        lines[done..].iter().any(|l| l.contains("Released v2")),
        "{deployed}"
    );
}
