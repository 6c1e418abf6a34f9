//! The relay: listener, sessions, upstream connections, TLS and cancel mapping.
//!
//! `server::run` accepts connections and spawns one `session::run` task each; a session
//! authenticates its client as a service, opens an upstream session as that service's role,
//! and relays, passing every SQL-bearing message through the [`Interceptor`].

pub mod auth_limit;
pub mod cancel;
pub mod params;
pub mod server;
pub mod session;
pub mod stream;
pub mod tls;
pub mod upstream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsConnector;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::intercept::Interceptor;
use crate::policy::CompiledPolicy;

/// Everything sessions share. Built once at start; the policy is swapped atomically on reload.
pub struct ProxyState {
    pub config: Config,
    /// Services and their credentials are looked up here at authentication.
    pub policy: Arc<ArcSwap<CompiledPolicy>>,
    pub interceptor: Arc<dyn Interceptor>,
    pub cancels: Arc<cancel::CancelRegistry>,
    pub client_tls: Option<tls::ClientTls>,
    pub upstream_tls: Option<TlsConnector>,
    /// Secret for the fake verifiers of unknown services: derived from the services'
    /// verifiers at start, so fake salts stay the same across restarts like real ones.
    pub dummy_secret: [u8; 32],
    /// The audit log, for connection events and messages refused before any decision
    /// (statement decisions reach it through the interceptor).
    pub audit: Option<Arc<AuditLog>>,
    /// Failed authentications per client address (`limits.auth_failures_per_minute`).
    pub auth_failures: auth_limit::AuthFailureLimiter,
    /// Connection, latency and upstream-error metrics (replace before sharing the state to
    /// export them; see `app::serve_with`).
    pub metrics: Arc<crate::metrics::Metrics>,
    next_connection_id: AtomicU64,
}

impl ProxyState {
    pub fn new(
        config: Config,
        policy: Arc<ArcSwap<CompiledPolicy>>,
        interceptor: Arc<dyn Interceptor>,
    ) -> Result<Self, tls::TlsError> {
        let client_tls = config
            .client_tls
            .as_ref()
            .map(tls::client_tls)
            .transpose()?;
        let upstream_tls = tls::upstream_connector(&config.upstream)?;
        let auth_failures =
            auth_limit::AuthFailureLimiter::new(config.limits.auth_failures_per_minute);
        let dummy_secret = warm_verifiers(&policy.load());
        Ok(ProxyState {
            config,
            policy,
            interceptor,
            cancels: Arc::default(),
            client_tls,
            upstream_tls,
            dummy_secret,
            audit: None,
            auth_failures,
            metrics: Arc::default(),
            next_connection_id: AtomicU64::new(1),
        })
    }

    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Self {
        self.audit = audit;
        self
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Resolve every service's verifier once, so that a verifier derived from a password (one
/// PBKDF2 run, then cached) is ready before the first login: otherwise that login would take
/// measurably longer than one for an unknown service, telling the service exists. Failures are
/// logged here and refused at login. Call again after a policy reload.
///
/// Returns the secret for unknown services' fake verifiers: a hash of every resolved
/// verifier (secret to outsiders, and stable while the credentials are). A per-process random
/// secret would give an unknown name a new salt at every restart while a real service keeps
/// its own, telling them apart to anyone who watches across a restart; Postgres keeps its mock
/// salt stable for the same reason. Random only when no verifier resolves.
pub fn warm_verifiers(policy: &CompiledPolicy) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut names: Vec<&String> = policy.services.keys().collect();
    names.sort();
    let mut hasher = Sha256::new();
    hasher.update(b"pgpurpose mock verifier secret\0");
    let mut resolved = 0;
    for name in names {
        let Some(service) = policy.services.get(name) else {
            continue;
        };
        match crate::auth::resolve_verifier(&service.credential) {
            Ok(verifier) => {
                hasher.update(name.as_bytes());
                hasher.update([0]);
                hasher.update(verifier.to_string().as_bytes());
                hasher.update([0]);
                resolved += 1;
            }
            Err(error) => {
                tracing::warn!(service = %name, %error, "service credential cannot be resolved; its logins will be refused");
            }
        }
    }
    if resolved == 0 {
        return rand::random();
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compiled::SecretSource;

    fn policy_with(verifier: &str) -> CompiledPolicy {
        let mut policy = crate::policy::compiled::PolicyBuilder::new()
            .purpose("analytics")
            .service("svc", &["analytics"], &[])
            .build();
        if let Some(s) = policy.services.get_mut("svc") {
            s.credential = SecretSource::ScramVerifier(verifier.to_owned());
        }
        policy
    }

    #[test]
    fn mock_secret_is_stable_for_the_same_credentials_and_changes_with_them() {
        let a = crate::auth::ScramVerifier::from_password("one", 4096).to_string();
        let b = crate::auth::ScramVerifier::from_password("two", 4096).to_string();
        let first = warm_verifiers(&policy_with(&a));
        assert_eq!(first, warm_verifiers(&policy_with(&a)));
        assert_ne!(first, warm_verifiers(&policy_with(&b)));
    }
}
