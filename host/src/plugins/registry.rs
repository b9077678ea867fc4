//! The set of plugins serving traffic, swapped atomically when the folder changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use arc_swap::ArcSwap;

use super::manifest::Manifest;
use super::runtime::{LoadedPlugin, Runtime};
use crate::metrics::{Series, Value};

/// The plugins in the order they run (lexical order of their file names).
#[derive(Default)]
pub struct Snapshot {
    /// Loaded plugins, sorted by name.
    pub plugins: Vec<Arc<LoadedPlugin>>,
}

impl Snapshot {
    /// Each plugin's quarantine and budget counters, for `/metrics`.
    pub fn render_metrics(&self) -> Vec<Series> {
        use std::sync::atomic::Ordering;
        type Family = (Series, fn(&LoadedPlugin) -> u64);
        let families: [Family; 3] = [
            (
                Series::gauge(
                    "plugin_quarantined",
                    "Whether the plugin's serving version is quarantined for failing again and again",
                ),
                |p| p.quarantined() as u64,
            ),
            (
                Series::counter(
                    "plugin_calls_skipped_by_plugin",
                    "Calls of the serving version skipped while it was quarantined",
                ),
                |p| p.stats.skipped.load(Ordering::Relaxed),
            ),
            (
                Series::counter(
                    "plugin_log_lines_dropped",
                    "Log lines of the serving version dropped over its calls' log budget",
                ),
                |p| p.stats.log_lines_dropped.load(Ordering::Relaxed),
            ),
        ];
        families
            .into_iter()
            .map(|(mut series, value)| {
                for p in &self.plugins {
                    series =
                        series.value(vec![("plugin", p.name.to_string())], Value::Int(value(p)));
                }
                series
            })
            .collect()
    }
}

/// The plugins folder and what is loaded from it.
pub struct Registry {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    current: ArcSwap<Snapshot>,
    /// The last load error of each plugin whose newest version failed to load.
    errors: Mutex<BTreeMap<String, String>>,
    /// The configured destinations, when known: a manifest granting others is reported.
    destinations: OnceLock<BTreeSet<String>>,
    /// What is wrong with the manifest of a plugin serving (it still serves).
    warnings: Mutex<BTreeMap<String, String>>,
}

impl Registry {
    /// A registry for `dir`, with nothing loaded yet.
    pub fn new(runtime: Arc<Runtime>, dir: &Path) -> Arc<Registry> {
        Arc::new(Registry {
            runtime,
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(Snapshot::default()),
            errors: Mutex::new(BTreeMap::new()),
            destinations: OnceLock::new(),
            warnings: Mutex::new(BTreeMap::new()),
        })
    }

    /// The destinations of the configuration, before the first load: a plugin whose manifest
    /// grants a destination not among them is reported (at load and at `/plugins`).
    pub fn set_destinations(&self, names: impl IntoIterator<Item = String>) {
        let _ = self.destinations.set(names.into_iter().collect());
    }

    /// Plugins serving whose manifest has something wrong, with what.
    pub fn warnings(&self) -> BTreeMap<String, String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The folder watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// End the plugin calls in progress and refuse new ones (at shutdown).
    pub fn interrupt(&self) {
        self.runtime.interrupt();
    }

    /// Whether [`Registry::interrupt`] was called.
    pub fn interrupted(&self) -> bool {
        self.runtime.interrupted()
    }

    /// The plugins serving now. Calls keep the snapshot they started with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Plugins whose newest version failed to load, with the reason.
    pub fn errors(&self) -> BTreeMap<String, String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Load every `*.wasm` of the folder. Must not be called from async code (plugins run
    /// their `init`).
    pub fn load_all(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create the plugins folder {}", self.dir.display()))?;
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read the plugins folder {}", self.dir.display()))?
            .filter_map(|e| plugin_name(&e.ok()?.path()))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            self.load_pair(&name);
        }
        self.prune_compiled();
        Ok(())
    }

    /// Bring plugin `name` in line with the folder: load a new or changed version, unload one
    /// whose `.wasm` is gone. A version that fails to load leaves the previous one serving.
    pub fn reload(&self, name: &str) {
        self.load_pair(name);
        self.prune_compiled();
    }

    /// Keep only the compiled code of the versions serving, so `compiled/` stays bounded.
    fn prune_compiled(&self) {
        let snapshot = self.snapshot();
        let keep: Vec<&str> = snapshot.plugins.iter().map(|p| p.hash.as_str()).collect();
        let removed = self.runtime.prune_cache(&keep);
        if removed > 0 {
            tracing::debug!(
                removed,
                "compiled code of versions no longer loaded removed"
            );
        }
    }

    /// Load `NAME.wasm` with `NAME.toml`, both read now: a plugin loads only with a manifest
    /// that parses (an empty file grants nothing), so a `.wasm` copied before its manifest, or
    /// beside a half-written one, never runs with permissions it was not meant to have.
    fn load_pair(&self, name: &str) {
        let wasm_path = self.dir.join(format!("{name}.wasm"));
        let bytes = match std::fs::read(&wasm_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.remove(name) {
                    tracing::info!(plugin = name, "plugin unloaded: its .wasm file was removed");
                }
                if let Ok(mut warnings) = self.warnings.lock() {
                    warnings.remove(name);
                }
                self.set_error(name, None);
                return;
            }
            Err(e) => {
                self.fail(
                    name,
                    anyhow::Error::new(e).context(format!("cannot read {}", wasm_path.display())),
                );
                return;
            }
        };
        let manifest_path = self.dir.join(format!("{name}.toml"));
        let manifest = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => match Manifest::parse(&text) {
                Ok(m) => m,
                Err(e) => {
                    let e = e.context(format!(
                        "invalid manifest {}: fix it and the plugin loads",
                        manifest_path.display()
                    ));
                    return self.fail(name, e);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let e = anyhow::anyhow!(
                    "{} has no manifest: put {name}.toml beside it (an empty file grants \
                     nothing), or install both with `switchboard plugins install`",
                    wasm_path.display()
                );
                return self.fail(name, e);
            }
            Err(e) => {
                let e = anyhow::Error::new(e)
                    .context(format!("cannot read {}", manifest_path.display()));
                return self.fail(name, e);
            }
        };
        let hash = super::cache::hash(&bytes);
        let unchanged = self
            .snapshot()
            .plugins
            .iter()
            .any(|p| &*p.name == name && p.hash == hash && p.manifest == manifest);
        if unchanged {
            // A manifest put back as it was: the version serving is right again.
            self.set_error(name, None);
            return;
        }
        let started = std::time::Instant::now();
        let warning = self.destinations.get().and_then(|known| {
            let unknown = unknown_destinations(&manifest, known);
            (!unknown.is_empty()).then(|| {
                format!(
                    "[permissions] destinations names {} with no [destinations.NAME] in the configuration: forwards there are refused",
                    unknown.join(", ")
                )
            })
        });
        match self.runtime.load(name, &bytes, manifest) {
            Ok(plugin) => {
                if let Some(w) = &warning {
                    tracing::warn!(plugin = name, "{w}");
                }
                if let Ok(mut warnings) = self.warnings.lock() {
                    match warning {
                        Some(w) => warnings.insert(name.to_string(), w),
                        None => warnings.remove(name),
                    };
                }
                let version = plugin.version().to_string();
                let cached = plugin.from_cache;
                let replaced = self.insert(plugin);
                self.set_error(name, None);
                tracing::info!(
                    plugin = name,
                    version,
                    cached,
                    ms = started.elapsed().as_millis() as u64,
                    "plugin {}",
                    if replaced { "reloaded" } else { "loaded" }
                );
            }
            Err(e) => self.fail(name, e),
        }
    }

    fn fail(&self, name: &str, error: anyhow::Error) {
        let serving = self
            .snapshot()
            .plugins
            .iter()
            .find(|p| &*p.name == name)
            .map(|p| p.version().to_string());
        let reason = format!("{error:#}");
        match serving {
            Some(v) => {
                tracing::error!(plugin = name, error = %reason, "plugin failed to load; version {v} keeps serving")
            }
            None => tracing::error!(plugin = name, error = %reason, "plugin failed to load"),
        }
        self.set_error(name, Some(reason));
    }

    fn set_error(&self, name: &str, error: Option<String>) {
        if let Ok(mut errors) = self.errors.lock() {
            match error {
                Some(e) => errors.insert(name.to_string(), e),
                None => errors.remove(name),
            };
        }
    }

    fn insert(&self, plugin: Arc<LoadedPlugin>) -> bool {
        let mut replaced = false;
        self.current.rcu(|snap| {
            let mut plugins: Vec<_> = snap
                .plugins
                .iter()
                .filter(|p| p.name != plugin.name)
                .cloned()
                .collect();
            replaced = plugins.len() != snap.plugins.len();
            plugins.push(plugin.clone());
            plugins.sort_by(|a, b| a.name.cmp(&b.name));
            Snapshot { plugins }
        });
        replaced
    }

    fn remove(&self, name: &str) -> bool {
        let mut removed = false;
        self.current.rcu(|snap| {
            let plugins: Vec<_> = snap
                .plugins
                .iter()
                .filter(|p| &*p.name != name)
                .cloned()
                .collect();
            removed = plugins.len() != snap.plugins.len();
            Snapshot { plugins }
        });
        removed
    }
}

/// The destinations a manifest grants that are not in `known` (`"*"` is not a name).
fn unknown_destinations(manifest: &Manifest, known: &BTreeSet<String>) -> Vec<String> {
    manifest
        .permissions
        .destinations
        .iter()
        .filter(|d| *d != "*" && !known.contains(*d))
        .map(|d| format!("{d:?}"))
        .collect()
}

/// The plugin a file of the folder belongs to: `NAME` for `NAME.wasm` and `NAME.toml`. Hidden
/// and temporary files belong to none.
pub fn plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') {
        return None;
    }
    let (name, ext) = file.rsplit_once('.')?;
    matches!(ext, "wasm" | "toml")
        .then(|| name.to_string())
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_a_manifest_grants_without_configuration_are_named() {
        let manifest: Manifest =
            toml::from_str("[permissions]\ndestinations = [\"crm\", \"*\", \"typo\"]\n").unwrap();
        let known: BTreeSet<String> = ["crm".to_string()].into();
        assert_eq!(unknown_destinations(&manifest, &known), ["\"typo\""]);
        assert!(unknown_destinations(&Manifest::default(), &known).is_empty());
    }
}
