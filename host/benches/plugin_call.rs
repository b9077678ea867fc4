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
    // A greeting, which menu-bot answers with a typed send (a list).
    let mut greeting = n.clone();
    greeting.text = Some("hi".into());
    greeting.window_open = true;
    let plugins = [
        (
            "trivial",
            target().join("test-plugins/misbehave.wasm"),
            "[config]\nmode = \"noop\"\n".to_string(),
            &n,
        ),
        (
            "trivial (contract 0.2.0)",
            target().join("test-plugins/misbehave-v2.wasm"),
            "[config]\nmode = \"noop\"\n".to_string(),
            &n,
        ),
        (
            "typed send (menu-bot, a list)",
            target().join("plugins/menu-bot.wasm"),
            std::fs::read_to_string(target().join("plugins/menu-bot.toml")).unwrap(),
            &greeting,
        ),
        (
            "keyword-router",
            target().join("plugins/keyword-router.wasm"),
            std::fs::read_to_string(target().join("plugins/keyword-router.toml")).unwrap(),
            &n,
        ),
    ];
    for (name, path, manifest, n) in plugins {
        let wasm = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (build the plugins first)", path.display()));
        let plugin = runtime
            .load(name, &wasm, Manifest::parse(&manifest).unwrap())
            .unwrap();
        let mut overlay = KvOverlay::default();
        let actions = plugin.call(n, &[], &mut overlay).unwrap();
        if name.starts_with("typed send") {
            assert!(
                matches!(actions.as_slice(), [switchboard_sdk::Action::Send(_)]),
                "{actions:?}"
            );
        }
        c.bench_function(&format!("plugin call: {name}"), |b| {
            b.iter(|| plugin.call(n, &[], &mut overlay).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
