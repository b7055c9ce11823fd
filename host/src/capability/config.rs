//! Runtime config (`wasi:config/store`): `get` and `get-all`, answered from
//! the release's config vars, the same values the environment holds.
//!
//! Linked at every version real components import: `0.2.0-rc.1` (wasmtime
//! 40+, wasmCloud 2), `0.2.0-draft-2024-09-27` (Spin 3 and 4),
//! `0.2.0-draft` (wasmtime 27 to 39 and wasmCloud's SDK, interface `store`;
//! wasmCloud 1.0 to 1.3, interface `runtime`). No call fails: a key that is
//! not set is `none`.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::{Capability, DynoInputs, ImportName, InstanceInputs, ReleaseInputs};
use crate::runtime::DynoState;

mod rc1 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/config-0.2.0-rc.1",
        world: "imports",
        imports: { default: trappable },
    });
}

mod spin {
    wasmtime::component::bindgen!({
        path: "wit/config-0.2.0-draft-2024-09-27",
        world: "imports",
        imports: { default: trappable },
    });
}

mod draft {
    wasmtime::component::bindgen!({
        path: "wit/config-0.2.0-draft",
        world: "imports",
        imports: { default: trappable },
    });
}

mod runtime {
    wasmtime::component::bindgen!({
        path: "wit/config-0.2.0-draft-runtime",
        world: "imports",
        imports: { default: trappable },
    });
}

/// The versions it links.
const VERSIONS: &[&str] = &["0.2.0-rc.1", "0.2.0-draft-2024-09-27", "0.2.0-draft"];

pub struct Config;

/// A release's config vars, as `wasi:config` hands them out.
pub type Vars = Arc<BTreeMap<String, String>>;

/// What a store's state lends the generated bindings.
struct View;

impl HasData for View {
    type Data<'a> = &'a Vars;
}

impl Capability for Config {
    type Release = Vars;
    type Dyno = Vars;
    type Instance = Vars;

    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        fn vars(state: &mut DynoState) -> &Vars {
            &state.caps.config
        }
        rc1::wasi::config::store::add_to_linker::<DynoState, View>(linker, vars)?;
        spin::wasi::config::store::add_to_linker::<DynoState, View>(linker, vars)?;
        draft::wasi::config::store::add_to_linker::<DynoState, View>(linker, vars)?;
        runtime::wasi::config::runtime::add_to_linker::<DynoState, View>(linker, vars)?;
        Ok(())
    }

    fn claims(&self, import: &ImportName) -> bool {
        import.is("wasi", "config", VERSIONS)
    }

    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<Vars> {
        Ok(Arc::new(
            release
                .config
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_string()))
                .collect(),
        ))
    }

    fn dyno(&self, release: &Vars, _dyno: &DynoInputs<'_>) -> Vars {
        release.clone()
    }

    fn instance(&self, _release: &Vars, dyno: &Vars, _inputs: &mut InstanceInputs<'_>) -> Vars {
        dyno.clone()
    }
}

fn get(vars: &Vars, key: &str) -> Option<String> {
    vars.get(key).cloned()
}

fn get_all(vars: &Vars) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The same two answers for each version's generated trait.
macro_rules! store_host {
    ($module:path, $error:ident) => {
        impl $module for &Vars {
            fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, $error>> {
                Ok(Ok(get(self, &key)))
            }

            fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, $error>> {
                Ok(Ok(get_all(self)))
            }
        }
    };
}

use draft::wasi::config::store::Error as DraftError;
use rc1::wasi::config::store::Error as Rc1Error;
use runtime::wasi::config::runtime::ConfigError as RuntimeError;
use spin::wasi::config::store::Error as SpinError;

store_host!(rc1::wasi::config::store::Host, Rc1Error);
store_host!(spin::wasi::config::store::Host, SpinError);
store_host!(draft::wasi::config::store::Host, DraftError);
store_host!(runtime::wasi::config::runtime::Host, RuntimeError);
