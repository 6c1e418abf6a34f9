//! CancelRequest mapping. Clients get the proxy's own BackendKeyData; a cancel arriving with
//! those keys is forwarded to the upstream with the upstream's keys for that session. Unknown
//! keys are ignored silently, as Postgres does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Keys identifying a session: (process id, secret key).
pub type BackendKey = (i32, i32);

#[derive(Debug, Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<BackendKey, BackendKey>>,
}

impl CancelRegistry {
    /// Register a session: returns fresh proxy keys, unregistered when the guard drops.
    pub fn register(self: &Arc<Self>, upstream: BackendKey) -> CancelGuard {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = loop {
            // Positive process ids, as clients and tools expect.
            let candidate = (rand::random::<i32>() & i32::MAX, rand::random::<i32>());
            if candidate.0 != 0 && !sessions.contains_key(&candidate) {
                break candidate;
            }
        };
        sessions.insert(key, upstream);
        CancelGuard {
            registry: Arc::clone(self),
            key,
        }
    }

    /// The upstream keys for a client's cancel request, if the keys are known.
    pub fn upstream_key(&self, proxy_key: BackendKey) -> Option<BackendKey> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&proxy_key)
            .copied()
    }

    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    pub key: BackendKey,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_proxy_keys_to_upstream_keys_until_dropped() {
        let registry = Arc::new(CancelRegistry::default());
        let guard = registry.register((4242, 99));
        assert!(guard.key.0 > 0);
        assert_eq!(registry.upstream_key(guard.key), Some((4242, 99)));
        assert_eq!(
            registry.upstream_key((guard.key.0, guard.key.1.wrapping_add(1))),
            None
        );
        drop(guard);
        assert!(registry.is_empty());
    }
}
