//! The plugin contract version a component was built against, read before it is linked.

use anyhow::bail;

/// Contract versions this host can run.
pub const SUPPORTED: &[&str] = &["0.1.0", switchboard_sdk::API_VERSION];

const SECTION: &str = "switchboard:api-version";

/// The version stamped by `switchboard-sdk` into the component, if any.
pub fn stamped(wasm: &[u8]) -> anyhow::Result<Option<String>> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        if let wasmparser::Payload::CustomSection(section) = payload?
            && section.name() == SECTION
        {
            return Ok(Some(String::from_utf8_lossy(section.data()).into_owned()));
        }
    }
    Ok(None)
}

/// Fail with a clear message when the component was built for a contract this host lacks.
pub fn check(wasm: &[u8]) -> anyhow::Result<Option<String>> {
    if !wasm.starts_with(b"\0asm") {
        bail!("not a WebAssembly file (it does not start with \\0asm)");
    }
    let version = stamped(wasm)?;
    if let Some(v) = &version
        && !SUPPORTED.contains(&v.as_str())
    {
        bail!(
            "built for plugin API {v}, but this host supports {}: rebuild the plugin with a \
                 switchboard-sdk of a supported version, or run a host that supports {v}",
            SUPPORTED.join(", ")
        );
    }
    Ok(version)
}
