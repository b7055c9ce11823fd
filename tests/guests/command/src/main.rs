//! A plain command component (it exports `wasi:cli/run`), which a web
//! process must refuse: it cannot answer HTTP.

fn main() {
    println!("a command, not an HTTP handler");
}
