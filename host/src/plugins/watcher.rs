//! Hot reload: watch the plugins folder and reload the plugins whose files changed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use super::registry::{Registry, plugin_name};

/// Quiet time after the last event before a plugin is reloaded: a file still being written
/// keeps producing events, so it is not read half-way.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watch the registry's folder on a thread of its own, which does all loading and unloading.
/// The returned watcher must be kept alive.
pub fn watch(registry: Arc<Registry>) -> anyhow::Result<notify::RecommendedWatcher> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .context("cannot start the plugins folder watcher")?;
    watcher
        .watch(registry.dir(), RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", registry.dir().display()))?;
    std::thread::Builder::new()
        .name("plugin-watcher".into())
        .spawn(move || {
            let mut changed = BTreeSet::new();
            loop {
                match rx.recv_timeout(DEBOUNCE) {
                    Ok(path) => {
                        if let Some(name) = plugin_name(&path) {
                            changed.insert(name);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        for name in std::mem::take(&mut changed) {
                            registry.reload(&name);
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok(watcher)
}
