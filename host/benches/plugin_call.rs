//! The cost of one plugin call, notification in, actions out, as the dispatcher pays it (warm
//! instance, limits armed). Needs the plugins built: `cargo xtask test` (or `cargo xtask
//! build-plugins` and the test plugins) first, then `cargo bench -p switchboard --bench plugin_call`.

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::plugins::kv::KvOverlay;
use switchboard::plugins::{Manifest, Runtime};
use switchboard::store;
use switchboard_sdk::split::split_onprem;

fn target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&dir.path().join("bench.db")).unwrap();
    let runtime = Runtime::new(store, None).unwrap();
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onprem/e1-text.json"),
    )
    .unwrap();
    let n = split_onprem(&body, "bench").unwrap().remove(0);
    let plugins = [
        (
            "trivial",
            target().join("test-plugins/misbehave.wasm"),
            "[config]\nmode = \"noop\"\n".to_string(),
        ),
        (
            "keyword-router",
            target().join("plugins/keyword-router.wasm"),
            std::fs::read_to_string(target().join("plugins/keyword-router.toml")).unwrap(),
        ),
    ];
    for (name, path, manifest) in plugins {
        let wasm = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (build the plugins first)", path.display()));
        let plugin = runtime
            .load(name, &wasm, Manifest::parse(&manifest).unwrap())
            .unwrap();
        let mut overlay = KvOverlay::default();
        c.bench_function(&format!("plugin call: {name}"), |b| {
            b.iter(|| plugin.call(&n, &[], &mut overlay).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
