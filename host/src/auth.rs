//! auth: users and their API tokens.
//!
//! Owns user records and tokens. A token is shown once, when it is made, and
//! stored only as its sha256, so a copy of the data folder does not hand out
//! access. It never decides what a user may do with an app; the platform does.

use std::path::Path;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use crate::store::{Db, StoreError, Tree, new_id, now_ms};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub created_at: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TokenRecord {
    user: String,
    created_at: u64,
    /// What the token is shown as in `auth:tokens` (never the token).
    #[serde(default)]
    id: String,
    #[serde(default)]
    description: String,
    /// The admin token that came from `$RENGA_ADMIN_TOKEN`: replaced when
    /// the variable changes.
    #[serde(default)]
    from_environment: bool,
}

/// A token as its owner sees it: never the token itself.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub description: String,
    pub created_at: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UserRef {
    id: String,
}

#[derive(Clone)]
pub struct Auth {
    users: Tree,
    names: Tree,
    tokens: Tree,
}

/// A user name: what `users:create NAME` takes. Letters, digits, dots,
/// dashes, underscores and `@`, so that an email address works too.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b))
}

impl Auth {
    pub fn open(db: &Db) -> anyhow::Result<Auth> {
        Ok(Auth {
            users: db.tree("users")?,
            names: db.tree("user-names")?,
            tokens: db.tree("tokens")?,
        })
    }

    /// The user a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Result<Option<User>, StoreError> {
        match self.tokens.get::<TokenRecord>(hash(token))? {
            Some(record) => self.users.get(&record.user),
            None => Ok(None),
        }
    }

    pub fn find_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        match self.names.get::<UserRef>(name)? {
            Some(reference) => self.users.get(&reference.id),
            None => Ok(None),
        }
    }

    pub fn find(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.users.get(id)
    }

    /// Creates a user and their first token; `None` if the name is taken.
    pub fn create_user(
        &self,
        name: &str,
        admin: bool,
        token: &str,
    ) -> Result<Option<User>, StoreError> {
        let user = User {
            id: new_id(),
            name: name.to_string(),
            admin,
            created_at: now_ms(),
        };
        if !self.names.put_new(
            name,
            &UserRef {
                id: user.id.clone(),
            },
        )? {
            return Ok(None);
        }
        self.users.put(&user.id, &user)?;
        self.add_token(&user, token)?;
        Ok(Some(user))
    }

    pub fn add_token(&self, user: &User, token: &str) -> Result<TokenInfo, StoreError> {
        self.add(user, token, "", false)
    }

    /// Makes a new token for the user; the token is returned once, here.
    pub fn create_token(
        &self,
        user: &User,
        description: &str,
    ) -> Result<(String, TokenInfo), StoreError> {
        let token = new_token();
        let info = self.add(user, &token, description, false)?;
        Ok((token, info))
    }

    fn add(
        &self,
        user: &User,
        token: &str,
        description: &str,
        from_environment: bool,
    ) -> Result<TokenInfo, StoreError> {
        let hashed = hash(token);
        let record = TokenRecord {
            user: user.id.clone(),
            created_at: now_ms(),
            id: new_id(),
            description: description.to_string(),
            from_environment,
        };
        self.tokens.put(&hashed, &record)?;
        Ok(info(&hashed, &record))
    }

    /// The user's tokens, oldest first.
    pub fn tokens(&self, user: &User) -> Result<Vec<TokenInfo>, StoreError> {
        let mut found: Vec<TokenInfo> = self
            .tokens
            .scan_with_keys::<TokenRecord>("")?
            .into_iter()
            .filter(|(_, r)| r.user == user.id)
            .map(|(key, r)| info(&key, &r))
            .collect();
        found.sort_by_key(|t| t.created_at);
        Ok(found)
    }

    /// Revokes one of the user's tokens by its id; false if they have no
    /// such token.
    pub fn revoke(&self, user: &User, id: &str) -> Result<bool, StoreError> {
        for (key, record) in self.tokens.scan_with_keys::<TokenRecord>("")? {
            if record.user == user.id && info(&key, &record).id == id {
                self.tokens.remove(&key)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// On first start, the admin user. Its token is `$RENGA_ADMIN_TOKEN` when
    /// set (and is checked on every start, so it is rotated by changing the
    /// variable: the previous one stops working); otherwise a random one,
    /// returned once and written to `DATA/admin.token` (mode 0600).
    pub fn ensure_admin(
        &self,
        env_token: Option<&str>,
        data: &Path,
    ) -> anyhow::Result<Option<String>> {
        if let Some(admin) = self.find_by_name("admin")? {
            if let Some(token) = env_token {
                self.use_environment_token(&admin, token)?;
            }
            return Ok(None);
        }
        let token = match env_token {
            Some(token) => token.to_string(),
            None => new_token(),
        };
        let Some(admin) = self.create_user("admin", true, &token)? else {
            // Another host of the cluster made it a moment ago.
            let admin = self
                .find_by_name("admin")?
                .context("creating the admin user")?;
            if let Some(token) = env_token {
                self.use_environment_token(&admin, token)?;
            }
            return Ok(None);
        };
        if env_token.is_some() {
            self.use_environment_token(&admin, &token)?;
            return Ok(None);
        }
        write_private(&data.join("admin.token"), &format!("{token}\n"))?;
        Ok(Some(token))
    }

    /// Makes `token` the admin's environment token, revoking the one an
    /// earlier `$RENGA_ADMIN_TOKEN` gave, and the admin tokens a renga from
    /// before token ids kept (it registered every value the variable ever
    /// had, and the one-time random token, without telling them apart).
    fn use_environment_token(&self, admin: &User, token: &str) -> Result<(), StoreError> {
        let current = hash(token);
        for (key, record) in self.tokens.scan_with_keys::<TokenRecord>("")? {
            let replaced = record.from_environment || record.id.is_empty();
            if record.user == admin.id && replaced && key != current {
                self.tokens.remove(&key)?;
            }
        }
        let known = self.tokens.get::<TokenRecord>(&current)?;
        if !known.is_some_and(|r| r.from_environment) {
            self.add(admin, token, "from $RENGA_ADMIN_TOKEN", true)?;
        }
        Ok(())
    }
}

/// A new API token: 32 random bytes, hex.
pub fn new_token() -> String {
    random_hex(32)
}

/// `n` random bytes from the OS, hex: tokens, add-on passwords.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex::encode(bytes)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How a token is shown: its record's id, or, for a record written before
/// tokens had ids, the start of its hash.
fn info(hashed: &str, record: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: if record.id.is_empty() {
            hashed[..12].to_string()
        } else {
            record.id.clone()
        },
        description: record.description.clone(),
        created_at: record.created_at,
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
