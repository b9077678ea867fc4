//! `switchboard plugins install` and `plugins list`: a plugin's `.wasm` and `.toml` go into the
//! plugins folder as a pair, checked first, and the folder can be read the way the server reads it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{Manifest, Runtime, cache};
use crate::config::Config;
use crate::store;

#[derive(Subcommand)]
pub enum PluginsCommand {
    /// Check a plugin and its manifest, then put both into the plugins folder at once; a
    /// running server loads the pair within a second.
    Install {
        /// The plugin's `.wasm` file.
        wasm: PathBuf,
        /// Its manifest (default: the `.toml` beside the `.wasm`).
        manifest: Option<PathBuf>,
        #[command(flatten)]
        folder: Folder,
        /// The plugin's name in the folder, which sets its place in the chain (default: the
        /// `.wasm` file's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the plugins of the folder, with what is wrong with any of them.
    List {
        #[command(flatten)]
        folder: Folder,
    },
}

/// Which plugins folder: the one of a configuration file, or a folder named directly.
#[derive(Args)]
pub struct Folder {
    /// The server's configuration file, whose `[plugins] dir` is used.
    #[arg(long, short, default_value = "switchboard.toml")]
    config: PathBuf,
    /// The plugins folder itself.
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl Folder {
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(Config::load(&self.config)
                .context("name the plugins folder with --dir, or the server's configuration with --config")?
                .plugins
                .dir),
        }
    }
}

impl PluginsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            PluginsCommand::Install {
                wasm,
                manifest,
                folder,
                name,
            } => install(&wasm, manifest.as_deref(), &folder.resolve()?, name).await,
            PluginsCommand::List { folder } => list(&folder.resolve()?),
        }
    }
}

async fn install(
    wasm_path: &Path,
    manifest_path: Option<&Path>,
    dir: &Path,
    name: Option<String>,
) -> anyhow::Result<()> {
    let name = match name {
        Some(n) => n,
        None => wasm_path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("cannot take a plugin name from the file name: pass --name")?
            .to_string(),
    };
    check_name(&name)?;
    let manifest_path = match manifest_path {
        Some(p) => p.to_path_buf(),
        None => {
            let beside = wasm_path.with_extension("toml");
            if !beside.exists() {
                bail!(
                    "no manifest: give the plugin's .toml after the .wasm ({} does not exist); \
                     an empty file grants nothing",
                    beside.display()
                );
            }
            beside
        }
    };
    // Both files are read once: what is checked is what is installed.
    let wasm =
        std::fs::read(wasm_path).with_context(|| format!("cannot read {}", wasm_path.display()))?;
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest = Manifest::parse(&manifest_text).with_context(|| {
        format!(
            "invalid manifest {}; nothing was installed",
            manifest_path.display()
        )
    })?;

    // Load it as the server would (compile, link, `init` with its config), in a scratch store,
    // on a blocking thread: a plugin's blocking WASI calls must not run on an async one.
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let db = store::open(&scratch.path().join("scratch.db"))?;
    let runtime = Runtime::new(db.clone(), None)?;
    let (loaded, wasm) = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || (runtime.load(&name, &wasm, manifest), wasm))
            .await
            .context("the plugin's check stopped")?
    };
    db.close().await;
    let loaded = loaded.with_context(|| {
        format!(
            "{} does not load; nothing was installed",
            wasm_path.display()
        )
    })?;

    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the plugins folder {}", dir.display()))?;
    let replaced = dir.join(format!("{name}.wasm")).exists();
    write_pair(dir, &name, &wasm, manifest_text.as_bytes())
        .with_context(|| format!("cannot install into {}", dir.display()))?;
    println!(
        "{} {name} (version {}, plugin API {}): {} and {} in {}; a running server loads them \
         within a second (see its /plugins)",
        if replaced { "replaced" } else { "installed" },
        loaded.version(),
        loaded.api_version.as_deref().unwrap_or("unstamped"),
        format_args!("{name}.wasm"),
        format_args!("{name}.toml"),
        dir.display()
    );
    Ok(())
}

/// A name the server reads back as this plugin: `NAME.wasm` and `NAME.toml`, not hidden.
fn check_name(name: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(allowed) {
        bail!(
            "plugin name {name:?}: use letters, digits, '-', '_' and '.', not first; \
             pass another with --name"
        );
    }
    Ok(())
}

/// Write both files under hidden names (which the server ignores), sync them, then rename the
/// manifest and then the `.wasm` into place. The server waits for the folder to be quiet and
/// reads both files at load time, so the two renames, microseconds apart, load as one pair;
/// and a new plugin's `.wasm` never appears before its manifest.
fn write_pair(dir: &Path, name: &str, wasm: &[u8], manifest: &[u8]) -> anyhow::Result<()> {
    let stage = |ext: &str, bytes: &[u8]| -> anyhow::Result<tempfile::NamedTempFile> {
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(&format!(".{ext}.partial"))
            .tempfile_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        Ok(file)
    };
    let staged_manifest = stage("toml", manifest)?;
    let staged_wasm = stage("wasm", wasm)?;
    staged_manifest.persist(dir.join(format!("{name}.toml")))?;
    staged_wasm.persist(dir.join(format!("{name}.wasm")))?;
    // The renames themselves reach the disk with the folder.
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn list(dir: &Path) -> anyhow::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the plugins folder {}", dir.display()))?
        .filter_map(|e| super::registry::plugin_name(&e.ok()?.path()))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        println!("no plugins in {}", dir.display());
    }
    for name in names {
        let version = match std::fs::read(dir.join(format!("{name}.wasm"))) {
            Ok(bytes) => Ok(cache::hash(&bytes)[..12].to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no .wasm".to_string()),
            Err(e) => Err(format!("cannot read the .wasm: {e}")),
        };
        let manifest = match std::fs::read_to_string(dir.join(format!("{name}.toml"))) {
            Ok(text) => Manifest::parse(&text)
                .map(drop)
                .map_err(|e| format!("invalid manifest: {}", e.to_string().replace('\n', " "))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no manifest".to_string()),
            Err(e) => Err(format!("cannot read the manifest: {e}")),
        };
        match (version, manifest) {
            (Ok(v), Ok(())) => println!("{name}\t{v}\tcomplete"),
            (v, m) => {
                let problems: Vec<String> =
                    [v.clone().err(), m.err()].into_iter().flatten().collect();
                println!(
                    "{name}\t{}\tnot loaded: {}",
                    v.as_deref().unwrap_or("-"),
                    problems.join("; ")
                )
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_not_read_back_are_refused() {
        for good in ["greeter", "10-order_bot", "a.b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "../x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pair_is_written_whole_with_no_staging_left() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), "old").unwrap();
        write_pair(dir.path(), "p", b"\0asm new", b"[config]\n").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("p.wasm")).unwrap(),
            b"\0asm new"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("p.toml")).unwrap(),
            "[config]\n"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
