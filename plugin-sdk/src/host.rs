//! What the host offers a plugin: logging, a key-value store, the clock. Inside the server these
//! are calls into the host; in native tests they go to the fake host of [`crate::testing`].

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::switchboard::plugin::host as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake_host as imp;

/// Logging into the host's log, attributed to the plugin.
pub mod log {
    use super::imp;

    #[cfg(not(target_arch = "wasm32"))]
    use crate::testing::Level;
    #[cfg(target_arch = "wasm32")]
    use imp::Level;

    /// Log at debug level.
    pub fn debug(message: &str) {
        imp::log(Level::Debug, message)
    }

    /// Log at info level.
    pub fn info(message: &str) {
        imp::log(Level::Info, message)
    }

    /// Log at warn level.
    pub fn warn(message: &str) {
        imp::log(Level::Warn, message)
    }

    /// Log at error level.
    pub fn error(message: &str) {
        imp::log(Level::Error, message)
    }
}

/// The plugin's own persistent key-value store. Keys of one plugin are invisible to the others.
///
/// A customer's notifications are handled one at a time, in order, so keys named after the
/// customer (`format!("seen/{}", n.sender)`) always read the customer's last write. Different
/// customers are handled at once (by several threads, or hosts): a key they share reads the last
/// committed write, and the last write wins.
pub mod kv {
    use super::imp;
    use std::time::Duration;

    /// The value of `key`, if set and not expired.
    pub fn get(key: &str) -> Option<Vec<u8>> {
        imp::kv_get(key)
    }

    /// Set `key`; with a `ttl`, the key expires after it. A write the host refuses (over a
    /// limit) is logged as a warning and lost: use [`try_set`] to act on it. (Under contract
    /// 0.1.0 a refused write ends the call instead.)
    pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) {
        if let Err(e) = try_set(key, value, ttl) {
            super::log::warn(&format!("key-value write of {key:?} refused: {e}"));
        }
    }

    /// Set `key` like [`set`], and say why when the host refuses the write (a value or store
    /// over its limits, storage unavailable).
    pub fn try_set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), String> {
        let ttl = ttl.map(|d| d.as_secs().max(1));
        #[cfg(all(target_arch = "wasm32", feature = "contract-0-1"))]
        {
            imp::kv_set(key, value, ttl);
            Ok(())
        }
        #[cfg(not(all(target_arch = "wasm32", feature = "contract-0-1")))]
        {
            imp::kv_set(key, value, ttl)
        }
    }

    /// Remove `key`.
    pub fn delete(key: &str) {
        imp::kv_delete(key)
    }

    /// The value of `key` as UTF-8 text.
    pub fn get_string(key: &str) -> Option<String> {
        get(key).and_then(|v| String::from_utf8(v).ok())
    }
}

/// Wall-clock time as the host sees it (fixed and settable in tests).
pub mod clock {
    use super::imp;

    /// Unix time in milliseconds.
    pub fn now_millis() -> u64 {
        imp::now_millis()
    }

    /// Unix time in seconds.
    pub fn now_secs() -> u64 {
        now_millis() / 1000
    }
}
