//! A plain command component (it exports `wasi:cli/run`), which a web
//! process must refuse: it cannot answer HTTP. As a one-off dyno,
//! `sleep SECONDS` keeps it running that long; `lines N` prints N numbered
//! lines as fast as it can, then `done`; `env NAME` prints NAME's value
//! from its environment (config vars), or `unset`.

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
        if verb == "sleep" {
            let seconds: u64 = seconds.parse().unwrap_or(1);
            std::thread::sleep(std::time::Duration::from_secs(seconds));
            println!("slept {seconds}s");
            return;
        }
    }
    println!("a command, not an HTTP handler");
}
