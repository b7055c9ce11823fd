//! Several renga hosts on one NATS JetStream cluster: real `nats-server`s
//! (three, each with its own store folder and ports) and real `renga
//! server`s sharing the ledger through them.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{NatsCluster, Server, TempDir, built_component};

fn host(tmp: &TempDir, name: &str, nats: &NatsCluster) -> Server {
    Server::start_with(
        &tmp.join(name),
        &["--cluster", &nats.urls(), "--host-name", name],
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
    within(
        Duration::from_secs(20),
        "A sees B's change without n1",
        || config(&a, "shop")["FROM_B"] == "1",
    );
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
    // C fetched the slug from the cluster: it is in C's cache now.
    assert!(
        std::fs::read_dir(tmp.join("c").join("slugs"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tgz")),
        "C has no copy of the slug"
    );

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
                )
            })
            .collect()
    };
    let up = |name: &str| (name.to_string(), "up".to_string());
    within(Duration::from_secs(10), "three hosts up", || {
        hosts(&b) == [up("a"), up("b"), up("c")]
    });
    println!("{}", b.cli(&["hosts"]).ok().stdout);

    // The host the app was deployed through is killed: the others go on
    // serving it, and a new release through one of them reaches the other.
    a.kill9();
    assert!(b.app_get("shop", "/").body.contains("from b"));
    c.cli(&["config:set", "GREETING=from c", "-a", "shop"]).ok();
    within(Duration::from_secs(10), "B runs C's release", || {
        b.app_get("shop", "/").body.contains("from c")
    });
    // A stopped beating: within three beats and one, it is lost.
    let lost = within(Duration::from_secs(15), "A shown as lost", || {
        hosts(&c) == [("a".to_string(), "lost".to_string()), up("b"), up("c")]
    });
    println!("the killed host was shown as lost {lost:?} after the others' next change");
}
