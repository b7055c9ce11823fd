//! The app's config vars through `wasi:config/store`: the same values as
//! its environment, read when asked rather than at start.

use crate::bindings::wasi::config::store;

/// Why config could not be read (renga never fails these calls; another
/// host might).
#[derive(Debug, Clone)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn error(e: store::Error) -> Error {
    match e {
        store::Error::Upstream(m) | store::Error::Io(m) => Error(m),
    }
}

/// One config var, if it is set.
pub fn get(key: &str) -> Result<Option<String>, Error> {
    store::get(key).map_err(error)
}

/// Every config var.
pub fn get_all() -> Result<Vec<(String, String)>, Error> {
    store::get_all().map_err(error)
}
