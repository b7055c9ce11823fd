//! renga's todo list: a small JSON-free HTTP API over a SQL add-on,
//! through `renga:sql`. The same code runs on `renga-sql` (SQLite) and on
//! `renga-postgres` (PostgreSQL): its SQL is what both dialects share
//! (`$1` parameters, `RETURNING`, ids the statement makes itself).
//!
//! ```text
//! $ renga addons:create renga-sql -a todo       # or renga-postgres
//! $ git push renga main
//! $ curl -X POST --data 'buy milk' http://todo.localhost:8080/todos
//! 1 buy milk
//! $ curl -X POST http://todo.localhost:8080/todos/1/done
//! 1 [x] buy milk
//! $ curl http://todo.localhost:8080/todos
//! 1 [x] buy milk
//! $ curl -X DELETE http://todo.localhost:8080/todos/done
//! removed 1
//! ```
//!
//! The tables are created on first use. Marking an item done and logging
//! it happen in one transaction.

use renga_sdk::sql::{Database, Error as SqlError, Value};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS todos (
        id BIGINT PRIMARY KEY,
        title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
        done INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE IF NOT EXISTS history (
        seq BIGINT PRIMARY KEY,
        todo BIGINT NOT NULL,
        event TEXT NOT NULL,
        at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
    );";

/// Appends to the history (inside the caller's transaction, if any).
const LOG: &str = "INSERT INTO history (seq, todo, event)
    SELECT COALESCE(MAX(seq), 0) + 1, CAST($1 AS BIGINT), CAST($2 AS TEXT) FROM history";

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut body = request.into_body();
    let input = String::from_utf8_lossy(body.contents().await?)
        .trim()
        .to_string();
    let outcome = Database::open_default()
        .and_then(|db| db.execute_batch(SCHEMA).map(|()| db))
        .and_then(|db| route(&db, &method, &path, &input));
    Ok(match outcome {
        Ok((status, text)) => answer(status, text),
        Err(SqlError::Constraint(message)) => answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refused: {message}\n"),
        ),
        Err(e) => answer(StatusCode::SERVICE_UNAVAILABLE, format!("{e:?}\n")),
    })
}

fn route(
    db: &Database,
    method: &Method,
    path: &str,
    input: &str,
) -> Result<(StatusCode, String), SqlError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["todos"]) => Ok((StatusCode::OK, list(db)?)),
        (&Method::POST, ["todos"]) => {
            let id = db.transaction(|tx| {
                let added = tx.query(
                    "INSERT INTO todos (id, title) SELECT COALESCE(MAX(id), 0) + 1, CAST($1 AS TEXT) FROM todos RETURNING id",
                    &[input.into()],
                )?;
                let id = added.rows[0][0].as_i64().unwrap_or_default();
                tx.execute(LOG, &[id.into(), "added".into()])?;
                Ok(id)
            })?;
            Ok((StatusCode::CREATED, format!("{id} {input}\n")))
        }
        (&Method::POST, ["todos", id, "done"]) => {
            let Ok(id) = id.parse::<i64>() else {
                return Ok((StatusCode::NOT_FOUND, "no such todo\n".to_string()));
            };
            let changed = db.transaction(|tx| {
                let changed =
                    tx.execute("UPDATE todos SET done = 1 WHERE id = $1", &[id.into()])?;
                tx.execute(LOG, &[id.into(), "done".into()])?;
                Ok(changed.changes)
            })?;
            if changed == 0 {
                return Ok((StatusCode::NOT_FOUND, "no such todo\n".to_string()));
            }
            let rows = db.query(
                "SELECT id, done, title FROM todos WHERE id = $1",
                &[id.into()],
            )?;
            Ok((StatusCode::OK, show(&rows.rows)))
        }
        (&Method::DELETE, ["todos", "done"]) => {
            let removed = db.execute("DELETE FROM todos WHERE done = 1", &[])?;
            Ok((StatusCode::OK, format!("removed {}\n", removed.changes)))
        }
        (&Method::GET, ["history"]) => {
            let rows = db.query("SELECT todo, event FROM history ORDER BY seq", &[])?;
            Ok((
                StatusCode::OK,
                rows.rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {}\n",
                            r[0].as_i64().unwrap_or_default(),
                            r[1].as_str().unwrap_or_default()
                        )
                    })
                    .collect(),
            ))
        }
        _ => Ok((StatusCode::NOT_FOUND, "not found\n".to_string())),
    }
}

fn list(db: &Database) -> Result<String, SqlError> {
    let rows = db.query("SELECT id, done, title FROM todos ORDER BY id", &[])?;
    Ok(show(&rows.rows))
}

fn show(rows: &[Vec<Value>]) -> String {
    rows.iter()
        .map(|r| {
            let done = if r[1].as_i64() == Some(1) {
                "[x]"
            } else {
                "[ ]"
            };
            format!(
                "{} {done} {}\n",
                r[0].as_i64().unwrap_or_default(),
                r[2].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn answer(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
}
