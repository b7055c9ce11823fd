//! Several renga hosts on one NATS JetStream cluster: real `nats-server`s
//! (three, each with its own store folder and ports) and real `renga
//! server`s sharing the ledger through them.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{NatsCluster, Server, TempDir, built_component};

/// The cluster tests run one at a time: each starts three NATS servers and
/// up to three hosts, and two such clusters at once are more than a 2-core
/// machine runs without the hosts' writes waiting on each other.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A host of the cluster, with its own data and its own apps' build caches
/// (as on separate machines; the toolchains in the test run's cache stay
/// shared).
fn host(tmp: &TempDir, name: &str, nats: &NatsCluster) -> Server {
    let caches = tmp.join(name).join("build-caches");
    Server::start_with(
        &tmp.join(name),
        &[
            "--cluster",
            &nats.urls(),
            "--host-name",
            name,
            "--build-caches",
            caches.to_str().unwrap(),
            "--allow-private-drains",
        ],
    )
}

/// Waits up to `bound` for `check`; how long it took, or a panic saying
/// what was not seen.
fn within(bound: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < bound, "{what} within {bound:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The app's release versions, as `host` lists them.
fn versions(host: &Server, app: &str) -> Vec<u64> {
    let ran = host.cli(&["releases", "-a", app, "--json"]).ok();
    let mut versions: Vec<u64> = serde_json::from_str::<serde_json::Value>(&ran.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    versions.sort_unstable();
    versions
}

fn config(host: &Server, app: &str) -> serde_json::Value {
    let ran = host.cli(&["config", "-a", app, "--json"]).ok();
    serde_json::from_str(&ran.stdout).unwrap()
}

#[test]
fn hosts_share_one_ledger_and_a_lost_host_or_nats_server_loses_none_of_it() {
    let _serial = one_at_a_time();
    let mut nats = NatsCluster::start();
    let tmp = TempDir::new("cluster");
    let a = host(&tmp, "a", &nats);
    let b = host(&tmp, "b", &nats);

    // An app made through A is known to B; a config var set through B is
    // seen by A.
    a.cli(&["apps:create", "shop"]).ok();
    within(Duration::from_secs(5), "B lists the app A made", || {
        b.cli(&["apps"]).stdout.contains("shop")
    });
    b.cli(&["config:set", "GREETING=hello", "-a", "shop"]).ok();
    let seen = within(Duration::from_secs(5), "A sees B's config var", || {
        a.cli(&["config:get", "GREETING", "-a", "shop"])
            .stdout
            .trim()
            == "hello"
    });
    println!("a config var set through B was seen through A after {seen:?}");

    // Changes made through both hosts at once: each is acknowledged, none
    // is lost, and the versions they make are unique and without gaps.
    let changes = 12;
    std::thread::scope(|scope| {
        for i in 0..changes {
            let (a, b) = (&a, &b);
            scope.spawn(move || {
                let through = if i % 2 == 0 { a } else { b };
                through
                    .cli(&["config:set", &format!("K{i}=v{i}"), "-a", "shop"])
                    .ok();
            });
        }
    });
    let expected: Vec<u64> = (1..=2 + changes as u64).collect();
    for (name, through) in [("A", &a), ("B", &b)] {
        within(
            Duration::from_secs(5),
            "every release on both hosts",
            || versions(through, "shop") == expected,
        );
        let config = config(through, "shop");
        for i in 0..changes {
            assert_eq!(
                config[format!("K{i}")].as_str(),
                Some(format!("v{i}").as_str()),
                "{name} lost K{i}: {config}"
            );
        }
    }

    // One NATS server killed: the hosts keep their ledger and keep taking
    // changes (the buckets are on all three; two are a quorum).
    nats.kill9(0);
    a.cli(&["config:set", "AFTER_NATS_LOSS=1", "-a", "shop"])
        .ok();
    b.cli(&["config:set", "FROM_B=1", "-a", "shop"]).ok();
    let seen = within(
        Duration::from_secs(20),
        "A sees B's change without n1",
        || config(&a, "shop")["FROM_B"] == "1",
    );
    println!("without n1, a config var set through B was seen through A after {seen:?}");
    nats.restart(0);

    // A host killed: nothing it acknowledged is lost, and it comes back
    // with the cluster's ledger.
    let acknowledged = versions(&a, "shop");
    assert_eq!(acknowledged.len(), 2 + changes + 2);
    a.kill9();
    assert_eq!(versions(&b, "shop"), acknowledged);
    b.cli(&["config:set", "WHILE_A_WAS_DOWN=1", "-a", "shop"])
        .ok();
    let a = host(&tmp, "a", &nats);
    let config = config(&a, "shop");
    assert_eq!(config["WHILE_A_WAS_DOWN"], "1", "{config}");
    assert_eq!(config["AFTER_NATS_LOSS"], "1", "{config}");
    assert_eq!(versions(&a, "shop").len(), acknowledged.len() + 1);

    // The ledger is in the cluster, not in the hosts' data folders.
    assert!(!Path::new(&tmp.join("a").join("db")).exists());
}

/// Two hosts asked for the same new name at once: the cluster gives it to
/// exactly one of them.
#[test]
fn the_cluster_decides_which_of_two_hosts_writes_wins() {
    let _serial = one_at_a_time();
    let nats = NatsCluster::start();
    let tmp = TempDir::new("cluster-race");
    let a = host(&tmp, "a", &nats);
    let b = host(&tmp, "b", &nats);
    // Two hosts race to create the same app: exactly one gets it.
    let (made_a, made_b) = std::thread::scope(|scope| {
        let on_a = scope.spawn(|| a.cli(&["apps:create", "race"]).status.success());
        let on_b = scope.spawn(|| b.cli(&["apps:create", "race"]).status.success());
        (on_a.join().unwrap(), on_b.join().unwrap())
    });
    assert!(made_a ^ made_b, "a: {made_a}, b: {made_b}");
    within(Duration::from_secs(5), "both hosts list one app", || {
        versions(&a, "race") == [1] && versions(&b, "race") == [1]
    });
}

/// A component deployed through one host is served by every host: the
/// release reaches them through the ledger's watch, and its slug through
/// the cluster's object store. A config change made through another host
/// switches every host's dynos to the new release.
#[test]
fn an_app_deployed_through_one_host_is_served_by_every_host() {
    let _serial = one_at_a_time();
    let nats = NatsCluster::start();
    let tmp = TempDir::new("cluster-serve");
    let a = host(&tmp, "a", &nats);
    let b = host(&tmp, "b", &nats);
    let c = host(&tmp, "c", &nats);
    let component = built_component("examples/hello-rust");
    a.cli(&["apps:create", "shop"]).ok();
    let deploy = Instant::now();
    a.cli(&[
        "deploy",
        "--component",
        component.to_str().unwrap(),
        "-a",
        "shop",
    ])
    .ok();
    for (name, through) in [("A", &a), ("B", &b), ("C", &c)] {
        let took = within(Duration::from_secs(20), "every host serves the app", || {
            through.app_get("shop", "/").status == 200
        });
        println!(
            "{name} served the app {:?} after the deploy began ({took:?} of waiting)",
            deploy.elapsed()
        );
    }
    // C fetches the slug from the cluster to keep the app ready to wake,
    // even where it runs no web dyno of it. That follows the release, which
    // may reach C after C began forwarding the app's requests to A or B.
    within(Duration::from_secs(20), "C fetches the slug", || {
        std::fs::read_dir(tmp.join("c").join("slugs"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tgz"))
    });

    // hello-rust answers with its GREETING; set through B, every host's
    // dynos answer with it.
    b.cli(&["config:set", "GREETING=from b", "-a", "shop"]).ok();
    for through in [&a, &b, &c] {
        within(Duration::from_secs(10), "every host runs v3", || {
            through.app_get("shop", "/").body.contains("from b")
        });
    }

    // A request served by C is in the app's log as B shows it.
    assert_eq!(c.app_get("shop", "/served-by-c").status, 200);
    within(Duration::from_secs(5), "B shows C's router line", || {
        b.cli(&["logs", "-a", "shop"])
            .stdout
            .contains("path=\"/served-by-c\"")
    });

    // Every host beats, and the admin sees all three.
    let hosts = |through: &Server| -> Vec<(String, String)> {
        host_list(through)
            .into_iter()
            .map(|(name, state, _)| (name, state))
            .collect()
    };
    let up = |name: &str| (name.to_string(), "up".to_string());
    within(Duration::from_secs(10), "three hosts up", || {
        hosts(&b) == [up("a"), up("b"), up("c")]
    });
    println!("{}", b.cli(&["hosts"]).ok().stdout);

    // A drain added through A runs on every host: each delivers the lines
    // it writes, once.
    let receiver = support::drain_receiver::Receiver::start();
    let drain_url = format!("http://127.0.0.1:{}/shop-log", receiver.port);
    a.cli(&["drains:add", &drain_url, "-a", "shop"]).ok();
    let drained = |what: &str| {
        receiver
            .frames("/shop-log")
            .iter()
            .filter(|f| f.contains(what))
            .count()
    };
    for (name, through) in [("B", &b), ("C", &c)] {
        let mut n = 0;
        within(
            Duration::from_secs(10),
            "the drain runs on every host",
            || {
                n += 1;
                let var = format!("DRAINED_{name}_{n}");
                through
                    .cli(&["config:set", &format!("{var}=1"), "-a", "shop"])
                    .ok();
                std::thread::sleep(Duration::from_millis(300));
                drained(&var) == 1
            },
        );
    }

    // The host the app was deployed through is killed: the others go on
    // serving it, and a new release through one of them reaches the other.
    a.kill9();
    assert!(b.app_get("shop", "/").body.contains("from b"));
    c.cli(&["config:set", "GREETING=from c", "-a", "shop"]).ok();
    within(Duration::from_secs(10), "B runs C's release", || {
        b.app_get("shop", "/").body.contains("from c")
    });
    // The drain goes on without the host that added it, and no host sends
    // another's lines.
    assert_eq!(b.app_get("shop", "/drained-after-the-kill").status, 200);
    within(
        Duration::from_secs(10),
        "the drain has the lines B and C wrote",
        || drained("GREETING") == 1 && drained("/drained-after-the-kill") == 1,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(drained("GREETING"), 1);
    assert_eq!(drained("/drained-after-the-kill"), 1);
    // A stopped beating: within three beats and one, it is lost.
    let lost = within(Duration::from_secs(15), "A shown as lost", || {
        hosts(&c) == [("a".to_string(), "lost".to_string()), up("b"), up("c")]
    });
    println!("the killed host was shown as lost {lost:?} after the others' next change");

    // Changes to the app's record through one host reach the other's
    // router: a rename, maintenance mode, a custom domain; and a deletion
    // stops the app everywhere.
    let by_domain = |through: &Server, hostname: &str| {
        support::request(
            "GET",
            &format!("http://127.0.0.1:{}/", through.http_port),
            &[("Host", hostname)],
            None,
        )
        .status
    };
    c.cli(&["apps:rename", "market", "-a", "shop"]).ok();
    within(
        Duration::from_secs(10),
        "B routes the new name only",
        || b.app_get("market", "/").status == 200 && b.app_get("shop", "/").status == 404,
    );
    c.cli(&["maintenance:on", "-a", "market"]).ok();
    within(Duration::from_secs(10), "B in maintenance", || {
        b.app_get("market", "/").status == 503
    });
    c.cli(&["maintenance:off", "-a", "market"]).ok();
    c.cli(&["domains:add", "www.market.test", "-a", "market"])
        .ok();
    within(Duration::from_secs(10), "B serves the domain", || {
        b.app_get("market", "/").status == 200 && by_domain(&b, "www.market.test") == 200
    });
    c.cli(&["domains:remove", "www.market.test", "-a", "market"])
        .ok();
    within(Duration::from_secs(10), "B forgets the domain", || {
        by_domain(&b, "www.market.test") == 404
    });
    c.cli(&["domains:add", "shop.market.test", "-a", "market"])
        .ok();
    within(
        Duration::from_secs(10),
        "B serves the second domain",
        || by_domain(&b, "shop.market.test") == 200,
    );
    c.cli(&["apps:destroy", "-a", "market", "--confirm", "market"])
        .ok();
    within(
        Duration::from_secs(10),
        "B stops serving the deleted app",
        || b.app_get("market", "/").status == 404 && by_domain(&b, "shop.market.test") == 404,
    );
}

/// Each host as `through` lists it: name, state and the dynos it runs.
fn host_list(through: &Server) -> Vec<(String, String, Vec<String>)> {
    let ran = through.cli(&["hosts", "--json"]).ok();
    serde_json::from_str::<serde_json::Value>(&ran.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["state"].as_str().unwrap().to_string(),
                h["dynos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The hosts whose heartbeat says they run `dyno` (`shop web.1`).
fn running(through: &Server, dyno: &str) -> Vec<String> {
    host_list(through)
        .into_iter()
        .filter(|(_, state, dynos)| state != "lost" && dynos.iter().any(|d| d == dyno))
        .map(|(name, ..)| name)
        .collect()
}

/// Waits until exactly one host runs `dyno` (and not `not_on`); its name.
fn one_host_running(through: &Server, dyno: &str, not_on: &[&str], bound: Duration) -> String {
    let mut found = String::new();
    let took = within(bound, &format!("one host runs {dyno}"), || {
        match running(through, dyno).as_slice() {
            [one] if !not_on.contains(&one.as_str()) => {
                found = one.clone();
                true
            }
            _ => false,
        }
    });
    println!("{dyno} runs on {found} ({took:?})");
    found
}

/// Requests to the app through `hosts`' routers, in turn, until stopped:
/// when each was answered, and with what status.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Instant, u16)>>,
}

impl Load {
    fn start(ports: Vec<u16>, app: &str) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let host = format!("{app}.localhost");
        let handle = std::thread::spawn(move || {
            let mut answers = Vec::new();
            let mut turn = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let port = ports[turn % ports.len()];
                turn += 1;
                let reply = support::try_request(
                    "GET",
                    &format!("http://127.0.0.1:{port}/"),
                    &[("Host", &host)],
                    None,
                );
                answers.push((Instant::now(), reply.map_or(0, |r| r.status)));
            }
            answers
        });
        Load { stop, handle }
    }

    fn stop(self) -> Vec<(Instant, u16)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// `web=1` is one dyno in the cluster, on one host; the others' routers
/// forward to it (the serving host writes the log line, naming both).
/// Killed under load, its app goes on being served by the others, the
/// dyno is placed on another host, and no acknowledged release is lost.
#[test]
fn one_web_dyno_serves_the_cluster_and_moves_when_its_host_is_killed() {
    let _serial = one_at_a_time();
    let nats = NatsCluster::start();
    let tmp = TempDir::new("cluster-place");
    let mut hosts: Vec<(String, Server)> = ["a", "b", "c"]
        .into_iter()
        .map(|name| (name.to_string(), host(&tmp, name, &nats)))
        .collect();
    let component = built_component("examples/hello-rust");
    let (_, first) = &hosts[0];
    first.cli(&["apps:create", "shop"]).ok();
    first
        .cli(&[
            "deploy",
            "--component",
            component.to_str().unwrap(),
            "-a",
            "shop",
        ])
        .ok();
    for (_, through) in &hosts {
        within(Duration::from_secs(20), "every host serves the app", || {
            through.app_get("shop", "/").status == 200
        });
    }
    let placed = one_host_running(first, "shop web.1", &[], Duration::from_secs(15));
    // It stays on one host.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(running(first, "shop web.1"), std::slice::from_ref(&placed));
    }
    let serving = hosts.iter().position(|(n, _)| *n == placed).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != serving).collect();

    // Through another host: forwarded, and logged once, by the serving
    // host, naming both. A client cannot pass itself off as a host.
    let (via, other) = &hosts[others[0]];
    let reply = support::request(
        "GET",
        &format!("http://127.0.0.1:{}/via-another-host", other.http_port),
        &[
            ("Host", "shop.localhost"),
            ("Renga-Forwarded-By", "guessed-secret x"),
        ],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let line = format!("served_by={placed} forwarded_by={via}");
    within(
        Duration::from_secs(5),
        "the forwarded request's line",
        || {
            let log = other.cli(&["logs", "-a", "shop"]).stdout;
            log.lines()
                .filter(|l| l.contains("path=\"/via-another-host\""))
                .any(|l| l.contains(&line))
        },
    );

    // Releases acknowledged through the serving host, then it is killed
    // under load through the other two.
    let (_, serving_host) = &hosts[serving];
    for i in 0..4 {
        serving_host
            .cli(&["config:set", &format!("BEFORE_KILL_{i}=1"), "-a", "shop"])
            .ok();
    }
    let acknowledged = versions(serving_host, "shop");
    let load = Load::start(
        others.iter().map(|i| hosts[*i].1.http_port).collect(),
        "shop",
    );
    std::thread::sleep(Duration::from_secs(1));
    let (_, killed) = hosts.remove(serving);
    let kill = Instant::now();
    killed.kill9();
    let (_, survivor) = &hosts[0];
    let moved = one_host_running(survivor, "shop web.1", &[&placed], Duration::from_secs(20));
    println!(
        "web.1 moved from {placed} to {moved} {:?} after the kill",
        kill.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    let answers = load.stop();
    let after: Vec<&(Instant, u16)> = answers.iter().filter(|(at, _)| *at > kill).collect();
    let failed: Vec<&&(Instant, u16)> = after.iter().filter(|(_, s)| *s != 200).collect();
    let outage = failed
        .last()
        .map_or(Duration::ZERO, |(at, _)| at.duration_since(kill));
    println!(
        "after the kill: {} requests, {} failed, the last failure {outage:?} after it",
        after.len(),
        failed.len()
    );
    assert!(
        after.len() > 50,
        "only {} requests after the kill",
        after.len()
    );
    // Served again within the bound, and every request after it.
    assert!(
        outage < Duration::from_secs(10),
        "failures until {outage:?}"
    );
    for (_, through) in &hosts {
        assert_eq!(versions(through, "shop"), acknowledged);
        assert_eq!(through.app_get("shop", "/").status, 200);
    }
}

/// A Procfile with a web process and a worker, from prebuilt components:
/// the worker prints `tick ID N` every 100 ms, ID being its run's own.
fn write_jobs_app(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        built_component("examples/hello-rust"),
        dir.join("hello.wasm"),
    )
    .unwrap();
    std::fs::copy(
        built_component("tests/guests/command"),
        dir.join("command.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.join("Procfile"),
        "web: hello.wasm\nworker: command.wasm tick 100\n",
    )
    .unwrap();
}

/// The runs of worker.1 (their IDs) in the last `lines` log lines.
fn worker_runs(through: &Server, lines: usize) -> Vec<String> {
    let log = through
        .cli(&["logs", "-a", "jobs", "-n", &lines.to_string()])
        .ok()
        .stdout;
    let mut runs: Vec<String> = log
        .lines()
        .filter_map(|l| l.split_once("app[worker.1]: tick "))
        .filter_map(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        .collect();
    runs.dedup();
    runs
}

/// A worker runs on exactly one host of the cluster (it holds the lease);
/// when that host is killed, another takes it over, and a drained host's
/// worker moves before the drain returns.
#[test]
fn a_worker_runs_once_in_the_cluster_and_moves_when_its_host_dies_or_drains() {
    let _serial = one_at_a_time();
    let nats = NatsCluster::start();
    let tmp = TempDir::new("cluster-workers");
    let mut hosts: Vec<(String, Server)> = ["a", "b", "c"]
        .into_iter()
        .map(|name| (name.to_string(), host(&tmp, name, &nats)))
        .collect();
    let app = tmp.join("jobs");
    write_jobs_app(&app);
    let (_, first) = &hosts[0];
    first.cli(&["apps:create", "jobs"]).ok();
    first
        .cli(&["deploy", app.to_str().unwrap(), "-a", "jobs"])
        .ok();
    first.cli(&["ps:scale", "worker=1", "-a", "jobs"]).ok();

    // A source uploaded through one host is built through another (as a
    // client behind a load balancer would): the upload is in the cluster.
    let releases = versions(first, "jobs").len() as u64;
    let tarball = tmp.join("jobs.tgz");
    let tarred = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&app)
        .arg(".")
        .status()
        .unwrap();
    assert!(tarred.success());
    let (_, uploaded_to) = &hosts[1];
    let (_, built_by) = &hosts[2];
    let made = uploaded_to.api_request("POST", "/sources", Some(support::ADMIN_TOKEN), None);
    assert_eq!(made.status, 201, "{}", made.body);
    let made: serde_json::Value = serde_json::from_str(&made.body).unwrap();
    let url = made["source_blob"]["put_url"].as_str().unwrap().to_string();
    let put = support::request(
        "PUT",
        &url,
        &[("Authorization", &format!("Bearer {}", support::ADMIN_TOKEN))],
        Some(&std::fs::read(&tarball).unwrap()),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let body = serde_json::json!({ "source_blob": { "url": url, "version": "second" } });
    let build = built_by.api_request(
        "POST",
        "/apps/jobs/builds",
        Some(support::ADMIN_TOKEN),
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(build.status, 201, "{}", build.body);
    let id = serde_json::from_str::<serde_json::Value>(&build.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    within(
        Duration::from_secs(60),
        "the build through another host",
        || {
            let reply = built_by.api_request(
                "GET",
                &format!("/apps/jobs/builds/{id}"),
                Some(support::ADMIN_TOKEN),
                None,
            );
            let status = serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert_ne!(status, "failed", "{}", reply.body);
            status == "succeeded"
        },
    );
    within(Duration::from_secs(10), "its release on every host", || {
        hosts
            .iter()
            .all(|(_, h)| versions(h, "jobs").last() == Some(&(releases + 1)))
    });

    let holder = one_host_running(first, "jobs worker.1", &[], Duration::from_secs(20));
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            running(first, "jobs worker.1"),
            std::slice::from_ref(&holder)
        );
    }
    // `ps` through any host says where each dyno runs.
    for (_, through) in &hosts {
        let ps = through.cli(&["ps", "-a", "jobs"]).ok().stdout;
        let line = ps
            .lines()
            .find(|l| l.starts_with("worker.1: "))
            .unwrap_or_default();
        assert!(
            line.contains("worker.1: up") && line.ends_with(&format!(" on {holder}")),
            "{ps}"
        );
        assert_eq!(ps.matches("worker.1: ").count(), 1, "{ps}");
        assert_eq!(ps.matches("web.1: ").count(), 1, "{ps}");
    }
    // One run of the worker prints, whichever host's log is read (once the
    // run of the release before has had its 10 s grace period).
    within(Duration::from_secs(25), "the worker's ticks", || {
        worker_runs(first, 30).len() == 1
    });
    assert_eq!(worker_runs(&hosts[1].1, 30).len(), 1);
    let first_run = worker_runs(first, 30).remove(0);

    // Its host is killed: another takes the lease and runs it, once.
    let index = hosts.iter().position(|(n, _)| *n == holder).unwrap();
    let (_, killed) = hosts.remove(index);
    let kill = Instant::now();
    killed.kill9();
    let (_, survivor) = &hosts[0];
    let taken = one_host_running(
        survivor,
        "jobs worker.1",
        &[&holder],
        Duration::from_secs(25),
    );
    println!(
        "the worker ran again on {taken} {:?} after its host was killed",
        kill.elapsed()
    );
    within(Duration::from_secs(5), "the new run's ticks", || {
        let runs = worker_runs(survivor, 30);
        runs.len() == 1 && runs[0] != first_run
    });
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            running(survivor, "jobs worker.1"),
            std::slice::from_ref(&taken)
        );
        assert_eq!(worker_runs(survivor, 20).len(), 1);
    }

    // The host running it is drained: the worker moves to the last host
    // before the drain returns, and the drained host runs nothing.
    let (_, rest) = hosts.iter().find(|(n, _)| *n != taken).unwrap();
    let drained = rest.cli(&["hosts:drain", &taken]).ok();
    assert!(drained.stdout.contains("runs no dyno"), "{drained}");
    let last = one_host_running(
        rest,
        "jobs worker.1",
        &[&holder, &taken],
        Duration::from_secs(15),
    );
    let list = host_list(rest);
    let (_, state, dynos) = list.iter().find(|(n, ..)| *n == taken).unwrap();
    assert_eq!(state, "draining");
    assert!(dynos.is_empty(), "{dynos:?}");
    // Web requests through the drained host are forwarded to the last one.
    let (_, drained_host) = hosts.iter().find(|(n, _)| *n == taken).unwrap();
    assert_eq!(drained_host.app_get("jobs", "/").status, 200);
    println!("{}", rest.cli(&["hosts"]).ok().stdout);

    // Back in service, it may run dynos again; the worker stays where it is.
    rest.cli(&["hosts:drain", &taken, "--undo"]).ok();
    within(Duration::from_secs(10), "the host back up", || {
        host_list(rest)
            .iter()
            .any(|(n, state, _)| *n == taken && state == "up")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running(rest, "jobs worker.1"), [last]);

    // The app is deleted through a host that does not run its worker: the
    // worker stops where it runs.
    drained_host
        .cli(&["apps:destroy", "-a", "jobs", "--confirm", "jobs"])
        .ok();
    within(Duration::from_secs(20), "no host runs the worker", || {
        running(rest, "jobs worker.1").is_empty()
            && running(drained_host, "jobs worker.1").is_empty()
    });
}

#[test]
fn a_build_through_another_host_starts_from_the_cluster_s_build_cache() {
    use std::os::unix::fs::MetadataExt;
    let _serial = one_at_a_time();
    let nats = NatsCluster::start();
    let tmp = TempDir::new("cluster-build-cache");
    let a = host(&tmp, "a", &nats);
    let b = host(&tmp, "b", &nats);
    let app = support::copy_app("examples/hello-rust", tmp.path());
    let app_dir = app.to_str().unwrap();
    a.cli(&["apps:create", "warm"]).ok();
    let info: serde_json::Value =
        serde_json::from_str(&a.cli(&["apps:info", "-a", "warm", "--json"]).ok().stdout).unwrap();
    let app_id = info["id"].as_str().unwrap().to_string();
    let cache_on = |host: &str| tmp.join(host).join("build-caches").join(&app_id);
    let deploy = |through: &Server, note: &str| {
        std::fs::write(app.join("NOTES.md"), note).unwrap();
        let start = Instant::now();
        let ran = through.cli(&["deploy", app_dir, "-a", "warm"]).ok();
        println!("the {note} build took {:?}", start.elapsed());
        format!("{}{}", ran.stdout, ran.stderr)
    };

    // The first build, through A, compiles everything and stores its cache
    // in the cluster.
    let first = deploy(&a, "first");
    assert!(first.contains("Compiling wstd"), "{first}");
    assert!(
        first.contains("Build cache stored in the cluster"),
        "{first}"
    );
    assert!(!first.contains("fetched"), "{first}");

    // B never built the app: it fetches A's cache and compiles only the
    // app. What it fetched belongs to the app's build uid, as on A.
    let second = deploy(&b, "second");
    assert!(
        second.contains("Build cache fetched from the cluster"),
        "{second}"
    );
    assert!(second.contains("Compiling hello-rust"), "{second}");
    assert!(
        !second.contains("Compiling wstd"),
        "B's build did not start from A's cache:\n{second}"
    );
    assert!(second.contains("Released v3"), "{second}");
    let owner = |host: &str| std::fs::metadata(cache_on(host)).unwrap().uid();
    assert_eq!(owner("b"), owner("a"));
    assert_ne!(owner("b"), 0, "the fetched cache is not the build's");
    assert_eq!(b.app_get("warm", "/").body, "hello from renga\n");

    // B's cache is now the newest: A fetches it; a host whose copy is the
    // newest keeps its own.
    let third = deploy(&a, "third");
    assert!(
        third.contains("Build cache fetched from the cluster"),
        "{third}"
    );
    assert!(!third.contains("Compiling wstd"), "{third}");
    let fourth = deploy(&a, "fourth");
    assert!(!fourth.contains("fetched"), "{fourth}");
    assert!(fourth.contains("Released v5"), "{fourth}");

    // Deleting the app removes its cache from the cluster and from the
    // host that deleted it: a new app of the same name starts cold.
    b.cli(&["apps:destroy", "-a", "warm", "--confirm", "warm"])
        .ok();
    assert!(!cache_on("b").exists());
    let stamp = tmp
        .join("b")
        .join("build-caches")
        .join(format!("{app_id}.shared"));
    assert!(!stamp.exists());
}
