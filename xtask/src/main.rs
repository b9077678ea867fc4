//! `cargo xtask run` and `cargo xtask test`: the two commands of the README.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const PLUGINS: &[&str] = &[
    "auto-reply",
    "keyword-router",
    "menu-bot",
    "status-forwarder",
];
const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    match args.first().map(String::as_str) {
        Some("run") => run(&root, &args[1..]),
        Some("test") => test(&root, &args[1..]),
        Some("build-plugins") => {
            build_plugins(&root).map(|dir| println!("plugins in {}", dir.display()))
        }
        Some("build-test-plugins") => build_test_plugins(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 run             build the example plugins and serve them with a sample config\n\
                 test [ARGS]     build the example plugins and run every test (ARGS go to cargo test)\n\
                 build-plugins   build the example plugins into target/plugins/\n\
                 build-test-plugins  build the tests' plugins into target/test-plugins/"
            );
            bail!("unknown or missing command")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Cargo's build folder: `CARGO_TARGET_DIR`, or `target/` of the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Install the wasm32-wasip2 target with rustup when it is missing.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the wasm32-wasip2 target")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    status(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// Build the example plugins for wasm32-wasip2 and gather each `.wasm` with its manifest in
/// `target/plugins/`.
fn build_plugins(root: &Path) -> anyhow::Result<PathBuf> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--profile", "plugin", "--target", WASM_TARGET]);
    for p in PLUGINS {
        cmd.args(["-p", p]);
    }
    status(&mut cmd)?;
    let out = target_dir(root).join("plugins");
    std::fs::create_dir_all(&out)?;
    for p in PLUGINS {
        let wasm =
            target_dir(root).join(format!("{WASM_TARGET}/plugin/{}.wasm", p.replace('-', "_")));
        copy_atomically(&wasm, &out.join(format!("{p}.wasm")))?;
        copy_atomically(
            &root.join(format!("example-plugins/{p}/{p}.toml")),
            &out.join(format!("{p}.toml")),
        )?;
    }
    Ok(out)
}

/// Copy under a temporary name, then rename, so a running server never sees half a file.
fn copy_atomically(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("partial");
    std::fs::copy(from, &tmp).with_context(|| format!("cannot copy {}", from.display()))?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}

const SAMPLE_CONFIG: &str = r#"# Sample configuration written by `cargo xtask run`. Edit it: it is not overwritten.
# The Coreapp and the destinations below are played by `switchboard sandbox` on 127.0.0.1:9090,
# which `cargo xtask run` starts beside the server: what they receive is logged and listed at
# http://127.0.0.1:9090/sandbox/requests. Point them at your own to go live.
[server]
listen = "127.0.0.1:8080"
webhook_path = "/webhook"

[whatsapp]
base_url = "http://127.0.0.1:9090"
username = "admin"
password_env = "SWITCHBOARD_WA_PASSWORD"

[plugins]
dir = "../plugins"

[storage]
url = "sqlite://data/switchboard.db"

[destinations.sales]
url = "http://127.0.0.1:9090/destinations/sales"

[destinations.support]
url = "http://127.0.0.1:9090/destinations/support"

[destinations.crm]
url = "http://127.0.0.1:9090/destinations/crm"

# The operator console at http://127.0.0.1:8080/admin/ (`cargo xtask run` sets the token to
# "demo" unless SWITCHBOARD_ADMIN_TOKEN is set).
[admin]
token_env = "SWITCHBOARD_ADMIN_TOKEN"
"#;

fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    build_plugins(root)?;
    status(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "switchboard"]),
    )?;
    let dir = target_dir(root).join("run");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("switchboard.toml");
    if !config.exists() {
        std::fs::write(&config, SAMPLE_CONFIG)?;
    }
    eprintln!(
        "xtask: serving with {} (plugins in target/plugins/)\n\
         xtask: try: curl -s -XPOST localhost:8080/webhook -H 'content-type: application/json' \
         --data @tests/fixtures/onprem/e1-text.json",
        config.display()
    );
    let binary = target_dir(root).join("release/switchboard");
    // The sandbox plays the Coreapp and the destinations of the sample config; it ends with
    // the server (Ctrl-C reaches both, and it is killed if it is still there).
    let mut sandbox = Command::new(&binary)
        .args(["sandbox", "--listen", "127.0.0.1:9090"])
        .spawn()
        .context("cannot start `switchboard sandbox`")?;
    let mut cmd = Command::new(&binary);
    cmd.arg("serve").arg("--config").arg(&config).args(args);
    if std::env::var_os("SWITCHBOARD_WA_PASSWORD").is_none() {
        cmd.env("SWITCHBOARD_WA_PASSWORD", "change-me");
    }
    if std::env::var_os("SWITCHBOARD_ADMIN_TOKEN").is_none() {
        cmd.env("SWITCHBOARD_ADMIN_TOKEN", "demo");
        eprintln!("xtask: the console: http://127.0.0.1:8080/admin/#token=demo");
    }
    let served = status(&mut cmd);
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    served
}

/// Build the plugins only the tests use into `target/test-plugins/`: `misbehave.wasm`, and a
/// second build of it, `misbehave-b.wasm`, that reports another build id, both for contract
/// 0.1.0; and `misbehave-v2.wasm`, for 0.2.0.
fn build_test_plugins(root: &Path) -> anyhow::Result<()> {
    let out = target_dir(root).join("test-plugins");
    std::fs::create_dir_all(&out)?;
    for (build, name) in [
        ("a", "misbehave.wasm"),
        ("b", "misbehave-b.wasm"),
        ("v2", "misbehave-v2.wasm"),
    ] {
        let mut cmd = cargo();
        cmd.current_dir(root)
            .args([
                "build",
                "--profile",
                "plugin",
                "--target",
                WASM_TARGET,
                "-p",
                "misbehave",
            ])
            .env("MISBEHAVE_BUILD", build);
        if build != "v2" {
            cmd.args(["--features", "contract-0-1"]);
        }
        status(&mut cmd)?;
        copy_atomically(
            &target_dir(root).join(format!("{WASM_TARGET}/plugin/misbehave.wasm")),
            &out.join(name),
        )?;
    }
    Ok(())
}

fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    build_plugins(root)?;
    build_test_plugins(root)?;
    // The end-to-end tests run the server binary: build it first, in the same profile.
    status(
        cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "switchboard"]),
    )?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["test", "--release", "--workspace", "--exclude", "xtask"])
        .args(args);
    status(&mut cmd)
}
