//! This host's membership of the cluster: it renews its leases on a heartbeat and tells
//! dispatch and delivery which partitions they may act on. A host that cannot renew stops
//! acting before its leases run out, so that the host taking over never works beside it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::{HostInfo, Owned, Store};

/// The partitions held, as dispatch and delivery read them.
#[derive(Debug, Clone)]
pub struct Held {
    /// Bumped at every change of the partitions or their fences.
    pub generation: u64,
    pub owned: Arc<[Owned]>,
}

/// Heartbeats and the partitions they hold.
pub struct Membership {
    host: HostInfo,
    shared: bool,
    state: Mutex<State>,
    /// Called when the partitions held change (dispatch and delivery look again).
    wakers: Mutex<Vec<Arc<dyn Fn() + Send + Sync>>>,
}

struct State {
    held: Held,
    /// After this, the leases may have been taken over: act on nothing.
    valid_until: Option<Instant>,
}

/// The part of a lease's time kept in reserve: a host stops acting this long before its lease
/// could run out, so that the batch or attempt in progress ends before anyone takes over.
const RESERVE: f64 = 0.25;

impl Membership {
    pub fn new(host: HostInfo, store: &Store) -> Arc<Membership> {
        Arc::new(Membership {
            host,
            shared: store.shared(),
            state: Mutex::new(State {
                held: Held {
                    generation: 0,
                    owned: Arc::from(Vec::new()),
                },
                valid_until: None,
            }),
            wakers: Mutex::new(Vec::new()),
        })
    }

    pub fn host(&self) -> &HostInfo {
        &self.host
    }

    /// Call `wake` whenever the partitions held change.
    pub fn on_change(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(wake);
    }

    /// The partitions this host may act on now: none once its last renewal is too old.
    pub fn held(&self) -> Held {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = state.valid_until
            && Instant::now() >= until
            && !state.held.owned.is_empty()
        {
            tracing::warn!(
                host = %self.host.id,
                "the leases could not be renewed in time: stopping work on every partition until they are"
            );
            state.held = Held {
                generation: state.held.generation + 1,
                owned: Arc::from(Vec::new()),
            };
        }
        state.held.clone()
    }

    /// Renew once: what the heartbeat loop does at every beat.
    pub async fn beat(&self, store: &Store) -> anyhow::Result<()> {
        let sent = Instant::now();
        let mut owned = store.heartbeat(&self.host).await?;
        owned.sort_by_key(|o| o.partition);
        let changed = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            // The database counts the lease from after `sent`: counted from `sent`, this
            // host's view ends first.
            state.valid_until = self
                .shared
                .then(|| sent + self.host.ttl.mul_f64(1.0 - RESERVE));
            let changed = *state.held.owned != *owned;
            if changed {
                let (before, after) = (state.held.owned.len(), owned.len());
                tracing::info!(host = %self.host.id, before, after, partitions = ?owned.iter().map(|o| o.partition).collect::<Vec<_>>(), "partitions held changed");
                state.held = Held {
                    generation: state.held.generation + 1,
                    owned: Arc::from(owned),
                };
            }
            changed
        };
        if changed {
            self.wake();
        }
        Ok(())
    }

    fn wake(&self) {
        let wakers = self
            .wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for w in wakers {
            w();
        }
    }

    /// Beat every third of the lease time until the process ends; a failed beat is logged and
    /// tried again sooner.
    pub async fn run(self: Arc<Self>, store: Store) {
        let every = (self.host.ttl / 3).max(Duration::from_millis(50));
        loop {
            let wait = match self.beat(&store).await {
                Ok(()) => every,
                Err(e) => {
                    tracing::warn!(host = %self.host.id, error = %format!("{e:#}"), "cannot renew the leases");
                    // Dispatch and delivery may have to stop: let them look.
                    self.wake();
                    every / 3
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// This host's id: configured, or the host name and the process id.
pub fn default_host_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    format!("{name}-{}", std::process::id())
}
