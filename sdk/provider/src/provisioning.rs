//! How an add-on comes to be: renga calls [`Provisioning::provision`] once,
//! in a fresh instance, when `renga addons:create SERVICE -a APP -- --KEY
//! VALUE` makes it, before any app reaches it.
//!
//! The answer is the config vars every app the add-on is attached to gets,
//! named without the attachment's prefix (`LIMIT` becomes `API_RATE_LIMIT`
//! for an app that attached the add-on as `API_RATE`), or why the options
//! are refused, which `renga addons:create` shows (the add-on is then never
//! made). Check every option here, with the same code that reads them later
//! ([`Options`](crate::options::Options)), so that a bad option is refused
//! once rather than failing every call.

pub use crate::bindings::exports::renga::app::provisioning::Guest as Provisioning;
