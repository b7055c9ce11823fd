//! A plain command component (it exports `wasi:cli/run`), which a web
//! process must refuse: it cannot answer HTTP. As a one-off dyno,
//! `sleep SECONDS` keeps it running that long; `lines N` prints N numbered
//! lines as fast as it can, then `done`; `env NAME` prints NAME's value
//! from its environment (config vars), or `unset`; `tick MILLIS` prints
//! `tick ID N` every MILLIS until it is stopped, ID being random per run
//! (so that a test can tell two runs of one worker apart).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, verb, name, ..] = args.as_slice()
        && verb == "env"
    {
        println!("{}", std::env::var(name).unwrap_or_else(|_| "unset".into()));
        return;
    }
    if let [_, verb, seconds, ..] = args.as_slice() {
        if verb == "lines" {
            let count: u64 = seconds.parse().unwrap_or(1);
            for n in 0..count {
                println!("line {n}");
            }
            println!("done");
            return;
        }
        if verb == "tick" {
            let every: u64 = seconds.parse().unwrap_or(200);
            // RandomState's keys come from the host's random source.
            let id = {
                use std::hash::{BuildHasher, Hasher};
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write_u8(0);
                hasher.finish()
            };
            for n in 0.. {
                println!("tick {id:016x} {n}");
                std::thread::sleep(std::time::Duration::from_millis(every));
            }
        }
        if verb == "sleep" {
            let seconds: u64 = seconds.parse().unwrap_or(1);
            std::thread::sleep(std::time::Duration::from_secs(seconds));
            println!("slept {seconds}s");
            return;
        }
    }
    println!("a command, not an HTTP handler");
}
