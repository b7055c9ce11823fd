//! A hit counter and a SQL table as a Spin app writes them, through Spin's
//! own interfaces (`spin_sdk::key_value`, `variables`, `sqlite`), not the
//! WASI ones. renga must run it unchanged.
//!
//! - `/`     reads `hits` (text) from the default store, adds one, writes
//!   it back; `{greeting}: N`, the greeting from the Spin variable
//!   `greeting` (config var `GREETING`)
//! - `/sql`  adds a row to `visits` in the default database; the number
//!   of rows

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite::{Connection, Value};

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let text = match request.path() {
        "/sql" => {
            let db = Connection::open_default()?;
            db.execute(
                "CREATE TABLE IF NOT EXISTS visits (id INTEGER PRIMARY KEY, path TEXT NOT NULL)",
                &[],
            )?;
            db.execute(
                "INSERT INTO visits (path) VALUES (?)",
                &[Value::Text(request.path().to_string())],
            )?;
            let counted = db.execute("SELECT COUNT(*) FROM visits", &[])?;
            let rows = counted
                .rows
                .first()
                .and_then(|row| row.get::<i64>(0))
                .ok_or_else(|| anyhow::anyhow!("no count in {:?}", counted.rows))?;
            format!("rows: {rows}\n")
        }
        _ => {
            let store = Store::open_default()?;
            let hits = match store.get("hits")? {
                Some(bytes) => String::from_utf8(bytes)?.trim().parse::<u64>()?,
                None => 0,
            } + 1;
            store.set("hits", hits.to_string().as_bytes())?;
            let greeting = spin_sdk::variables::get("greeting")?;
            format!("{greeting}: {hits}\n")
        }
    };
    Ok(Response::builder().status(200).body(text).build())
}
