//! Compiled code cached on disk by the hash of the wasm bytes, so a restart does not recompile.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The hex SHA-256 of `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compile `wasm`, or load its compiled code from `dir` when it is there.
pub fn compile(
    engine: &Engine,
    dir: Option<&Path>,
    wasm: &[u8],
    hash: &str,
) -> anyhow::Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, wasm)?, false));
    };
    let path = dir.join(format!("{hash}.cwasm"));
    if path.exists() {
        // Safety: the files in the cache folder are written by this function from code that
        // wasmtime compiled; wasmtime checks that they match this engine's version and settings.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, true)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "stale compiled-code cache entry; recompiling")
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Err(e) = store(&component, dir, &path) {
        tracing::warn!(error = %format!("{e:#}"), "cannot write the compiled-code cache");
    }
    Ok((component, false))
}

fn store(component: &Component, dir: &Path, path: &PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bytes = component.serialize()?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
