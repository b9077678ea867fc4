//! Compiled code cached on disk by the hash of the wasm bytes, so a restart does not recompile.

use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The hex SHA-256 of `bytes`.
pub fn hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compile `wasm`, or load its compiled code from `dir` when it is there. `compiler` is the
/// configuration of the engine that compiles: one made for the compilation and dropped after
/// it. wasmtime keeps each compiler's working memory (register allocation state, as large as
/// the largest function compiled needs) for reuse while its engine lives: about 15 MB for the
/// example plugins, which `engine` would hold for as long as the server runs, though it
/// compiles only at start and at reloads.
pub fn compile(
    engine: &Engine,
    compiler: &wasmtime::Config,
    dir: Option<&Path>,
    wasm: &[u8],
    hash: &str,
) -> anyhow::Result<(Component, bool)> {
    let path = dir.map(|dir| dir.join(format!("{hash}.cwasm")));
    if let Some(path) = path.as_deref().filter(|p| p.exists()) {
        // Safety: the files in the cache folder are written by this function from code that
        // wasmtime compiled; wasmtime checks that they match this engine's version and settings.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(c) => return Ok((c, true)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "stale compiled-code cache entry; recompiling")
            }
        }
    }
    let code = Engine::new(compiler)?.precompile_component(wasm)?;
    if let (Some(dir), Some(path)) = (dir, &path)
        && let Err(e) = store(&code, dir, path)
    {
        tracing::warn!(error = %format!("{e:#}"), "cannot write the compiled-code cache");
    }
    // Safety: `code` is what wasmtime compiled just above, with settings that match `engine`'s
    // (wasmtime checks them).
    let component = unsafe { Component::deserialize(engine, &code)? };
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

fn store(code: &[u8], dir: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, code)?;
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
