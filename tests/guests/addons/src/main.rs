//! A guest that makes one add-on call per route, so that renga's tests can
//! drive key-value, SQL, config and outbound HTTP from outside. Every error
//! comes back as a 500 whose body is the error, never a trap.
//!
//! - `/kv/get?key=K[&store=S]`         the value, or 404 `missing`
//! - `/kv/set?key=K[&store=S]`         sets the request body
//! - `/kv/delete?key=K[&store=S]`
//! - `/kv/incr?key=K[&by=N][&store=S]` the new value
//! - `/kv/cas?key=K[&store=S]`         appends `x` with compare-and-swap
//! - `/kv/keys[?store=S]`              every key, one per line
//! - `/kv/fill?bytes=N[&key=K][&store=S]` sets a value of N bytes
//! - `/kv/reads?n=N[&key=K][&store=S]` reads K N times (a call-heavy
//!   request, for benchmarks): the last value's length
//! - `/sql/execute[?db=D]`             runs the body; `changes=N last=N`
//! - `/sql/query[?db=D]`               runs the body; rows, tab-separated
//! - `/sql/transaction?name=T[&fail=1][&db=D]` inserts two rows into `t`
//!   in one transaction, then fails (rolling back) when asked
//! - `/config?key=K`                   the config var through wasi:config
//! - `/config/all`                     every config var, `K=V` per line
//! - `/fetch?url=U`                    an outbound GET: `status N` and body

use renga_sdk::kv::Store;
use renga_sdk::sql::{Database, Value};
use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    let query = Query(request.uri().query().unwrap_or("").to_string());
    let mut body = request.into_body();
    let input = body.contents().await?.to_vec();
    let result = match path.as_str() {
        p if p.starts_with("/kv/") => key_value(&p[4..], &query, input),
        p if p.starts_with("/sql/") => sql(&p[5..], &query, input),
        "/config" => renga_sdk::config::get(&query.get("key").unwrap_or_default())
            .map(|v| v.unwrap_or_else(|| "(unset)".to_string()))
            .map_err(|e| format!("config error: {e}")),
        "/config/all" => renga_sdk::config::get_all()
            .map(|all| all.iter().map(|(k, v)| format!("{k}={v}\n")).collect())
            .map_err(|e| format!("config error: {e}")),
        "/fetch" => fetch(&query.get("url").unwrap_or_default()).await,
        _ => return Ok(answer(StatusCode::NOT_FOUND, "not found\n".to_string())),
    };
    Ok(match result {
        Ok(text) if text == "missing" => answer(StatusCode::NOT_FOUND, text),
        Ok(text) => answer(StatusCode::OK, text),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, e),
    })
}

fn key_value(route: &str, query: &Query, input: Vec<u8>) -> Result<String, String> {
    let store = match query.get("store") {
        Some(name) => Store::open(&name),
        None => Store::open_default(),
    }
    .map_err(|e| format!("open: {e}"))?;
    let key = query.get("key").unwrap_or_else(|| "k".to_string());
    let e = |e: renga_sdk::kv::Error| format!("{route}: {e}");
    match route {
        "get" => Ok(match store.get(&key).map_err(e)? {
            Some(value) => String::from_utf8_lossy(&value).into_owned(),
            None => "missing".to_string(),
        }),
        "set" => store.set(&key, input).map(|()| "ok".to_string()).map_err(e),
        "delete" => store.delete(&key).map(|()| "ok".to_string()).map_err(e),
        "incr" => {
            let by = query.get("by").and_then(|b| b.parse().ok()).unwrap_or(1);
            store.increment(&key, by).map(|n| n.to_string()).map_err(e)
        }
        "cas" => store
            .update(&key, |old| {
                let mut value = old.map(<[u8]>::to_vec).unwrap_or_default();
                value.push(b'x');
                value
            })
            .map(|()| "ok".to_string())
            .map_err(e),
        "keys" => {
            let mut keys = store.keys().collect::<Result<Vec<_>, _>>().map_err(e)?;
            keys.sort();
            Ok(keys.iter().map(|k| format!("{k}\n")).collect())
        }
        "fill" => {
            let bytes: usize = query.get("bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
            store
                .set(&key, vec![b'x'; bytes])
                .map(|()| "ok".to_string())
                .map_err(e)
        }
        "reads" => {
            let n: usize = query.get("n").and_then(|n| n.parse().ok()).unwrap_or(1);
            let mut last = 0;
            for _ in 0..n {
                last = store.get(&key).map_err(e)?.map_or(0, |v| v.len());
            }
            Ok(last.to_string())
        }
        _ => Err(format!("no route /kv/{route}")),
    }
}

fn sql(route: &str, query: &Query, input: Vec<u8>) -> Result<String, String> {
    let db = match query.get("db") {
        Some(name) => Database::open(&name),
        None => Database::open_default(),
    }
    .map_err(|e| format!("open: {e:?}"))?;
    let statement = String::from_utf8_lossy(&input).into_owned();
    let e = |e: renga_sdk::sql::Error| format!("{route}: {e:?}");
    match route {
        "execute" => db
            .execute(&statement, &[])
            .map(|o| format!("changes={} last={}", o.changes, o.last_insert_rowid))
            .map_err(e),
        "batch" => db
            .execute_batch(&statement)
            .map(|()| "ok".to_string())
            .map_err(e),
        "query" => {
            let rows = db.query(&statement, &[]).map_err(e)?;
            let mut text = rows.columns.join("\t") + "\n";
            for row in &rows.rows {
                let cells: Vec<String> = row.iter().map(show).collect();
                text += &(cells.join("\t") + "\n");
            }
            Ok(text)
        }
        "transaction" => {
            let name = query.get("name").unwrap_or_default();
            let fail = query.get("fail").is_some();
            db.execute_batch("CREATE TABLE IF NOT EXISTS t (name TEXT NOT NULL, n INTEGER)")
                .map_err(e)?;
            db.transaction(|tx| {
                for n in [1i64, 2] {
                    tx.execute(
                        "INSERT INTO t (name, n) VALUES (?1, ?2)",
                        &[Value::from(name.as_str()), n.into()],
                    )?;
                }
                if fail {
                    tx.execute("INSERT INTO t (name, n) VALUES (NULL, 3)", &[])?;
                }
                Ok(())
            })
            .map(|()| "committed".to_string())
            .map_err(e)
        }
        _ => Err(format!("no route /sql/{route}")),
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_string(),
        other => other
            .as_i64()
            .map(|n| n.to_string())
            .or_else(|| other.as_f64().map(|f| f.to_string()))
            .or_else(|| other.as_str().map(str::to_string))
            .or_else(|| other.as_bytes().map(|b| format!("{} bytes", b.len())))
            .unwrap_or_default(),
    }
}

async fn fetch(url: &str) -> Result<String, String> {
    let outbound = Request::get(url)
        .body(Body::empty())
        .map_err(|e| format!("bad url: {e}"))?;
    match Client::new().send(outbound).await {
        Ok(response) => {
            let status = response.status();
            let mut body = response.into_body();
            let text = body.contents().await.map_err(|e| format!("body: {e}"))?;
            Ok(format!(
                "status {}\n{}",
                status.as_u16(),
                String::from_utf8_lossy(text)
            ))
        }
        Err(e) => Err(format!("outbound error: {e:?}")),
    }
}

fn answer(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}

/// A request's query string, `k=v&k=v` (no percent-decoding but `%2F`, `%3A`).
struct Query(String);

impl Query {
    fn get(&self, name: &str) -> Option<String> {
        self.0.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.replace("%2F", "/").replace("%3A", ":"))
        })
    }
}
