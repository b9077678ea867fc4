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

/// Remove the compiled code in `dir` of every module whose hash is not in `keep` (the versions
/// loaded now), and temporary files left by an interrupted write, so the folder holds only what
/// serves. Returns how many files were removed.
pub fn prune(dir: &Path, keep: &[&str]) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = match path.extension().and_then(|e| e.to_str()) {
            Some("cwasm") => path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_none_or(|hash| !keep.contains(&hash)),
            Some("tmp") => true,
            _ => false,
        };
        if !stale {
            continue;
        }
        // Unlinking code a plugin still runs is safe: its mapping lives until it is dropped.
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove stale compiled code")
            }
        }
    }
    removed
}

fn store(component: &Component, dir: &Path, path: &PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bytes = component.serialize()?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_only_the_loaded_versions() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "aaa.cwasm",
            "bbb.cwasm",
            "ccc.cwasm",
            "ddd.tmp",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        assert_eq!(prune(dir.path(), &["bbb"]), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["bbb.cwasm", "notes.txt"]);
        assert_eq!(prune(&dir.path().join("missing"), &[]), 0);
    }
}
