//! `login`, `auth:token`, `auth:tokens`, `auth:tokens:create`,
//! `auth:revoke`, `users:create`.

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use serde_json::json;

use super::client::{
    Api, Credentials, DEFAULT_API_URL, credentials, field, print_json, print_table,
    store_credentials,
};

/// Store the API address and your token for later commands (mode 0600).
///
/// The token is read from standard input unless --token is given.
///
/// Example:
///   renga login --api-url http://127.0.0.1:7070 < ~/.local/share/renga/admin.token
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LoginCommand {
    /// The renga API.
    #[arg(long, env = "RENGA_API_URL", default_value = DEFAULT_API_URL)]
    api_url: String,
    /// Your API token.
    #[arg(long)]
    token: Option<String>,
}

impl LoginCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let token = match self.token {
            Some(token) => token,
            None => {
                eprint!("API token: ");
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the token")?;
                line.trim().to_string()
            }
        };
        if token.is_empty() {
            bail!("no token given");
        }
        let credentials = Credentials {
            api_url: self.api_url.trim_end_matches('/').to_string(),
            token,
        };
        let account = Api::with(Credentials {
            api_url: credentials.api_url.clone(),
            token: credentials.token.clone(),
        })
        .get("/account")?;
        let path = store_credentials(&credentials)?;
        println!(
            "Logged in to {} as {} (saved in {})",
            credentials.api_url,
            field(&account, &["email"]),
            path.display()
        );
        Ok(())
    }
}

/// Print the API token in use.
///
/// Example:
///   renga auth:token
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TokenCommand {}

impl TokenCommand {
    pub fn run(self) -> anyhow::Result<()> {
        println!("{}", credentials()?.token);
        Ok(())
    }
}

/// Create a user and print their token (admin only). The token is shown
/// once; renga keeps only its hash.
///
/// Example:
///   renga users:create alice
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UsersCreateCommand {
    name: String,
}

impl UsersCreateCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let user = Api::connect()?.post("/users", &json!({ "name": self.name }))?;
        println!(
            "Created user {}. Their API token (shown once):",
            field(&user, &["name"])
        );
        println!("{}", field(&user, &["token"]));
        Ok(())
    }
}

/// List your API tokens (never the tokens themselves; see `auth:token`).
///
/// Example:
///   renga auth:tokens
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TokensCommand {
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

impl TokensCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let tokens = Api::connect()?.get("/oauth/authorizations")?;
        if self.json {
            print_json(&tokens);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = tokens
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|t| {
                        vec![
                            field(t, &["id"]),
                            field(t, &["created_at"]),
                            field(t, &["description"]),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        print_table(&["id", "created", "description"], &rows);
        Ok(())
    }
}

/// Make a new API token for yourself (for a CI job, say); it is shown once.
///
/// Example:
///   renga auth:tokens:create --description "deploys from CI"
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TokensCreateCommand {
    /// What the token is for.
    #[arg(long, default_value = "")]
    description: String,
}

impl TokensCreateCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let created = Api::connect()?.post(
            "/oauth/authorizations",
            &json!({ "description": self.description }),
        )?;
        println!(
            "Created token {}. The token (shown once):",
            field(&created, &["id"])
        );
        println!("{}", field(&created, &["access_token", "token"]));
        Ok(())
    }
}

/// Revoke one of your API tokens by its id (from `auth:tokens`): it stops
/// working at once.
///
/// Example:
///   renga auth:revoke 6f0c2d1e-...
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RevokeCommand {
    /// The token's id, as `auth:tokens` lists it.
    id: String,
}

impl RevokeCommand {
    pub fn run(self) -> anyhow::Result<()> {
        Api::connect()?.delete(&format!("/oauth/authorizations/{}", self.id))?;
        println!("Revoked token {}", self.id);
        Ok(())
    }
}
