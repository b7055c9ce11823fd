//! renga's SDK for Rust apps: the add-ons an app has, through the
//! interfaces renga serves.
//!
//! - [`kv`]: a `renga-kv` add-on, through `wasi:keyvalue` (0.2.0-draft2).
//! - [`sql`]: a `renga-sql` add-on, through `renga:sql`.
//! - [`config`]: the app's config vars, through `wasi:config/store`.
//!
//! Serve HTTP with `wstd` (see `examples/counter-rust`); this crate adds
//! only what `wstd` and the standard library do not have. Only the
//! interfaces an app calls become imports of its component, so an app that
//! never touches SQL needs no SQL add-on.
//!
//! Apps depend on `renga-sdk = "0.1"`; renga's Rust buildpack supplies this
//! crate (it is not on crates.io), and `renga dev` gives every add-on a
//! local store.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "renga:app/addons@0.1.0",
        generate_all,
    });
}

pub mod config;
pub mod kv;
pub mod sql;
