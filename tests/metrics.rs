//! Metrics end to end: a real `renga server` counts what its apps do and
//! shows it at `/metrics` in Prometheus's text format (each user their own
//! apps, the admin everything and the host), and writes Heroku's
//! `log-runtime-metrics` sample lines to an app's log when the app turns
//! the feature on.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::{ADMIN_TOKEN, Server, TempDir};

const HELLO: &str = "examples/hello-rust";
const COUNTER: &str = "examples/counter-rust";

/// `/metrics` as `token` sees it: each sample by its name and labels.
fn scrape(server: &Server, token: &str) -> HashMap<String, f64> {
    let reply = server.api_request("GET", "/metrics", Some(token), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{reply:?}"
    );
    let mut samples = HashMap::new();
    for line in reply.body.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a sample: {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {:#?}", sorted(samples)))
}

fn sorted(samples: &HashMap<String, f64>) -> Vec<(&String, &f64)> {
    let mut all: Vec<_> = samples.iter().collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    all
}

#[test]
fn metrics_count_requests_instances_memory_and_addon_calls() {
    let tmp = TempDir::new("metrics");
    let server = Server::start_with(&tmp.join("data"), &["--runtime-metrics-every", "1s"]);
    server.deploy_component("hello", HELLO);
    for i in 0..20 {
        assert_eq!(server.app_get("hello", &format!("/n/{i}")).status, 200);
    }
    // With no web dyno the router answers 503 itself (H14), without a dyno.
    server.cli(&["ps:scale", "web=0", "-a", "hello"]).ok();
    assert_eq!(server.app_get("hello", "/").status, 503);
    server.cli(&["ps:scale", "web=1", "-a", "hello"]).ok();

    // An app of another user, with an add-on its guest calls.
    let ann = server.create_user("ann@example.com");
    server.cli_as(&ann, &["apps:create", "counter"]).ok();
    let file = support::built_component(COUNTER);
    server
        .cli_as(&ann, &["addons:create", "renga-kv", "-a", "counter"])
        .ok();
    server
        .cli_as(
            &ann,
            &[
                "deploy",
                "--component",
                file.to_str().unwrap(),
                "-a",
                "counter",
            ],
        )
        .ok();
    for _ in 0..3 {
        assert_eq!(server.app_get("counter", "/").status, 200);
    }

    let all = scrape(&server, ADMIN_TOKEN);
    let web = r#"app="hello",dyno="web.1""#;
    assert_eq!(
        sample(
            &all,
            &format!(r#"renga_router_requests_total{{{web},status="2xx"}}"#)
        ),
        20.0
    );
    assert_eq!(
        sample(
            &all,
            r#"renga_router_requests_total{app="hello",dyno="router",status="5xx"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &all,
            &format!("renga_router_service_seconds_count{{{web}}}")
        ),
        20.0
    );
    assert_eq!(
        sample(
            &all,
            &format!(r#"renga_router_service_seconds_bucket{{{web},le="+Inf"}}"#)
        ),
        20.0
    );
    assert!(sample(&all, &format!("renga_router_service_seconds_sum{{{web}}}")) > 0.0);
    // A fresh instance per request.
    assert!(sample(&all, &format!("renga_dyno_instances_total{{{web}}}")) >= 20.0);
    assert!(sample(&all, &format!("renga_dyno_cpu_seconds_total{{{web}}}")) > 0.0);
    assert!(
        sample(
            &all,
            &format!("renga_dyno_instance_memory_peak_bytes{{{web}}}")
        ) >= 65536.0
    );
    assert_eq!(
        sample(&all, &format!("renga_dyno_addon_calls_total{{{web}}}")),
        0.0
    );
    let counter = r#"app="counter",dyno="web.1""#;
    assert!(sample(&all, &format!("renga_dyno_addon_calls_total{{{counter}}}")) >= 3.0);
    assert!(sample(&all, "renga_host_instance_pool_size") > 0.0);
    assert!(sample(&all, "renga_host_resident_memory_bytes") > 1e6);
    assert!(all.contains_key("renga_host_instances"));

    // A user sees their own apps, and nothing of the host or of others.
    let anns = scrape(&server, &ann);
    assert!(
        anns.keys().any(|k| k.contains(r#"app="counter""#)),
        "{anns:?}"
    );
    assert!(
        !anns.keys().any(|k| k.contains(r#"app="hello""#)),
        "{anns:?}"
    );
    assert!(
        !anns.keys().any(|k| k.starts_with("renga_host_")),
        "{anns:?}"
    );
    let anonymous = server.api_request("GET", "/metrics", None, None);
    assert_eq!(anonymous.status, 401);

    // Heroku's log-runtime-metrics, turned on with labs:enable.
    let labs = server.cli(&["labs", "-a", "hello"]).ok().stdout;
    assert!(labs.contains("[ ] log-runtime-metrics"), "{labs}");
    server
        .cli(&["labs:enable", "log-runtime-metrics", "-a", "hello"])
        .ok();
    assert!(
        server
            .cli(&["labs", "-a", "hello"])
            .ok()
            .stdout
            .contains("[+] log-runtime-metrics")
    );
    let refused = server
        .cli(&["labs:enable", "no-such-feature", "-a", "hello"])
        .failed();
    assert!(
        refused.stderr.contains("Couldn't find that feature"),
        "{refused}"
    );
    let sample_line = regex::Regex::new(
        r"renga\[web\.1\]: source=web\.1 dyno=renga\.\S+\.web\.1 sample#memory_total=\d+\.\d\dMB sample#memory_rss=\d+\.\d\dMB sample#memory_cache=0\.00MB sample#memory_swap=0\.00MB sample#memory_quota=\d+\.\d\dMB sample#instances_total=\d+",
    )
    .unwrap();
    server.wait_for_log("hello", Duration::from_secs(20), |log| {
        sample_line.is_match(log)
            && log.contains("source=web.1 dyno=renga.")
            && log.contains("sample#load_avg_1m=")
    });
    server
        .cli(&["labs:disable", "log-runtime-metrics", "-a", "hello"])
        .ok();
    std::thread::sleep(Duration::from_millis(1500));
    let count = |log: &str| log.matches("sample#memory_total=").count();
    let before = count(&server.logs("hello"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        count(&server.logs("hello")),
        before,
        "lines stop once it is off"
    );
    // Another user's app has it off.
    let counter_log = server
        .cli_as(&ann, &["logs", "-n", "1500", "-a", "counter"])
        .ok()
        .stdout;
    assert!(
        !counter_log.contains("sample#memory_total="),
        "{counter_log}"
    );
}
