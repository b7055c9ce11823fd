//! placement: which host of a cluster runs which dyno, by rendezvous
//! (highest random weight) hashing.
//!
//! Every host computes the same answer from the same two inputs, the app's
//! formation and the hosts that are up and not draining, so no scheduler
//! has to be asked and none can be lost. Each app ranks the hosts by a
//! hash of (app, host); `web.i` runs on the i-th host of that ranking
//! (wrapping round when an app has more web dynos than there are hosts),
//! so an app's web dynos spread over distinct hosts. A worker dyno ranks
//! the hosts by (app, dyno) and runs on the first. When a host goes, only
//! the dynos it ran move; when one comes, only the dynos it now ranks
//! first for move to it. Workers are also leased (see `platform/leases`),
//! because two hosts may briefly disagree on who is up.

use sha2::{Digest, Sha256};

/// The weight of `host` for `key`: the first 8 bytes of
/// sha256(key, 0, host), stable across builds and machines.
fn weight(key: &str, host: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(key.as_bytes());
    hash.update([0]);
    hash.update(host.as_bytes());
    let digest = hash.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

/// `hosts` ordered by their weight for `key`, heaviest first (ties, which
/// need equal hashes, by name).
pub fn rank<'a>(key: &str, hosts: &'a [String]) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = hosts.iter().map(|h| (weight(key, h), h.as_str())).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, host)| host).collect()
}

/// The host each of an app's `quantity` web dynos runs on: `web.i` at
/// index i-1. Empty when no host is up.
pub fn web_hosts<'a>(app_id: &str, quantity: u32, hosts: &'a [String]) -> Vec<&'a str> {
    let ranked = rank(app_id, hosts);
    if ranked.is_empty() {
        return Vec::new();
    }
    (0..quantity as usize)
        .map(|i| ranked[i % ranked.len()])
        .collect()
}

/// The numbers of the web dynos `host` runs (`[1, 4]` for web.1 and web.4).
pub fn web_dynos_on(app_id: &str, quantity: u32, hosts: &[String], host: &str) -> Vec<u32> {
    web_hosts(app_id, quantity, hosts)
        .into_iter()
        .zip(1..)
        .filter(|(on, _)| *on == host)
        .map(|(_, index)| index)
        .collect()
}

/// The host a worker dyno (`worker.2`) runs on.
pub fn worker_host<'a>(app_id: &str, dyno: &str, hosts: &'a [String]) -> Option<&'a str> {
    rank(&format!("{app_id}/{dyno}"), hosts).first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_host_computes_the_same_placement_whatever_order_it_lists_hosts_in() {
        let a = hosts(&["a", "b", "c"]);
        let b = hosts(&["c", "a", "b"]);
        assert_eq!(web_hosts("app1", 5, &a), web_hosts("app1", 5, &b));
        assert_eq!(
            worker_host("app1", "worker.1", &a),
            worker_host("app1", "worker.1", &b)
        );
    }

    #[test]
    fn web_dynos_spread_over_distinct_hosts_before_any_host_gets_two() {
        let all = hosts(&["a", "b", "c"]);
        for app in 0..50 {
            let app = format!("app{app}");
            let placed = web_hosts(&app, 3, &all);
            let mut distinct = placed.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{app}: {placed:?}");
            let four = web_hosts(&app, 4, &all);
            assert_eq!(four[3], four[0]);
            let mut on: Vec<u32> = all
                .iter()
                .flat_map(|h| web_dynos_on(&app, 4, &all, h))
                .collect();
            on.sort_unstable();
            assert_eq!(on, [1, 2, 3, 4]);
        }
    }

    #[test]
    fn a_lost_host_moves_only_its_own_dynos() {
        let all = hosts(&["a", "b", "c", "d"]);
        let without_b = hosts(&["a", "c", "d"]);
        let mut moved = 0;
        for app in 0..200 {
            let app = format!("app{app}");
            let dyno = "worker.1";
            let before = worker_host(&app, dyno, &all).unwrap();
            let after = worker_host(&app, dyno, &without_b).unwrap();
            if before == "b" {
                moved += 1;
            } else {
                assert_eq!(before, after, "{app} moved off a host that stayed");
            }
            // web.1 likewise.
            let before = web_hosts(&app, 1, &all)[0];
            let after = web_hosts(&app, 1, &without_b)[0];
            if before != "b" {
                assert_eq!(before, after);
            }
        }
        // About a quarter of 200 were on b.
        assert!((25..=75).contains(&moved), "{moved} workers were on b");
    }

    #[test]
    fn no_host_up_places_nothing() {
        assert!(web_hosts("app", 2, &[]).is_empty());
        assert_eq!(worker_host("app", "worker.1", &[]), None);
    }
}
