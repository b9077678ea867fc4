//! The plugins: loading WebAssembly components from the plugins folder, running them with
//! limits, and reloading them when the folder changes.

mod cache;
pub mod install;
pub mod kv;
pub mod manifest;
mod output;
pub mod quarantine;
mod registry;
mod runtime;
mod timer;
mod version;
mod watcher;

pub use manifest::Manifest;
pub use registry::{Registry, Snapshot};
pub use runtime::{CallError, LoadedPlugin, Runtime, Stats};
pub use watcher::watch;
