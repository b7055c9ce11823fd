//! The environment: WASI 0.2's base interfaces (`wasi:cli`, `wasi:clocks`,
//! `wasi:random`, `wasi:io`, `wasi:filesystem`, `wasi:sockets`), so that
//! components built by standard toolchains (whose std imports them) link.
//!
//! What a guest can reach through them is decided here: its environment is
//! exactly the release's config vars and `DYNO`; its arguments are its
//! command's; its stdout and stderr are log lines of its dyno unless the
//! process is attached to a caller (`renga run`); stdin is empty unless
//! someone feeds it. No preopened folder, no socket address, no name lookup:
//! those are `WasiCtxBuilder`'s defaults.

use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::stdio::{GuestOutput, WRITE_BUDGET};
use super::{Capability, DynoInputs, ImportName, InstanceInputs, ReleaseInputs};
use crate::logplex::{AppLog, Process};
use crate::runtime::DynoState;

/// The WASI packages this capability serves, at 0.2.x.
const PACKAGES: &[&str] = &["cli", "clocks", "random", "io", "filesystem", "sockets"];
/// The WASI 0.3 packages linked (0.3 has no `io`; its files and sockets are
/// not linked, so a component that imports them is refused by name).
const P3_PACKAGES: &[&str] = &["cli", "clocks", "random"];

pub struct Environment;

/// A release's environment: its config vars, `DYNO` left out.
pub struct ReleaseEnv {
    vars: Vec<(String, String)>,
}

/// A dyno's environment: the release's, with its `DYNO`.
pub struct DynoEnv {
    vars: Arc<[(String, String)]>,
    log: AppLog,
    name: Process,
}

impl Capability for Environment {
    type Release = ReleaseEnv;
    type Dyno = DynoEnv;
    type Instance = WasiCtx;

    fn link(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        Ok(())
    }

    fn link_concurrent(&self, linker: &mut Linker<DynoState>) -> anyhow::Result<()> {
        // WASI 0.3's: what a `wasi:http/service` component imports (its
        // files and sockets are not granted, as in 0.2).
        wasmtime_wasi::p3::cli::add_to_linker(linker)?;
        wasmtime_wasi::p3::clocks::add_to_linker(linker)?;
        wasmtime_wasi::p3::random::add_to_linker(linker)?;
        Ok(())
    }

    fn claims(&self, import: &ImportName) -> bool {
        PACKAGES
            .iter()
            .any(|package| import.is("wasi", package, &["0.2.*"]))
            || P3_PACKAGES
                .iter()
                .any(|package| import.is("wasi", package, &["0.3.*"]))
    }

    fn configure(&self, release: &ReleaseInputs<'_>) -> anyhow::Result<ReleaseEnv> {
        Ok(ReleaseEnv {
            vars: release
                .config
                .iter()
                .filter(|(k, _)| k.as_str() != "DYNO")
                .map(|(k, v)| (k.as_str().to_string(), v.to_string()))
                .collect(),
        })
    }

    fn dyno(&self, release: &ReleaseEnv, dyno: &DynoInputs<'_>) -> DynoEnv {
        let mut vars = release.vars.clone();
        vars.push(("DYNO".into(), dyno.name.to_string()));
        DynoEnv {
            vars: vars.into(),
            log: dyno.log.clone(),
            name: dyno.name.clone(),
        }
    }

    fn instance(
        &self,
        _release: &ReleaseEnv,
        dyno: &DynoEnv,
        inputs: &mut InstanceInputs<'_>,
    ) -> WasiCtx {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&dyno.vars).args(inputs.args);
        let io = std::mem::take(&mut inputs.io);
        if let Some(stdin) = io.stdin {
            wasi.stdin(wasmtime_wasi::cli::AsyncStdinStream::new(stdin));
        }
        match io.stdout {
            Some(out) => wasi.stdout(wasmtime_wasi::cli::AsyncStdoutStream::new(
                WRITE_BUDGET,
                out,
            )),
            None => wasi.stdout(GuestOutput::new(dyno.log.clone(), dyno.name.clone())),
        };
        match io.stderr {
            Some(err) => wasi.stderr(wasmtime_wasi::cli::AsyncStdoutStream::new(
                WRITE_BUDGET,
                err,
            )),
            None => wasi.stderr(GuestOutput::new(dyno.log.clone(), dyno.name.clone())),
        };
        wasi.build()
    }
}
