//! `renga dev` end to end: the real binary builds real apps with the Rust
//! buildpack and serves them over real HTTP.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{Dev, Steady, TempDir, get, raw_exchange, request, shared_app};

const MISBEHAVE: &str = "tests/guests/misbehave";
const HELLO: &str = "examples/hello-rust";

/// The misbehaving guest with a short timeout and a small memory limit, so
/// that its failures happen quickly.
fn misbehave() -> Dev {
    let app = shared_app(MISBEHAVE);
    std::fs::write(
        app.join(".env"),
        "# config vars for the test guest\nGREETING=Howdy\nexport QUOTED=\"two words\"\n",
    )
    .unwrap();
    Dev::start(&app, &["--timeout", "2s", "--memory", "64MiB"])
}

#[test]
fn hello_rust_is_built_by_the_buildpack_then_restarts_warm() {
    // The only test that uses the shared hello-rust copy, which is fresh in
    // every test run: its first start must build.
    let app = shared_app(HELLO);
    let dev = Dev::start(&app, &[]);
    let reply = dev.get("/");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "hello from renga\n");
    let output = dev.output.text();
    assert!(output.contains("-----> Rust app detected"), "{output}");
    assert!(output.contains("Built hello-rust.wasm"), "{output}");
    drop(dev);

    // Nothing changed: the second start skips the build and maps the
    // machine code compiled by the first.
    let dev = Dev::start(&app, &[]);
    dev.expect_line("a reused build", Duration::from_secs(1), |l| {
        l.contains("No change since the last build; reusing it")
    });
    dev.expect_line("a cached start", Duration::from_secs(1), |l| {
        l.contains("web.1 serves hello-rust.wasm") && l.contains("precompiled code from the cache")
    });
    assert_eq!(dev.get("/").body, "hello from renga\n");
}

#[test]
fn dotenv_becomes_the_guests_environment_and_nothing_else_does() {
    let dev = misbehave();
    let reply = dev.get("/env");
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut vars: Vec<&str> = reply.body.lines().collect();
    vars.sort();
    assert_eq!(
        vars,
        ["DYNO=web.1", "GREETING=Howdy", "QUOTED=two words"],
        "the guest's whole environment"
    );
}

#[test]
fn guests_get_no_files_and_no_network() {
    let dev = misbehave();
    let fs = dev.get("/fs");
    assert_eq!(fs.status, 200, "{fs:?}");
    for line in fs.body.lines() {
        assert!(
            line.contains("denied"),
            "a guest could read a file: {line}\n{}",
            fs.body
        );
    }
    let net = dev.get("/net");
    assert_eq!(net.status, 200, "{net:?}");
    assert!(net.body.starts_with("outbound denied"), "{}", net.body);
}

#[test]
fn router_adds_forwarding_headers_and_echoes_the_request_id() {
    let dev = misbehave();
    let before = unix_ms();
    let reply = request(
        "GET",
        &format!("{}/headers", dev.url()),
        &[("X-Request-Id", "client-chosen-id-42")],
        None,
    );
    let after = unix_ms();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("x-request-id"), Some("client-chosen-id-42"));
    let seen = |name: &str| -> String {
        reply
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("the guest did not see {name}:\n{}", reply.body))
            .to_string()
    };
    assert_eq!(seen("x-request-id"), "client-chosen-id-42");
    assert_eq!(seen("x-forwarded-for"), "127.0.0.1");
    assert_eq!(seen("x-forwarded-proto"), "http");
    assert_eq!(seen("x-forwarded-port"), dev.port().to_string());
    let start: u128 = seen("x-request-start").parse().unwrap();
    assert!(
        before <= start && start <= after,
        "X-Request-Start {start} not within [{before}, {after}]"
    );

    // No id, or one longer than 200 characters: the router makes a UUID and
    // the guest and the client see the same one.
    for sent in [None, Some("x".repeat(201))] {
        let headers: Vec<(&str, &str)> =
            sent.iter().map(|v| ("X-Request-Id", v.as_str())).collect();
        let reply = request("GET", &format!("{}/headers", dev.url()), &headers, None);
        let id = reply.header("x-request-id").unwrap().to_string();
        assert_eq!(id.len(), 36, "a UUID, got {id:?}");
        assert!(
            reply.body.contains(&format!("x-request-id: {id}")),
            "{}",
            reply.body
        );
    }

    // A client's own X-Forwarded-For is kept, with the peer appended.
    let reply = request(
        "GET",
        &format!("{}/headers", dev.url()),
        &[("X-Forwarded-For", "203.0.113.7")],
        None,
    );
    assert!(
        reply
            .body
            .contains("x-forwarded-for: 203.0.113.7, 127.0.0.1"),
        "{}",
        reply.body
    );
}

#[test]
fn router_speaks_h2c_as_well_as_http1() {
    let dev = misbehave();
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-H",
            "X-Request-Id: over-h2c",
            "-w",
            "\n%{http_version}",
        ])
        .arg(format!("{}/headers", dev.url()))
        .output()
        .expect("curl is installed by scripts/setup");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.trim_end().ends_with("\n2"),
        "not answered over HTTP/2:\n{text}"
    );
    assert!(text.contains("x-request-id: over-h2c"), "{text}");
    dev.expect_line(
        "the h2c request's router line",
        Duration::from_secs(5),
        |l| l.contains("request_id=over-h2c") && l.contains("status=200"),
    );
}

#[test]
fn router_writes_one_heroku_line_per_request() {
    let dev = misbehave();
    let reply = request(
        "GET",
        &format!("{}/?q=1", dev.url()),
        &[("X-Request-Id", "line-format-check")],
        None,
    );
    assert_eq!(reply.status, 200);
    let line = dev.expect_line("the router line", Duration::from_secs(5), |l| {
        l.contains("request_id=line-format-check")
    });
    let pattern = regex::Regex::new(
        r"^[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9]{6}\+00:00 renga\[router\]: at=info method=GET path=\x22/\?q=1\x22 host=127\.0\.0\.1 request_id=line-format-check fwd=\x22127\.0\.0\.1\x22 dyno=web\.1 connect=[0-9]+ms service=[0-9]+ms status=200 bytes=3 protocol=http$",
    )
    .unwrap();
    assert!(
        pattern.is_match(&line),
        "router line not in Heroku's format:\n{line}"
    );
    let count = dev
        .output
        .lines()
        .iter()
        .filter(|l| l.contains("request_id=line-format-check"))
        .count();
    assert_eq!(count, 1, "one line per request");
}

#[test]
fn guest_output_becomes_app_log_lines() {
    let dev = misbehave();
    assert_eq!(dev.get("/log").status, 200);
    dev.expect_line("the guest's stdout", Duration::from_secs(5), |l| {
        l.ends_with(" app[web.1]: a line on stdout")
    });
    dev.expect_line("the guest's stderr", Duration::from_secs(5), |l| {
        l.ends_with(" app[web.1]: a line on stderr")
    });
}

#[test]
fn a_trap_a_loop_and_a_memory_hog_fail_only_their_own_requests() {
    let dev = misbehave();
    let steady = Steady::start(format!("{}/", dev.url()), "ok");

    for path in ["/trap", "/unreachable", "/overflow"] {
        let reply = request(
            "GET",
            &format!("{}{path}", dev.url()),
            &[("X-Request-Id", &format!("bad{}", path.replace('/', "-")))],
            None,
        );
        assert_eq!(reply.status, 500, "{path}: {reply:?}");
    }
    dev.expect_line("the trap in the log", Duration::from_secs(5), |l| {
        l.contains("renga[web.1]: Error (Guest trapped): request bad-trap: wasm trap")
    });
    dev.expect_line("the panic message", Duration::from_secs(5), |l| {
        l.contains("app[web.1]:") && l.contains("the /trap route panics on purpose")
    });

    let looping = request(
        "GET",
        &format!("{}/loop", dev.url()),
        &[("X-Request-Id", "bad-loop")],
        None,
    );
    assert_eq!(looping.status, 503, "{looping:?}");
    dev.expect_line("H12 for the loop", Duration::from_secs(5), |l| {
        l.contains("at=error code=H12 desc=\"Request timeout\"")
            && l.contains("request_id=bad-loop")
            && l.contains("status=503")
    });

    let hog = request(
        "GET",
        &format!("{}/oom", dev.url()),
        &[("X-Request-Id", "bad-oom")],
        None,
    );
    assert_eq!(hog.status, 500, "{hog:?}");
    dev.expect_line("R14 naming the limit", Duration::from_secs(5), |l| {
        l.contains("Error R14 (Memory quota exceeded): request bad-oom needed more than the 64 MiB memory limit")
    });
    dev.expect_line("the R14 router line", Duration::from_secs(5), |l| {
        l.contains("at=error code=R14 desc=\"Memory quota exceeded\"")
            && l.contains("request_id=bad-oom")
    });

    // Each failure was its own: the next request is served normally...
    assert_eq!(dev.get("/").body, "ok\n");
    // ...and every request of the steady stream succeeded meanwhile.
    let (ok, failures) = steady.stop();
    assert!(failures.is_empty(), "good requests failed: {failures:?}");
    assert!(ok > 10, "the steady stream made only {ok} requests");
}

#[test]
fn the_on_demand_allocator_serves_and_isolates_too() {
    let dev = Dev::start(
        &shared_app(MISBEHAVE),
        &["--instance-allocator", "on-demand", "--memory", "64MiB"],
    );
    dev.expect_line("the allocator in use", Duration::from_secs(1), |l| {
        l.contains("on-demand instance allocator")
    });
    assert_eq!(dev.get("/").body, "ok\n");
    assert_eq!(dev.get("/trap").status, 500);
    assert_eq!(dev.get("/oom").status, 500);
    assert_eq!(dev.get("/").body, "ok\n");
}

#[test]
fn two_hundred_concurrent_requests_all_succeed() {
    let dev = misbehave();
    let url = format!("{}/sleep/50", dev.url());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                get(&url)
            })
        })
        .collect();
    for thread in threads {
        let reply = thread.join().unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "slept 50ms\n"));
    }
}

#[test]
fn request_limits_protect_the_router() {
    let dev = Dev::start(
        &shared_app(MISBEHAVE),
        &["--max-body", "1KiB", "--header-timeout", "1s"],
    );

    // A body over the limit is refused before it reaches the guest.
    let big = vec![b'x'; 4096];
    let reply = request("POST", &format!("{}/echo", dev.url()), &[], Some(&big));
    assert_eq!(reply.status, 413, "{reply:?}");
    let small = request(
        "POST",
        &format!("{}/echo", dev.url()),
        &[],
        Some(b"small body"),
    );
    assert_eq!((small.status, small.body.as_str()), (200, "small body"));

    // Headers over the limit: 431, and nothing reaches the guest.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(100 << 10)
    );
    let answer = String::from_utf8_lossy(&raw_exchange(
        dev.port(),
        huge.as_bytes(),
        Duration::from_secs(5),
    ))
    .to_string();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // A client that never finishes its headers is cut off.
    let started = std::time::Instant::now();
    let answer = raw_exchange(
        dev.port(),
        b"GET / HTTP/1.1\r\nHost: slow",
        Duration::from_secs(10),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the slow client was held {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );

    // Garbage is answered with 400 and the server keeps serving.
    let answer = raw_exchange(
        dev.port(),
        b"\x16\x03\x01 this is not http\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"),
        "{answer:?}"
    );
    assert_eq!(dev.get("/").status, 200);
}

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    use std::io::{Read, Write};
    let dev = misbehave();
    // The request is written in full before the signal, so it is in flight
    // when renga starts shutting down.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", dev.port())).unwrap();
    stream
        .write_all(b"GET /sleep/1500 HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let status = dev.terminate();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.contains("slept 1500ms"), "{answer:?}");
    assert!(status.success(), "renga dev exited with {status}");
}

#[test]
fn a_file_change_hot_swaps_the_app_without_dropping_requests() {
    let tmp = TempDir::new("hot-swap");
    let app = support::copy_app(HELLO, tmp.path());
    std::fs::write(app.join(".env"), "GREETING=Howdy\n").unwrap();
    let dev = Dev::start(&app, &[]);
    assert_eq!(dev.get("/").body, "Howdy from renga\n");
    let steady = Steady::start(format!("{}/", dev.url()), "from renga");

    // A config change is picked up...
    std::fs::write(app.join(".env"), "GREETING=Hi\n").unwrap();
    wait_for_body(&dev, "Hi from renga\n");

    // ...and so is a code change.
    let main = app.join("src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        source.replace("{greeting} from renga", "{greeting} from renga, rebuilt"),
    )
    .unwrap();
    wait_for_body(&dev, "Hi from renga, rebuilt\n");

    // A broken build shows the compiler's error and keeps the last good one.
    std::fs::write(&main, "this is not rust\n").unwrap();
    dev.expect_line("the build failure", Duration::from_secs(300), |l| {
        l.contains("Build failed; still serving the previous build")
    });
    let output = dev.output.text();
    assert!(
        output.contains("error: expected one of"),
        "the compiler's own error is shown:\n{output}"
    );
    assert_eq!(dev.get("/").body, "Hi from renga, rebuilt\n");

    let (ok, failures) = steady.stop();
    assert!(
        failures.is_empty(),
        "requests failed during the swaps: {failures:?}"
    );
    assert!(ok > 10, "the steady stream made only {ok} requests");
}

#[test]
fn files_that_are_not_http_components_are_refused() {
    let tmp = TempDir::new("refusals");

    let text = tmp.join("text");
    std::fs::create_dir_all(&text).unwrap();
    std::fs::write(text.join("Procfile"), "web: app.wasm\n").unwrap();
    std::fs::write(text.join("app.wasm"), "#!/bin/sh\necho not wasm\n").unwrap();
    let refused = Dev::try_start(&text, &[])
        .err()
        .expect("a text file must be refused");
    assert!(!refused.status.success());
    assert!(
        refused
            .output
            .contains("app.wasm is not a WebAssembly file"),
        "{}",
        refused.output
    );

    let core = tmp.join("core");
    std::fs::create_dir_all(&core).unwrap();
    std::fs::write(core.join("Procfile"), "web: core.wasm\n").unwrap();
    std::fs::write(core.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let refused = Dev::try_start(&core, &[])
        .err()
        .expect("a core module must be refused");
    assert!(
        refused
            .output
            .contains("core.wasm is a core WebAssembly module, not a component"),
        "{}",
        refused.output
    );

    // A real component of the wrong world: a wasi:cli command.
    let command = support::copy_app("tests/guests/command", tmp.path());
    let refused = Dev::try_start(&command, &[])
        .err()
        .expect("a command component must be refused");
    assert!(
        refused
            .output
            .contains("command.wasm is a component of the wrong world")
            && refused.output.contains("wasi:cli/run"),
        "{}",
        refused.output
    );

    let empty = tmp.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("README"), "nothing to build").unwrap();
    let refused = Dev::try_start(&empty, &[])
        .err()
        .expect("an app no buildpack detects must fail");
    assert!(
        refused.output.contains("no buildpack recognised this app"),
        "{}",
        refused.output
    );
    assert!(
        refused.output.contains("rust: a Cargo.toml"),
        "{}",
        refused.output
    );
}

#[test]
fn a_bad_dotenv_line_is_an_error_that_names_it() {
    let tmp = TempDir::new("bad-dotenv");
    let app = tmp.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join(".env"),
        "GOOD=1\n# fine\nthis line has no equals sign\n",
    )
    .unwrap();
    let refused = Dev::try_start(&app, &[])
        .err()
        .expect("a bad .env must be refused");
    assert!(!refused.status.success());
    assert!(
        refused.output.contains(".env line 3: expected KEY=VALUE"),
        "{}",
        refused.output
    );
}

fn wait_for_body(dev: &Dev, expected: &str) {
    let deadline = std::time::Instant::now() + support::BUILD_TIMEOUT;
    loop {
        let reply = dev.get("/");
        if reply.body == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the body never became {expected:?} (still {:?}).\noutput:\n{}",
            reply.body,
            dev.output.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn a_wasi_0_3_component_is_built_and_served() {
    let app = shared_app("tests/guests/hello-p3");
    let dev = Dev::start(&app, &[]);
    let reply = dev.get("/p3?x=1");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .body
            .starts_with("hello from a WASI 0.3 component: GET /p3 (host "),
        "{reply:?}"
    );
    let output = dev.output.text();
    assert!(output.contains("Built hello_p3.wasm"), "{output}");
}
