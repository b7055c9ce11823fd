//! `renga-kv:redis`: key-value add-ons on the operator's Redis (or Valkey),
//! named with `renga server --redis URL`.
//!
//! Each add-on is a key prefix, `renga:{ID}:`, with an ACL user of its own
//! that may touch only keys under that prefix: its `REDIS_URL`, given to
//! native dynos, carries that user's password, so one app's native code
//! cannot read another's keys. Wasm dynos go through the host's own
//! connection (one multiplexed connection for the server, reconnecting on
//! its own), which adds the prefix to every key: a guest names keys, never
//! prefixes. The `{ID}` is a hash tag, so an add-on's keys and its usage
//! counter share a slot on a Redis Cluster and its scripts stay atomic.
//!
//! Writes run as scripts that keep a byte count per add-on (keys and
//! values) and refuse a write past the plan's quota, the same rule the
//! embedded store follows; writes by native dynos straight to Redis are not
//! counted (the server's `maxmemory` bounds those).

use std::sync::Arc;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::AddonRef;
use super::kv::{Kv, LIST_PAGE, Page, Seen, check_batch, check_key, check_value};

/// The operator's Redis server.
pub struct RedisServer {
    client: redis::Client,
    /// The URL as the operator gave it, without its password, for messages.
    shown: String,
    conn: OnceCell<ConnectionManager>,
    scripts: Scripts,
}

struct Scripts {
    set: Script,
    delete: Script,
    increment: Script,
    swap: Script,
    set_many: Script,
    delete_many: Script,
}

/// Bytes a counter made by `increment` is counted as.
const COUNTER_BYTES: usize = 20;

impl Scripts {
    fn new() -> Scripts {
        // KEYS[1] the usage counter; ARGV[1] the quota; then the key and
        // value (or key) pairs. Sizes count key and value bytes.
        Scripts {
            set: Script::new(
                r#"
local before = 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  before = redis.call('STRLEN', KEYS[2]) + string.len(KEYS[2])
end
local after = string.len(ARGV[2]) + string.len(KEYS[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if after > before and used + after - before > tonumber(ARGV[1]) then
  return redis.error_reply('RENGA_FULL')
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('INCRBY', KEYS[1], after - before)
return 1
"#,
            ),
            delete: Script::new(
                r#"
if redis.call('EXISTS', KEYS[2]) == 1 then
  local size = redis.call('STRLEN', KEYS[2]) + string.len(KEYS[2])
  redis.call('DEL', KEYS[2])
  redis.call('DECRBY', KEYS[1], size)
end
return 1
"#,
            ),
            increment: Script::new(
                r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
  local size = tonumber(ARGV[3]) + string.len(KEYS[2])
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
  if used + size > tonumber(ARGV[1]) then
    return redis.error_reply('RENGA_FULL')
  end
  redis.call('INCRBY', KEYS[1], size)
end
return redis.call('INCRBY', KEYS[2], ARGV[2])
"#,
            ),
            // ARGV[2]: '1' if the key existed when watched; ARGV[3] what it
            // held; ARGV[4] the new value.
            swap: Script::new(
                r#"
local now = redis.call('GET', KEYS[2])
if ARGV[2] == '1' then
  if now ~= ARGV[3] then return 0 end
else
  if now then return 0 end
end
local before = 0
if now then before = string.len(now) + string.len(KEYS[2]) end
local after = string.len(ARGV[4]) + string.len(KEYS[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if after > before and used + after - before > tonumber(ARGV[1]) then
  return redis.error_reply('RENGA_FULL')
end
redis.call('SET', KEYS[2], ARGV[4])
redis.call('INCRBY', KEYS[1], after - before)
return 1
"#,
            ),
            // KEYS[2..]: keys; ARGV[2..]: their values, in order.
            set_many: Script::new(
                r#"
local change = 0
for i = 2, #KEYS do
  local before = 0
  if redis.call('EXISTS', KEYS[i]) == 1 then
    before = redis.call('STRLEN', KEYS[i]) + string.len(KEYS[i])
  end
  change = change + string.len(ARGV[i]) + string.len(KEYS[i]) - before
end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if change > 0 and used + change > tonumber(ARGV[1]) then
  return redis.error_reply('RENGA_FULL')
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i])
end
redis.call('INCRBY', KEYS[1], change)
return 1
"#,
            ),
            delete_many: Script::new(
                r#"
local freed = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    freed = freed + redis.call('STRLEN', KEYS[i]) + string.len(KEYS[i])
    redis.call('DEL', KEYS[i])
  end
end
redis.call('DECRBY', KEYS[1], freed)
return 1
"#,
            ),
        }
    }
}

/// The operator's URL without a password, for messages.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("…"));
            }
            parsed.to_string()
        }
        Err(_) => "the Redis server".to_string(),
    }
}

impl RedisServer {
    /// The server at `url` (connected on first use).
    pub fn new(url: &str) -> anyhow::Result<RedisServer> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("--redis {}: {e}", without_password(url)))?;
        Ok(RedisServer {
            client,
            shown: without_password(url),
            conn: OnceCell::new(),
            scripts: Scripts::new(),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, String> {
        self.conn
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(std::time::Duration::from_secs(5))
                    .set_response_timeout(std::time::Duration::from_secs(10))
                    .set_number_of_retries(2);
                self.client.get_connection_manager_with_config(config).await
            })
            .await
            .cloned()
            .map_err(|e| format!("could not reach Redis at {}: {e}", self.shown))
    }

    /// Its URL without the password, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Waits for the server to answer (a server starting checks it).
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| format!("Redis at {} does not answer: {e}", self.shown))
    }

    fn user(id: &str) -> String {
        format!("renga-{id}")
    }

    fn prefix(id: &str) -> String {
        format!("renga:{{{id}}}:")
    }

    fn usage(id: &str) -> String {
        format!("renga-usage:{{{id}}}")
    }

    /// Makes an add-on's ACL user, allowed only its own keys, and returns
    /// its `REDIS_URL`.
    pub async fn provision(&self, id: &str) -> Result<String, String> {
        let mut conn = self.conn().await?;
        let password = crate::auth::random_hex(24);
        let user = Self::user(id);
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("reset")
            .arg("on")
            .arg(format!(">{password}"))
            .arg(format!("~{}*", Self::prefix(id)))
            .arg("resetchannels")
            .arg("+@all")
            .arg("-@admin")
            .arg("-@dangerous")
            .arg("-@scripting")
            .arg("-select")
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| {
                format!(
                    "Redis at {} refused to make a user for the add-on (renga needs Redis 6 or later, or Valkey, and an account that may run ACL SETUSER): {e}",
                    self.shown
                )
            })?;
        let info = self.client.get_connection_info();
        let mut url = url::Url::parse("redis://localhost").expect("a valid URL");
        match &info.addr {
            redis::ConnectionAddr::Tcp(host, port) => {
                url.set_host(Some(host)).map_err(|e| e.to_string())?;
                let _ = url.set_port(Some(*port));
            }
            other => {
                return Err(format!(
                    "renga gives native dynos a TCP address of Redis; {other:?} is not one"
                ));
            }
        }
        let _ = url.set_username(&user);
        let _ = url.set_password(Some(&password));
        url.set_path(&format!("/{}", info.redis.db));
        Ok(url.to_string())
    }

    /// Deletes an add-on's keys, its counter and its user.
    pub async fn deprovision(&self, id: &str) -> Result<(), String> {
        let mut conn = self.conn().await?;
        let pattern = format!("{}*", glob_escape(&Self::prefix(id)));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(keys)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(Self::usage(id))
            .query_async(&mut conn)
            .await;
        redis::cmd("ACL")
            .arg("DELUSER")
            .arg(Self::user(id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }

    /// Bytes an add-on holds, as its scripts count them.
    pub async fn usage_of(&self, id: &str) -> Result<u64, String> {
        let mut conn = self.conn().await?;
        let used: Option<i64> = redis::cmd("GET")
            .arg(Self::usage(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(used.unwrap_or(0).max(0) as u64)
    }
}

/// Escapes Redis's glob characters.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One add-on's keys on the server.
pub struct RedisKv {
    server: Arc<RedisServer>,
    addon: AddonRef,
    prefix: String,
    usage: String,
}

impl RedisKv {
    pub fn new(server: Arc<RedisServer>, addon: AddonRef) -> RedisKv {
        RedisKv {
            prefix: RedisServer::prefix(&addon.id),
            usage: RedisServer::usage(&addon.id),
            server,
            addon,
        }
    }

    fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }

    /// A Redis error in renga's words.
    fn describe(&self, e: redis::RedisError) -> String {
        let text = e.to_string();
        if text.contains("RENGA_FULL") {
            format!(
                "{} is full: it holds its plan's quota (`renga addons:upgrade` gives it a bigger plan)",
                self.addon.name
            )
        } else if text.contains("not an integer") || text.contains("overflow") {
            format!(
                "{}: the key does not hold a number, or the sum is out of range",
                self.addon.name
            )
        } else {
            format!("{}: Redis: {text}", self.addon.name)
        }
    }

    async fn conn(&self) -> Result<ConnectionManager, String> {
        self.server.conn().await
    }

    /// One page of a SCAN from `cursor` (0 is the start).
    async fn scan(&self, cursor: u64) -> Result<(Vec<String>, Option<u64>), String> {
        let mut conn = self.conn().await?;
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(LIST_PAGE)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.describe(e))?;
        let keys = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string))
            .collect();
        Ok((keys, (next != 0).then_some(next)))
    }
}

#[async_trait::async_trait]
impl Kv for RedisKv {
    fn addon(&self) -> &AddonRef {
        &self.addon
    }

    async fn get(&self, key: String) -> Result<Option<Vec<u8>>, String> {
        check_key(&key)?;
        let mut conn = self.conn().await?;
        redis::cmd("GET")
            .arg(self.key(&key))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.describe(e))
    }

    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), String> {
        check_key(&key)?;
        check_value(&value)?;
        let mut conn = self.conn().await?;
        self.server
            .scripts
            .set
            .key(&self.usage)
            .key(self.key(&key))
            .arg(self.addon.quota)
            .arg(value)
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(|e| self.describe(e))
    }

    async fn delete(&self, key: String) -> Result<(), String> {
        check_key(&key)?;
        let mut conn = self.conn().await?;
        self.server
            .scripts
            .delete
            .key(&self.usage)
            .key(self.key(&key))
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(|e| self.describe(e))
    }

    async fn exists(&self, key: String) -> Result<bool, String> {
        check_key(&key)?;
        let mut conn = self.conn().await?;
        redis::cmd("EXISTS")
            .arg(self.key(&key))
            .query_async::<i64>(&mut conn)
            .await
            .map(|n| n > 0)
            .map_err(|e| self.describe(e))
    }

    async fn list_after(&self, after: Option<String>) -> Result<Page<String>, String> {
        let cursor = match after.as_deref() {
            None | Some("") => 0,
            Some(text) => text
                .parse()
                .map_err(|_| format!("{}: {text:?} is not a cursor it gave", self.addon.name))?,
        };
        let (keys, next) = self.scan(cursor).await?;
        Ok(Page {
            keys,
            next: next.map(|n| n.to_string()),
        })
    }

    async fn list_from(&self, offset: u64) -> Result<Page<u64>, String> {
        let (keys, next) = self.scan(offset).await?;
        Ok(Page { keys, next })
    }

    async fn increment(
        &self,
        key: String,
        delta: i128,
        range: (i128, i128),
    ) -> Result<i128, String> {
        check_key(&key)?;
        let delta = i64::try_from(delta)
            .map_err(|_| format!("{}: Redis adds 64-bit numbers only", self.addon.name))?;
        let mut conn = self.conn().await?;
        let sum: i64 = self
            .server
            .scripts
            .increment
            .key(&self.usage)
            .key(self.key(&key))
            .arg(self.addon.quota)
            .arg(delta)
            .arg(COUNTER_BYTES)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.describe(e))?;
        let sum = i128::from(sum);
        if !(range.0..=range.1).contains(&sum) {
            return Err(format!(
                "{key} is {sum}, out of range ({} to {})",
                range.0, range.1
            ));
        }
        Ok(sum)
    }

    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, String> {
        check_batch(&keys)?;
        for key in &keys {
            check_key(key)?;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(full)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.describe(e))?;
        let total: usize = values.iter().flatten().map(Vec::len).sum();
        if total > super::kv::MAX_BATCH_BYTES {
            return Err(format!(
                "{}: the values asked for are more than one call may read; ask for fewer keys",
                self.addon.name
            ));
        }
        Ok(keys.into_iter().zip(values).collect())
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        check_batch(&pairs)?;
        let mut total = 0;
        for (key, value) in &pairs {
            check_key(key)?;
            check_value(value)?;
            total += value.len();
        }
        if total > super::kv::MAX_BATCH_BYTES {
            return Err("the values are more than one call may write".to_string());
        }
        if pairs.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let mut call = self.server.scripts.set_many.key(&self.usage);
        call.arg(self.addon.quota);
        for (key, value) in pairs {
            call.key(self.key(&key)).arg(value);
        }
        call.invoke_async::<()>(&mut conn)
            .await
            .map_err(|e| self.describe(e))
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), String> {
        check_batch(&keys)?;
        for key in &keys {
            check_key(key)?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        let mut call = self.server.scripts.delete_many.key(&self.usage);
        for key in keys {
            call.key(self.key(&key));
        }
        call.invoke_async::<()>(&mut conn)
            .await
            .map_err(|e| self.describe(e))
    }

    async fn watch(&self, key: String) -> Result<Seen, String> {
        let value = self.get(key).await?;
        Ok(Seen {
            value,
            version: None,
        })
    }

    async fn swap(&self, key: String, seen: &Seen, value: Vec<u8>) -> Result<bool, String> {
        check_key(&key)?;
        check_value(&value)?;
        let mut conn = self.conn().await?;
        let swapped: i64 = self
            .server
            .scripts
            .swap
            .key(&self.usage)
            .key(self.key(&key))
            .arg(self.addon.quota)
            .arg(if seen.value.is_some() { "1" } else { "0" })
            .arg(seen.value.clone().unwrap_or_default())
            .arg(value)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.describe(e))?;
        Ok(swapped == 1)
    }
}

impl std::fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKv")
            .field("addon", &self.addon.name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_hash_tagged_and_escaped() {
        assert_eq!(RedisServer::prefix("ab"), "renga:{ab}:");
        assert_eq!(RedisServer::usage("ab"), "renga-usage:{ab}");
        assert_eq!(glob_escape("renga:{a*b}:"), "renga:{a\\*b}:");
        assert_eq!(
            without_password("redis://u:secret@h:1/0"),
            "redis://u:%E2%80%A6@h:1/0"
        );
    }
}
