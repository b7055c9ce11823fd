//! A command component on the app's key-value add-on:
//!
//! - `incr KEY`  increments KEY and prints the new value
//! - `get KEY`   prints KEY's value, or `missing`
//! - `tick KEY`  increments KEY every 100 ms, forever (a worker)
//! - `config KEY` prints a config var read through wasi:config

use renga_sdk::kv::Store;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (verb, key) = match args.as_slice() {
        [_, verb, key, ..] => (verb.as_str(), key.as_str()),
        _ => {
            eprintln!("usage: kv-command incr|get|tick|config KEY");
            std::process::exit(2);
        }
    };
    if verb == "config" {
        match renga_sdk::config::get(key) {
            Ok(value) => println!("{}", value.unwrap_or_else(|| "(unset)".to_string())),
            Err(e) => fail(&e),
        }
        return;
    }
    let store = Store::open_default().unwrap_or_else(|e| fail(&e));
    match verb {
        "incr" => println!(
            "{key}={}",
            store.increment(key, 1).unwrap_or_else(|e| fail(&e))
        ),
        "get" => match store.get_string(key).unwrap_or_else(|e| fail(&e)) {
            Some(value) => println!("{key}={value}"),
            None => println!("{key} missing"),
        },
        "tick" => loop {
            store.increment(key, 1).unwrap_or_else(|e| fail(&e));
            std::thread::sleep(std::time::Duration::from_millis(100));
        },
        _ => fail(&format!("no verb {verb}")),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("kv-command: {e}");
    std::process::exit(1);
}
