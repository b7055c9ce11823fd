//! Dynos end to end: formation and sizes, the router spreading requests over
//! web dynos, the backlog (H11), memory limits (R14), scale to zero and
//! waking, instance reuse, worker dynos with restart backoff, and one-off
//! dynos attached to the caller, all through the real CLI and a real server.

mod support;

use std::time::{Duration, Instant};

use support::{Server, Steady, TempDir, built_component, request};

const HELLO: &str = "examples/hello-rust";
const MISBEHAVE: &str = "tests/guests/misbehave";

/// The router lines of requests whose path contains `marker`.
fn router_lines(log: &str, marker: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("renga[router]") && l.contains(marker))
        .map(str::to_string)
        .collect()
}

#[test]
fn scaling_spreads_requests_and_sizes_limit_memory() {
    let tmp = TempDir::new("spread");
    let server = Server::start(tmp.path());
    server.deploy_component("spread", MISBEHAVE);
    server.deploy_component("bystander", HELLO);

    server.cli(&["ps:scale", "web=3", "-a", "spread"]).ok();
    let ps = server.cli(&["ps", "-a", "spread"]).ok().stdout;
    for dyno in ["web.1: up", "web.2: up", "web.3: up"] {
        assert!(ps.contains(dyno), "{ps}");
    }
    assert!(ps.contains("=== web (standard-1x)"), "{ps}");
    for i in 0..30 {
        assert_eq!(
            server.app_get("spread", &format!("/?three={i}")).status,
            200
        );
    }
    let three = router_lines(&server.logs("spread"), "three=");
    assert_eq!(three.len(), 30, "{three:#?}");
    for dyno in ["dyno=web.1 ", "dyno=web.2 ", "dyno=web.3 "] {
        assert!(
            three.iter().any(|l| l.contains(dyno)),
            "no request reached {dyno}: {three:#?}"
        );
    }

    // Down to one dyno, of the smallest size: ps and the router agree.
    server.cli(&["ps:scale", "web=1:eco", "-a", "spread"]).ok();
    let ps = server.cli(&["ps", "-a", "spread"]).ok().stdout;
    assert!(
        ps.contains("=== web (eco)") && ps.contains("web.1: up"),
        "{ps}"
    );
    assert!(!ps.contains("web.2"), "{ps}");
    for i in 0..10 {
        server.app_get("spread", &format!("/?one={i}"));
    }
    let one = router_lines(&server.logs("spread"), "one=");
    assert_eq!(one.len(), 10);
    assert!(one.iter().all(|l| l.contains("dyno=web.1 ")), "{one:#?}");

    // An eco dyno's instance gets 64 MiB: a request that wants more fails
    // with R14, and every other app keeps serving meanwhile.
    let steady = Steady::start_with_host(
        format!("http://127.0.0.1:{}/", server.http_port),
        Some("bystander.localhost".into()),
        "hello from renga",
    );
    let oom = server.app_get("spread", "/oom");
    assert_eq!(oom.status, 500, "{}", oom.body);
    assert_eq!(server.app_get("spread", "/").status, 200);
    let (ok, failures) = steady.stop();
    assert!(ok > 0 && failures.is_empty(), "{ok} ok, {failures:?}");
    let log = server.logs("spread");
    assert!(
        log.contains("code=R14 desc=\"Memory quota exceeded\"") && log.contains("64 MiB"),
        "{log}"
    );

    // Sizes and quantities are checked.
    let refused = server
        .cli(&["ps:scale", "web=1:huge", "-a", "spread"])
        .failed();
    assert!(refused.stderr.contains("unknown dyno size"), "{refused}");
    let refused = server.cli(&["ps:type", "web=performance-l", "-a", "spread"]);
    // 1 dyno of performance-l holds 128 instances: within this server's share.
    refused.ok();
    let refused = server
        .cli(&["ps:scale", "web=100", "-a", "spread"])
        .failed();
    assert!(refused.stderr.contains("instances at once"), "{refused}");
}

#[test]
fn a_full_backlog_answers_h11_and_the_rest_are_served() {
    let tmp = TempDir::new("backlog");
    let server = Server::start(tmp.path());
    server.deploy_component("busy", MISBEHAVE);
    // One eco dyno: 4 requests at once, 4 more may wait.
    server.cli(&["ps:type", "web=eco", "-a", "busy"]).ok();
    let port = server.http_port;
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                request(
                    "GET",
                    &format!("http://127.0.0.1:{port}/sleep/1500?n={i}"),
                    &[("Host", "busy.localhost")],
                    None,
                )
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let served = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert!(served >= 8, "{statuses:?}");
    assert!(refused >= 1, "{statuses:?}");
    assert_eq!(served + refused, 16, "{statuses:?}");
    let log = server.logs("busy");
    assert!(
        log.contains("at=error code=H11 desc=\"Backlog too deep\""),
        "{log}"
    );
}

#[test]
fn an_idle_app_unloads_and_the_next_request_wakes_it() {
    let tmp = TempDir::new("idle");
    let server = Server::start(tmp.path());
    server.deploy_component("sleepy", HELLO);
    let set = server.cli(&["ps:idle", "1s", "-a", "sleepy"]).ok();
    assert!(set.stdout.contains("after 1s"), "{set}");
    assert_eq!(server.app_get("sleepy", "/").status, 200);
    server.wait_until_idle("sleepy", Duration::from_secs(10));
    server.wait_for_log("sleepy", Duration::from_secs(5), |l| {
        l.contains("unloaded 1 web dyno(s)")
    });

    let woken = server.app_get("sleepy", "/?wake=1");
    assert_eq!(woken.status, 200);
    assert_eq!(woken.body, "hello from renga\n");
    let lines = router_lines(&server.logs("sleepy"), "wake=1");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(" wake=") && lines[0].contains("status=200"),
        "{lines:#?}"
    );
    assert!(
        server
            .logs("sleepy")
            .contains("Woke 1 web dyno(s) from zero in")
    );
    let ps = server.cli(&["ps", "-a", "sleepy"]).ok().stdout;
    assert!(ps.contains("web.1: up"), "{ps}");

    // `never` keeps it loaded.
    server.cli(&["ps:idle", "never", "-a", "sleepy"]).ok();
    std::thread::sleep(Duration::from_millis(1500));
    let ps = server.cli(&["ps", "-a", "sleepy"]).ok().stdout;
    assert!(ps.contains("web.1: up"), "{ps}");
}

/// How many of the server's executable mappings are of precompiled
/// components: their machine code. (Pool slots also map a component's
/// memory image from its artefact, writable, in whichever slots its
/// instances ran.)
fn mapped_artefacts(server: &Server) -> usize {
    std::fs::read_to_string(format!("/proc/{}/maps", server.pid()))
        .unwrap()
        .lines()
        .filter(|l| {
            l.ends_with(".cwasm") && l.split_whitespace().nth(1).is_some_and(|p| p.contains('x'))
        })
        .count()
}

/// Waits until the server maps no more component code than `baseline`.
fn wait_until_unmapped(server: &Server, baseline: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while mapped_artefacts(server) != baseline {
        assert!(Instant::now() < deadline, "the code stayed mapped");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_idle_apps_code_stays_mapped_for_keep_code_for_then_is_unmapped() {
    // Kept 3 s after its last dyno is unloaded: the wake maps nothing new.
    let tmp = TempDir::new("keep-code");
    let server = Server::start_with(tmp.path(), &["--keep-code-for", "3s"]);
    let baseline = mapped_artefacts(&server);
    server.deploy_component("kept", HELLO);
    server.cli(&["ps:idle", "1s", "-a", "kept"]).ok();
    assert_eq!(server.app_get("kept", "/").status, 200);
    let loaded = mapped_artefacts(&server);
    assert!(loaded > baseline, "{loaded} mappings, {baseline} before");
    server.wait_until_idle("kept", Duration::from_secs(10));
    assert_eq!(mapped_artefacts(&server), loaded);
    assert_eq!(
        server.app_get("kept", "/?wake=1").body,
        "hello from renga\n"
    );
    assert!(server.logs("kept").contains("Woke 1 web dyno(s) from zero"));
    assert_eq!(mapped_artefacts(&server), loaded);
    // Then unmapped, and the next wake maps it again.
    server.wait_until_idle("kept", Duration::from_secs(10));
    wait_until_unmapped(&server, baseline, Duration::from_secs(15));
    assert_eq!(server.app_get("kept", "/?again=1").status, 200);
    assert_eq!(mapped_artefacts(&server), loaded);
    drop(server);

    // `0s`: unmapped with the last dyno.
    let tmp = TempDir::new("keep-no-code");
    let server = Server::start_with(tmp.path(), &["--keep-code-for", "0s"]);
    let baseline = mapped_artefacts(&server);
    server.deploy_component("unkept", HELLO);
    server.cli(&["ps:idle", "1s", "-a", "unkept"]).ok();
    assert_eq!(server.app_get("unkept", "/").status, 200);
    assert!(mapped_artefacts(&server) > baseline);
    server.wait_until_idle("unkept", Duration::from_secs(10));
    wait_until_unmapped(&server, baseline, Duration::from_secs(5));
    assert_eq!(server.app_get("unkept", "/").status, 200);
}

#[test]
fn reuse_keeps_an_instance_until_it_traps() {
    let tmp = TempDir::new("reuse");
    let server = Server::start(tmp.path());
    server.deploy_component("reused", MISBEHAVE);
    let counts = |n: usize| -> Vec<u64> {
        (0..n)
            .map(|_| {
                server
                    .app_get("reused", "/count")
                    .body
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    // The default: a fresh instance per request.
    assert!(counts(5).iter().all(|c| *c == 1));

    server
        .cli(&[
            "ps:type",
            "web=standard-1x",
            "--reuse",
            "50",
            "-a",
            "reused",
        ])
        .ok();
    let kept = counts(10);
    assert!(*kept.iter().max().unwrap() >= 3, "{kept:?}");

    // A trap discards the instance: the next one starts from scratch.
    assert_eq!(server.app_get("reused", "/trap").status, 500);
    let after = counts(1)[0];
    assert!(
        after < *kept.iter().max().unwrap(),
        "{after} after {kept:?}"
    );

    server
        .cli(&["ps:type", "web=standard-1x", "--reuse", "0", "-a", "reused"])
        .ok();
    assert!(counts(5).iter().all(|c| *c == 1));
}

#[test]
fn a_kept_wasi_0_3_instance_serves_several_requests_at_once() {
    const HELLO_P3: &str = "tests/guests/hello-p3";
    let tmp = TempDir::new("p3-shared");
    let server = Server::start_with(tmp.path(), &["--timeout", "2s"]);
    server.deploy_component("shared", HELLO_P3);
    let port = server.http_port;
    let sleepers = |n: usize| -> Vec<String> {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                std::thread::spawn(move || {
                    request(
                        "GET",
                        &format!("http://127.0.0.1:{port}/sleep/700"),
                        &[("Host", "shared.localhost")],
                        None,
                    )
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                let reply = t.join().unwrap();
                assert_eq!(reply.status, 200, "{reply:?}");
                reply.body
            })
            .collect()
    };
    // The default: an instance of its own for each request.
    let alone = sleepers(4);
    assert!(
        alone
            .iter()
            .all(|b| b.contains("held 1 requests at once at most and served 1\n")),
        "{alone:?}"
    );

    // With reuse, an instance takes the next request while others wait.
    server
        .cli(&[
            "ps:type",
            "web=standard-1x",
            "--reuse",
            "100",
            "-a",
            "shared",
        ])
        .ok();
    let together = sleepers(6);
    let most = together
        .iter()
        .map(|b| {
            let held = b.split("held ").nth(1).unwrap();
            held.split(' ').next().unwrap().parse::<u32>().unwrap()
        })
        .max()
        .unwrap();
    assert!(most >= 2, "{together:?}");
    let stats = server.stats();
    assert!(
        stats["live"]["instances"].as_u64().unwrap() >= 1,
        "{stats:#}"
    );

    // A trap ends the instance and the requests it held, the log says why,
    // and the next request is served (by another instance, or a new one).
    let trapped = server.app_get("shared", "/trap");
    assert_eq!(trapped.status, 500, "{trapped:?}");
    server.wait_for_log("shared", Duration::from_secs(10), |l| {
        l.contains("a shared instance stopped, with the requests it held, because it trapped")
    });
    let after = server.app_get("shared", "/sleep/1");
    assert_eq!(after.status, 200, "{after:?}");

    // A request past its timeout gets H12 while the others in its
    // instance are answered; a client that goes away takes nothing along.
    let late = std::thread::spawn(move || {
        request(
            "GET",
            &format!("http://127.0.0.1:{port}/sleep/5000"),
            &[("Host", "shared.localhost")],
            None,
        )
    });
    let others = sleepers(3);
    assert!(
        others.iter().all(|b| b.starts_with("slept 700 ms")),
        "{others:?}"
    );
    let late = late.join().unwrap();
    assert_eq!(late.status, 503, "{late:?}");
    assert!(
        server.logs("shared").contains("code=H12"),
        "{}",
        server.logs("shared")
    );
    for _ in 0..4 {
        let mut gone = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        std::io::Write::write_all(
            &mut gone,
            b"GET /sleep/1500 HTTP/1.1\r\nHost: shared.localhost\r\n\r\n",
        )
        .unwrap();
    }

    // Idle instances are let go: instances and guest tasks back to none.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = server.stats();
        if stats["live"]["instances"] == 0 && stats["live"]["guest_tasks"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "instances stayed: {stats:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn deploys_under_load_lose_no_request() {
    let tmp = TempDir::new("zerodown");
    let server = Server::start(tmp.path());
    server.deploy_component("steady", HELLO);
    server.cli(&["ps:scale", "web=2", "-a", "steady"]).ok();
    let url = format!("http://127.0.0.1:{}/", server.http_port);
    let streams: Vec<Steady> = (0..4)
        .map(|_| {
            Steady::start_with_host(url.clone(), Some("steady.localhost".into()), "from renga")
        })
        .collect();
    let file = built_component(HELLO);
    for i in 0..6 {
        server
            .cli(&[
                "deploy",
                "--component",
                file.to_str().unwrap(),
                "-a",
                "steady",
            ])
            .ok();
        if i % 2 == 0 {
            server.cli(&["ps:restart", "web", "-a", "steady"]).ok();
        }
    }
    let mut total = 0;
    for stream in streams {
        let (ok, failures) = stream.stop();
        assert!(failures.is_empty(), "{failures:?}");
        total += ok;
    }
    assert!(total > 100, "only {total} requests were made");
}

/// An app with no web process: a worker and a one-off command, from the
/// Rust buildpack.
fn write_worker_app(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("src/bin")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"jobs\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n# Its own workspace: the tests build it inside renga's checkout.\n[workspace]\n\n[dependencies]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/bin/worker.rs"),
        r#"use std::io::Read;
fn main() {
    let dyno = std::env::var("DYNO").unwrap_or_default();
    println!("worker {dyno} starting");
    if std::env::var("WORKER_MODE").as_deref() == Ok("crash") {
        eprintln!("worker {dyno} giving up");
        std::process::exit(3);
    }
    // Runs until the platform closes its stdin.
    let mut rest = String::new();
    let _ = std::io::stdin().read_to_string(&mut rest);
    println!("worker {dyno} stopping: stdin closed");
}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("src/bin/task.rs"),
        r#"use std::io::Read;
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let dyno = std::env::var("DYNO").unwrap_or_default();
    println!("task args={args:?} dyno={dyno} input={}", input.trim());
    eprintln!("task says this on stderr");
    if args.iter().any(|a| a == "--fail") {
        std::process::exit(2);
    }
}
"#,
    )
    .unwrap();
}

#[test]
fn workers_restart_with_backoff_and_one_off_dynos_attach() {
    let tmp = TempDir::new("workers");
    let server = Server::start(&tmp.join("data"));
    let app_dir = tmp.join("jobs");
    write_worker_app(&app_dir);
    server.cli(&["apps:create", "jobs"]).ok();
    server
        .cli(&["config:set", "WORKER_MODE=crash", "-a", "jobs"])
        .ok();
    server
        .cli(&["deploy", app_dir.to_str().unwrap(), "-a", "jobs"])
        .ok();

    // A crashing worker restarts at once, then after 1s, then 2s...
    server.cli(&["ps:scale", "worker=1", "-a", "jobs"]).ok();
    server.wait_for_log("jobs", Duration::from_secs(20), |l| {
        l.contains("Restarting in 2s (crash 3 in a row)")
    });
    let log = server.logs("jobs");
    let order = [
        "Restarting in 0s (crash 1 in a row)",
        "Restarting in 1s (crash 2 in a row)",
        "Restarting in 2s (crash 3 in a row)",
    ];
    let positions: Vec<usize> = order.iter().map(|o| log.find(o).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{log}");
    assert!(
        log.contains("app[worker.1]: worker worker.1 giving up"),
        "{log}"
    );
    assert!(
        log.contains("renga[worker.1]: Process exited with status 1"),
        "{log}"
    );
    assert!(
        log.contains("renga[worker.1]: State changed from up to crashed"),
        "{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = server.cli(&["ps", "-a", "jobs"]).ok().stdout;
        if ps.contains("worker.1: crashed") {
            break;
        }
        assert!(Instant::now() < deadline, "never shown as crashed: {ps}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A new release brings new, healthy workers; scaling down stops one by
    // closing its stdin.
    server
        .cli(&["config:unset", "WORKER_MODE", "-a", "jobs"])
        .ok();
    server.cli(&["ps:scale", "worker=2", "-a", "jobs"]).ok();
    server.wait_for_log("jobs", Duration::from_secs(10), |l| {
        l.contains("app[worker.2]: worker worker.2 starting")
    });
    let ps = server.cli(&["ps", "-a", "jobs"]).ok().stdout;
    assert!(
        ps.contains("worker.1: up") && ps.contains("worker.2: up"),
        "{ps}"
    );
    server.cli(&["ps:scale", "worker=1", "-a", "jobs"]).ok();
    server.wait_for_log("jobs", Duration::from_secs(15), |l| {
        l.contains("app[worker.2]: worker worker.2 stopping: stdin closed")
            && l.contains("renga[worker.2]: State changed from up to down")
    });
    let ps = server.cli(&["ps", "-a", "jobs"]).ok().stdout;
    assert!(
        ps.contains("worker.1: up") && !ps.contains("worker.2"),
        "{ps}"
    );

    // A one-off dyno, attached: stdin in, stdout and stderr out, and its
    // exit code as the CLI's.
    let ran = server.cli_with_stdin(
        &["run", "-a", "jobs", "--", "task", "hello", "--fail"],
        b"piped data\n",
    );
    assert!(
        ran.stdout
            .contains(r#"task args=["hello", "--fail"] dyno=run.1 input=piped data"#),
        "{ran}"
    );
    assert!(ran.stderr.contains("task says this on stderr"), "{ran}");
    assert!(ran.stderr.contains("up, run.1 (standard-1x)"), "{ran}");
    // WASI 0.2's exit carries success or failure: exit(2) arrives as 1.
    assert_eq!(ran.status.code(), Some(1), "{ran}");
    let ran = server.cli_with_stdin(&["run", "-a", "jobs", "--", "task.wasm", "ok"], b"");
    assert_eq!(ran.status.code(), Some(0), "{ran}");
    let missing = server.cli_with_stdin(&["run", "-a", "jobs", "--", "nothing-here"], b"");
    assert!(!missing.status.success());
    assert!(
        missing.stderr.contains("Couldn't find `nothing-here`"),
        "{missing}"
    );

    // Detached: the output goes to the log.
    let detached = server
        .cli(&["run:detached", "-a", "jobs", "--", "task", "quietly"])
        .ok();
    assert!(detached.stdout.contains("up, run.3"), "{detached}");
    server.wait_for_log("jobs", Duration::from_secs(10), |l| {
        l.contains(r#"app[run.3]: task args=["quietly"] dyno=run.3 input="#)
            && l.contains("renga[run.3]: Process exited with status 0")
    });
}

#[test]
fn a_wasi_0_3_component_serves_through_the_router_sleeps_and_wakes() {
    const HELLO_P3: &str = "tests/guests/hello-p3";
    let tmp = TempDir::new("p3");
    let server = Server::start(tmp.path());
    server.deploy_component("async", HELLO_P3);
    let reply = server.app_get("async", "/hello?x=1");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        "hello from a WASI 0.3 component: GET /hello (host async.localhost)\n"
    );
    // Config vars are its environment, as for any release.
    server
        .cli(&["config:set", "GREETING=Howdy", "-a", "async"])
        .ok();
    let reply = server.app_get("async", "/again");
    assert!(reply.body.starts_with("Howdy from a WASI 0.3"), "{reply:?}");
    let lines = router_lines(&server.logs("async"), "/again");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("status=200") && lines[0].contains("dyno=web.1"));

    // Many at once, then instances and guest tasks back to none.
    let port = server.http_port;
    let threads: Vec<_> = (0..32)
        .map(|i| {
            std::thread::spawn(move || {
                request(
                    "GET",
                    &format!("http://127.0.0.1:{port}/many/{i}"),
                    &[("Host", "async.localhost")],
                    None,
                )
            })
        })
        .collect();
    for (i, thread) in threads.into_iter().enumerate() {
        let reply = thread.join().unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(reply.body.contains(&format!("/many/{i} ")), "{reply:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = server.stats();
        if stats["live"]["instances"] == 0 && stats["live"]["guest_tasks"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "instances stayed: {stats:#}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Scale to zero and wake, as for a WASI 0.2 component.
    server.cli(&["ps:idle", "1s", "-a", "async"]).ok();
    server.wait_for_log("async", Duration::from_secs(10), |l| {
        l.contains("unloaded 1 web dyno(s)")
    });
    let woken = server.app_get("async", "/woken");
    assert_eq!(woken.status, 200, "{woken:?}");
    assert!(
        server
            .logs("async")
            .contains("Woke 1 web dyno(s) from zero in")
    );
}
