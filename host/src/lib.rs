//! renga: a Heroku-style platform as a service, WebAssembly first.
//!
//! Each Heroku word is one module that owns its records: see DESIGN.md for
//! the map. `runtime` and `capability` are the only modules that touch
//! wasmtime.

pub mod addon;
pub mod api;
pub mod app;
pub mod archive;
pub mod attach;
pub mod auth;
pub mod backend;
pub mod build;
pub mod build_cache;
pub mod buildpack;
pub mod builds;
pub mod capability;
pub mod cli;
pub mod config;
pub mod domain;
pub mod drain;
pub mod dyno;
pub mod formation;
pub mod hosts;
pub mod logplex;
pub mod metrics;
pub mod paths;
pub mod placement;
pub mod platform;
pub mod procfile;
#[cfg(test)]
mod properties;
pub mod provider;
pub mod release;
pub mod router;
pub mod runtime;
pub mod sandbox;
pub mod size;
pub mod slug;
pub mod store;
pub mod units;
