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
    /// Secret for the fake verifiers of unknown services (random per process).
    pub dummy_secret: [u8; 32],
    /// Failed authentications per client address (`limits.auth_failures_per_minute`).
    pub auth_failures: auth_limit::AuthFailureLimiter,
    /// Sessions (accepted connections) currently running, for leak checks and diagnostics.
    pub live_sessions: std::sync::atomic::AtomicUsize,
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
        warm_verifiers(&policy.load());
        Ok(ProxyState {
            config,
            policy,
            interceptor,
            cancels: Arc::default(),
            client_tls,
            upstream_tls,
            dummy_secret: rand::random(),
            auth_failures,
            live_sessions: std::sync::atomic::AtomicUsize::new(0),
            next_connection_id: AtomicU64::new(1),
        })
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Resolve every service's verifier once, so that a verifier derived from a password (one
/// PBKDF2 run, then cached) is ready before the first login: otherwise that login would take
/// measurably longer than one for an unknown service, telling the service exists. Failures are
/// logged here and refused at login. Call again after a policy reload.
pub fn warm_verifiers(policy: &CompiledPolicy) {
    for service in policy.services.values() {
        if let Err(error) = crate::auth::resolve_verifier(&service.credential) {
            tracing::warn!(service = %service.name, %error, "service credential cannot be resolved; its logins will be refused");
        }
    }
}
