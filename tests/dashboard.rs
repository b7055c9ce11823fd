//! The dashboard in a real browser: Debian's headless Chromium, driven by
//! puppeteer-core (installed by scripts/setup from npm into a cache outside
//! the repository) through `tests/dashboard/drive.cjs`, against a real
//! `renga server`. What the browser did is then checked through the CLI, and
//! its screenshot is kept in `target/artifacts/dashboard.png`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::{ADMIN_TOKEN, Server, TempDir};

const HELLO: &str = "examples/hello-rust";
const PUPPETEER_VERSION: &str = "24.43.1";

fn puppeteer() -> PathBuf {
    support::npm_tool(
        &format!("puppeteer-core-{PUPPETEER_VERSION}"),
        "node_modules/puppeteer-core",
    )
}

fn chromium() -> PathBuf {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.expect("Chromium is not installed: run scripts/setup")
}

#[test]
fn a_user_logs_in_scales_sets_config_sees_the_release_and_the_log_and_rolls_back() {
    let tmp = TempDir::new("dashboard");
    let server = Server::start(&tmp.join("data"));
    server.deploy_component("shop", HELLO);
    server
        .cli(&["addons:create", "renga-kv", "-a", "shop"])
        .ok();
    // Traffic for the graphs: sampled every 10 s, so it is in the history
    // by the time the browser looks for it.
    for _ in 0..30 {
        assert_eq!(server.app_get("shop", "/").status, 200);
    }

    // The page and its assets need no token and forbid everything but
    // themselves; the API behind them still needs one.
    let page = support::get(&format!("{}/dashboard", server.api));
    assert_eq!(page.status, 200);
    let policy = page
        .header("content-security-policy")
        .expect("a Content-Security-Policy");
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"));
    assert!(page.body.contains("/dashboard/app.js"));
    assert_eq!(
        server
            .api_request("GET", "/apps/shop/metrics", None, None)
            .status,
        401
    );
    // A refused Bearer token is challenged as one: a Basic challenge would
    // make the browser stop the dashboard's request to ask for a password.
    let refused = server.api_request("GET", "/account", Some("not-a-token"), None);
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer ")),
        "{refused:?}"
    );
    let baseline = server.wait_for_stats("the baseline", |_| true);

    let artifacts = support::repo().join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tmp.join("chromium-profile");
    let output = Command::new("node")
        .arg(support::repo().join("tests/dashboard/drive.cjs"))
        .env("PUPPETEER", puppeteer())
        .env("CHROMIUM", chromium())
        .env("PROFILE", &profile)
        .env("RENGA_API", &server.api)
        .env("RENGA_TOKEN", ADMIN_TOKEN)
        .env("APP", "shop")
        .env("HTTP_PORT", server.http_port.to_string())
        .env("SCREENSHOT", &screenshot)
        .env("HOME", tmp.path())
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser's run failed:\n{stdout}\n{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let released = summary["released"].as_u64().unwrap();
    let rolled_back_to = summary["rolled_back_to"].as_u64().unwrap();

    // What the browser did, seen through the CLI.
    let ps = server.cli(&["ps", "-a", "shop"]).ok().stdout;
    assert!(ps.contains("web.2"), "{ps}");
    let releases = server.cli(&["releases", "-a", "shop"]).ok().stdout;
    assert!(
        releases.contains(&format!("v{released}")) && releases.contains("Set GREETING config vars"),
        "{releases}"
    );
    assert!(
        releases.contains(&format!("Rollback to v{rolled_back_to}")),
        "{releases}"
    );
    let config = server.cli(&["config", "-a", "shop"]).ok().stdout;
    assert!(
        !config.contains("GREETING"),
        "the rollback kept it:\n{config}"
    );

    // The graphs' figures, as the API gives them: the 30 requests made
    // before the browser came (and the browser's own), their latency and
    // the memory they took; the app's owner sees them, a stranger does not.
    let history = server.api_request("GET", "/apps/shop/metrics", Some(ADMIN_TOKEN), None);
    assert_eq!(history.status, 200, "{history:?}");
    let history: serde_json::Value = serde_json::from_str(&history.body).unwrap();
    let samples = history["samples"].as_array().unwrap();
    let requests: u64 = samples
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    assert!(requests >= 30, "{history:#}");
    assert!(
        samples.iter().any(
            |s| s["latency_ms"]["p99"].as_f64().is_some_and(|ms| ms > 0.0)
                && s["memory_bytes"].as_u64() > Some(0)
        ),
        "{history:#}"
    );
    let stranger = server.create_user("stranger");
    let refused = server.api_request("GET", "/apps/shop/metrics", Some(&stranger), None);
    assert!(
        refused.status == 403 || refused.status == 404,
        "{refused:?}"
    );

    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );

    // The browser is gone: its log tails end, and with them their tasks.
    server.wait_for_stats("the dashboard's log tails", |s| {
        s["live"]["tasks"].as_u64() <= baseline["live"]["tasks"].as_u64()
            && s["live"]["open_files"].as_u64() <= baseline["live"]["open_files"].as_u64()
    });
}
