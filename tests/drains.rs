//! Log drains end to end: a real `renga server` sends an app's log to a
//! real rsyslog (over TCP and over TLS, started here on ephemeral ports)
//! and to an HTTP receiver, in Heroku's framing and in order; a drain that
//! is down loses its oldest lines, never slows the app, and says so as L10;
//! removed drains leave no task or connection behind.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::drain_receiver::{Post, Receiver};
use support::{Rsyslog, Server, TempDir, free_port, make_certs};

const HELLO: &str = "examples/hello-rust";

/// Waits for `done` on what `read` returns; panics with it if it never holds.
fn wait_until<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    read: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let value = read();
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened: {value:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `i`s of the router lines for `/{prefix}/{i}` in `lines`, in order.
fn request_numbers(lines: &[String], prefix: &str) -> Vec<usize> {
    let needle = format!("path=\"/{prefix}/");
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .collect()
}

/// `renga drains -a APP`'s token for `url`.
fn token_of(server: &Server, app: &str, url: &str) -> String {
    let listed = server.cli(&["drains", "--json", "-a", app]).ok().stdout;
    let drains: serde_json::Value = serde_json::from_str(&listed).unwrap();
    drains
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["url"] == url)
        .unwrap_or_else(|| panic!("{url} is not among the drains: {listed}"))["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn drains_carry_the_log_to_rsyslog_and_http_receivers_in_order() {
    let tmp = TempDir::new("drains");
    let certs_dir = tmp.join("certs");
    std::fs::create_dir_all(&certs_dir).unwrap();
    let certs = make_certs(&certs_dir);
    let server = Server::start_with(
        &tmp.join("data"),
        &[
            "--allow-private-drains",
            "--drain-ca",
            certs.ca.to_str().unwrap(),
        ],
    );
    server.deploy_component("drained", HELLO);
    let before = server.wait_for_stats("the baseline", |_| true);

    let http = Receiver::start();
    let syslog = Rsyslog::start(&tmp.join("rsyslog"), None);
    let tls = Rsyslog::start(&tmp.join("rsyslog-tls"), Some(&certs));
    let http_url = format!(
        "http://user:s%40cret@127.0.0.1:{}/logs?app=drained",
        http.port
    );
    let syslog_url = format!("syslog://127.0.0.1:{}", syslog.port);
    let tls_url = format!("syslog+tls://localhost:{}", tls.port);
    // The certificate names localhost only: by IP address it is refused.
    let wrong_name_url = format!("syslog+tls://127.0.0.1:{}", tls.port);
    let dead_url = format!("syslog://127.0.0.1:{}", free_port());
    for url in [&http_url, &syslog_url, &tls_url, &wrong_name_url, &dead_url] {
        let added = server.cli(&["drains:add", url, "-a", "drained"]).ok();
        assert!(added.stdout.contains("Added drain"), "{added}");
    }

    // What no drain may be.
    let sixth = server
        .cli(&[
            "drains:add",
            "https://logs.example.com/sixth",
            "-a",
            "drained",
        ])
        .failed();
    assert!(sixth.stderr.contains("already has 5 drains"), "{sixth}");
    let again = server
        .cli(&["drains:add", &syslog_url, "-a", "drained"])
        .failed();
    assert!(again.stderr.contains("already drains to"), "{again}");
    for (bad, says) in [
        ("udp://127.0.0.1:514", "UDP is not supported"),
        ("syslog://127.0.0.1", "needs a port"),
        ("not a url", "invalid drain URL"),
    ] {
        let refused = server.cli(&["drains:add", bad, "-a", "drained"]).failed();
        assert!(refused.stderr.contains(says), "{bad}: {refused}");
    }

    let tokens: HashMap<&str, String> = [
        ("http", &http_url),
        ("syslog", &syslog_url),
        ("tls", &tls_url),
    ]
    .into_iter()
    .map(|(k, url)| (k, token_of(&server, "drained", url)))
    .collect();
    let listed = server.cli(&["drains", "-a", "drained"]).ok().stdout;
    for token in tokens.values() {
        assert!(listed.contains(token.as_str()), "{listed}");
    }

    const N: usize = 40;
    for i in 0..N {
        assert_eq!(
            server.app_get("drained", &format!("/drained/{i}")).status,
            200
        );
    }
    let all: Vec<usize> = (0..N).collect();

    // HTTP: Heroku's logplex batches, every frame an RFC 5424 message.
    let frames = wait_until(
        "the HTTP drain's router lines",
        Duration::from_secs(30),
        || http.frames("/logs?app=drained"),
        |frames| request_numbers(frames, "drained") == all,
    );
    let rfc5424 = regex::Regex::new(
        r"^<(190|158)>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 d\.[0-9a-f-]{36} (app|renga) [!-~]{1,128} - - ",
    )
    .unwrap();
    for frame in &frames {
        assert!(rfc5424.is_match(frame), "not an RFC 5424 frame: {frame:?}");
        assert!(frame.contains(&format!(" {} ", tokens["http"])), "{frame}");
    }
    assert!(
        frames.iter().any(|f| f.starts_with("<158>1")
            && f.contains(" renga router - - at=info method=GET path=\"/drained/7\"")),
        "{frames:#?}"
    );
    for post in http.posts() {
        let header = |name: &str| post.headers.get(name).cloned().unwrap_or_default();
        assert_eq!(header("content-type"), "application/logplex-1");
        assert_eq!(header("logplex-msg-count"), post.frames.len().to_string());
        assert_eq!(header("logplex-drain-token"), tokens["http"]);
        assert_eq!(header("logplex-frame-id").len(), 32, "{post:?}");
        // user:s@cret
        assert_eq!(header("authorization"), "Basic dXNlcjpzQGNyZXQ=");
        assert_eq!(header("host"), format!("127.0.0.1:{}", http.port));
    }

    // syslog, over TCP and over TLS: rsyslog parsed every message.
    for (rsyslog, token) in [(&syslog, &tokens["syslog"]), (&tls, &tokens["tls"])] {
        let lines = wait_until(
            "rsyslog's router lines",
            Duration::from_secs(30),
            || rsyslog.lines(),
            |lines| request_numbers(lines, "drained") == all,
        );
        for line in lines.iter().filter(|l| l.contains("path=\"/drained/")) {
            assert!(
                line.starts_with(&format!("{token} renga router ")),
                "rsyslog saw {line:?}"
            );
        }
    }

    // The drain whose certificate does not match, and the one that was
    // refused, said why in the app's log.
    server.wait_for_log("drained", Duration::from_secs(30), |log| {
        log.contains("renga[logplex]: Error L14 (certificate validation error): drain d.")
            && log.contains("renga[logplex]: Error L13 (drain delivery error): drain d.")
    });

    // Removed, by URL or by token: their tasks end and their connections
    // close.
    server
        .cli(&["drains:remove", &http_url, "-a", "drained"])
        .ok();
    server
        .cli(&["drains:remove", &tokens["syslog"], "-a", "drained"])
        .ok();
    server
        .cli(&["drains:remove", &tls_url, "-a", "drained"])
        .ok();
    server
        .cli(&["drains:remove", &wrong_name_url, "-a", "drained"])
        .ok();
    server
        .cli(&["drains:remove", &dead_url, "-a", "drained"])
        .ok();
    let listed = server
        .cli(&["drains", "--json", "-a", "drained"])
        .ok()
        .stdout;
    assert_eq!(listed.trim(), "[]");
    server.wait_for_stats("drain tasks and connections", |s| {
        s["live"]["drains"] == 0
            && s["live"]["tasks"].as_u64() <= before["live"]["tasks"].as_u64()
            && s["live"]["open_files"].as_u64() <= before["live"]["open_files"].as_u64()
    });
    wait_until(
        "the HTTP drain's connection to close",
        Duration::from_secs(10),
        || {
            (
                http.open.load(Ordering::SeqCst),
                http.closed.load(Ordering::SeqCst),
            )
        },
        |&(open, closed)| open == 0 && closed >= 1,
    );
    // Nothing more arrives.
    let received = http.posts().len();
    assert_eq!(server.app_get("drained", "/drained/after").status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http.posts().len(), received);
}

#[test]
fn a_drain_that_is_down_loses_its_oldest_lines_and_says_l10() {
    let tmp = TempDir::new("drain-overflow");
    let server = Server::start_with(
        &tmp.join("data"),
        &["--allow-private-drains", "--drain-buffer", "50"],
    );
    server.deploy_component("flooded", HELLO);
    let http = Receiver::start();
    http.down.store(true, Ordering::SeqCst);
    let url = format!("http://127.0.0.1:{}/flood", http.port);
    server.cli(&["drains:add", &url, "-a", "flooded"]).ok();
    let token = token_of(&server, "flooded", &url);

    // The app serves on while its drain refuses every batch.
    const N: usize = 300;
    for i in 0..N {
        assert_eq!(
            server.app_get("flooded", &format!("/burst/{i}")).status,
            200
        );
    }
    server.wait_for_log("flooded", Duration::from_secs(30), |log| {
        log.contains("renga[logplex]: Error L13 (drain delivery error): drain d.")
            && log.contains("the drain answered 503")
            && log.contains("renga[logplex]: Error L10 (output buffer overflow): ")
    });
    assert!(http.posts().is_empty());

    http.down.store(false, Ordering::SeqCst);
    wait_until(
        "the drain to catch up",
        Duration::from_secs(30),
        || http.frames("/flood"),
        |frames| request_numbers(frames, "burst").last() == Some(&(N - 1)),
    );
    // The first POST is the batch that was on its way when the drain went
    // down, taken before anything was lost. The next one starts with the
    // report, in the drain's own stream.
    let posts: Vec<Post> = http
        .posts()
        .into_iter()
        .filter(|p| p.target == "/flood")
        .collect();
    let l10 = regex::Regex::new(&format!(
        r"^<158>1 \S+ {token} renga logplex - - Error L10 \(output buffer overflow\): (\d+) messages dropped since \d{{4}}-\d\d-\d\dT\S+\.$"
    ))
    .unwrap();
    let after: Vec<String> = posts[1..].iter().flat_map(|p| p.frames.clone()).collect();
    assert!(
        l10.is_match(&after[0]),
        "the batch after the outage does not start with L10: {posts:#?}"
    );
    // The newest lines were kept, in order; the oldest went, and were
    // counted: nothing vanished unreported.
    let in_flight = request_numbers(&posts[0].frames, "burst");
    let kept = request_numbers(&after, "burst");
    assert!(kept.len() <= 50, "{kept:?}");
    assert!(
        in_flight
            .iter()
            .chain(&kept)
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| w[0] < w[1]),
        "{in_flight:?} {kept:?}"
    );
    let gap_from = in_flight.last().map_or(0, |n| n + 1);
    assert!(
        kept[0] > gap_from,
        "lines were dropped: {in_flight:?} {kept:?}"
    );
    // Losses reported after that batch was made come in later reports:
    // wait until every line made is delivered or counted.
    let accounted = |posts: &[Post]| {
        let frames = posts.iter().flat_map(|p| &p.frames);
        let (reports, lines): (Vec<&String>, Vec<&String>) = frames.partition(|f| l10.is_match(f));
        let dropped: usize = reports
            .iter()
            .map(|f| l10.captures(f).unwrap()[1].parse::<usize>().unwrap())
            .sum();
        (dropped, lines.len())
    };
    wait_until(
        "every line delivered or reported lost",
        Duration::from_secs(15),
        || accounted(&http.posts()),
        |&(dropped, delivered)| dropped + delivered >= N,
    );
    server.wait_for_log("flooded", Duration::from_secs(10), |log| {
        log.contains(&format!("renga[logplex]: drain {token}: delivering again"))
    });
}

#[test]
fn drains_reach_public_addresses_only_unless_the_operator_allows_more() {
    let tmp = TempDir::new("drain-private");
    let server = Server::start(&tmp.join("data"));
    server.cli(&["apps:create", "inward"]).ok();
    let refused = server
        .cli(&["drains:add", "syslog://127.0.0.1:514", "-a", "inward"])
        .failed();
    assert!(
        refused.stderr.contains("127.0.0.1 is a private address"),
        "{refused}"
    );
    let refused = server
        .cli(&["drains:add", "http://[::ffff:10.0.0.1]/", "-a", "inward"])
        .failed();
    assert!(refused.stderr.contains("private address"), "{refused}");
    // A name is checked where it resolves, each time the drain connects.
    server
        .cli(&["drains:add", "syslog://localhost:514", "-a", "inward"])
        .ok();
    server.wait_for_log("inward", Duration::from_secs(30), |log| {
        log.contains("Error L13 (drain delivery error)")
            && log
                .contains("is a private address; this server sends drains to public addresses only")
    });
    // Only the app's users see or touch its drains.
    let stranger = server.create_user("stranger@example.com");
    let denied = server
        .cli_as(&stranger, &["drains", "-a", "inward"])
        .failed();
    assert!(denied.stderr.contains("Couldn't find that app"), "{denied}");
    server
        .cli_as(
            &stranger,
            &["drains:remove", "syslog://localhost:514", "-a", "inward"],
        )
        .failed();
    let still = server.cli(&["drains", "-a", "inward"]).ok().stdout;
    assert!(still.contains("syslog://localhost:514"), "{still}");
    server
        .cli(&["apps:destroy", "-a", "inward", "--confirm", "inward"])
        .ok();
    server.wait_for_stats("the destroyed app's drain", |s| s["live"]["drains"] == 0);
}
