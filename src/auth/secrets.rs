//! Resolving a policy's [`SecretSource`] into what authentication needs: a SCRAM verifier
//! for a service, or a password for an upstream role.
//!
//! Environment variables and files may hold either a verifier (text starting with
//! `SCRAM-SHA-256$`) or a password; surrounding whitespace (a trailing newline) is trimmed from
//! both. Verifiers derived from passwords are cached, keyed by a keyed hash of the password,
//! so each login does not redo PBKDF2 with a fresh salt (which would also make the salt a
//! client sees change from login to login); a rotated password gets a new entry.
//!
//! Errors name the variable or file, never the secret.
//!
//! Callers should resolve every service's verifier once when the policy is loaded: that
//! reports bad sources early, and it fills the cache so the first login of a service does not
//! take a PBKDF2 run longer than a login for an unknown service (a timing tell).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::scram::{ScramVerifier, DEFAULT_ITERATIONS};
use super::AuthError;
use crate::policy::compiled::SecretSource;

/// Largest secret read from a file or variable; a verifier is ~130 bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Derived verifiers kept at most; the cache is emptied when full (a policy has few services).
const MAX_CACHED_VERIFIERS: usize = 4096;
const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";

/// The verifier a service's credential stands for.
pub fn resolve_verifier(src: &SecretSource) -> Result<ScramVerifier, AuthError> {
    let (origin, secret) = match src {
        SecretSource::ScramVerifier(text) => return ScramVerifier::parse(text.trim()),
        SecretSource::Env(_) | SecretSource::File(_) => read_source(src)?,
    };
    if secret.starts_with(VERIFIER_PREFIX) {
        return ScramVerifier::parse(&secret);
    }
    if looks_like_md5(&secret) {
        return Err(AuthError::Md5SecretNotSupported(origin));
    }
    Ok(cached_verifier(&secret))
}

/// The password for an upstream role (from an environment variable or a file only).
pub fn resolve_password(src: &SecretSource) -> Result<String, AuthError> {
    if let SecretSource::ScramVerifier(_) = src {
        return Err(AuthError::VerifierAsPassword("the policy".to_owned()));
    }
    let (origin, secret) = read_source(src)?;
    if secret.starts_with(VERIFIER_PREFIX) {
        return Err(AuthError::VerifierAsPassword(origin));
    }
    Ok(secret)
}

/// Read and trim an Env or File source; returns a description of where it came from.
fn read_source(src: &SecretSource) -> Result<(String, String), AuthError> {
    let (origin, raw) = match src {
        SecretSource::Env(var) => {
            let origin = format!("environment variable {var}");
            let value = std::env::var(var).map_err(|_| AuthError::SecretEnvMissing(var.clone()))?;
            (origin, value)
        }
        SecretSource::File(path) => (format!("file {}", path.display()), read_file(path)?),
        SecretSource::ScramVerifier(_) => {
            return Err(AuthError::VerifierAsPassword("the policy".to_owned()))
        }
    };
    if raw.len() > MAX_SECRET_BYTES {
        return Err(AuthError::SecretTooLarge(origin));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(AuthError::SecretEmpty(origin));
    }
    Ok((origin, trimmed.to_owned()))
}

fn read_file(path: &Path) -> Result<String, AuthError> {
    let file_err = |source| AuthError::SecretFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_err)?;
    let mut bytes = Vec::new();
    // Read one byte past the limit so an oversized file is reported, not truncated.
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(file_err)?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(AuthError::SecretTooLarge(format!(
            "file {}",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        file_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not valid UTF-8",
        ))
    })
}

/// Postgres's stored MD5 form: `md5` followed by 32 hex digits.
fn looks_like_md5(secret: &str) -> bool {
    secret.len() == 35
        && secret.starts_with("md5")
        && secret[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Process-wide cache of derived verifiers. The key is HMAC(process-random key, password):
/// equal passwords find their verifier, and the key is useless for guessing passwords
/// offline should memory leak.
struct VerifierCache {
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], ScramVerifier>>,
}

fn cache() -> &'static VerifierCache {
    static CACHE: OnceLock<VerifierCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        VerifierCache {
            key,
            entries: Mutex::new(HashMap::new()),
        }
    })
}

fn cached_verifier(password: &str) -> ScramVerifier {
    let cache = cache();
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&cache.key).expect("HMAC takes keys of any length");
    mac.update(password.as_bytes());
    let id: [u8; 32] = mac.finalize().into_bytes().into();
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    let lookup = |entries: &HashMap<[u8; 32], ScramVerifier>| entries.get(&id).cloned();
    if let Some(found) = lookup(&cache.entries.lock().unwrap_or_else(|e| e.into_inner())) {
        return found;
    }
    // Derive outside the lock: PBKDF2 takes milliseconds and other logins should not wait.
    let derived = ScramVerifier::from_password(password, DEFAULT_ITERATIONS);
    let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
    if entries.len() >= MAX_CACHED_VERIFIERS {
        entries.clear();
    }
    // If another login raced us, keep the first verifier so every client sees one salt.
    entries.entry(id).or_insert(derived).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const VERIFIER: &str = "SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=";

    fn file_with(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content.as_bytes()).unwrap();
        file
    }

    /// Does `verifier` accept `password`? (A full exchange with postgres-protocol's client.)
    fn accepts(verifier: &ScramVerifier, password: &str) -> bool {
        use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
        let mut server = super::super::ScramServer::new(verifier.clone(), None);
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let first = server
            .client_first(super::super::SCRAM_SHA_256, client.message())
            .unwrap();
        client.update(&first).unwrap();
        server.client_final(client.message()).is_ok()
    }

    #[test]
    fn verifier_sources() {
        let inline = resolve_verifier(&SecretSource::ScramVerifier(VERIFIER.into())).unwrap();
        assert_eq!(inline.to_string(), VERIFIER);

        let file = file_with(&format!("{VERIFIER}\n"));
        let from_file = resolve_verifier(&SecretSource::File(file.path().into())).unwrap();
        assert_eq!(from_file, inline);

        // A password in a file: trimmed, derived once, then served from the cache.
        let file = file_with("  file password \n");
        let src = SecretSource::File(file.path().into());
        let first = resolve_verifier(&src).unwrap();
        assert!(accepts(&first, "file password"));
        assert!(!accepts(&first, "  file password \n"));
        assert_eq!(resolve_verifier(&src).unwrap(), first, "same salt: cached");

        // Rotating the password yields a new verifier.
        std::fs::write(file.path(), "rotated\n").unwrap();
        let rotated = resolve_verifier(&src).unwrap();
        assert!(accepts(&rotated, "rotated"));
        assert!(!accepts(&rotated, "file password"));

        // Environment variables (unique names: tests run in parallel threads).
        std::env::set_var("PGPURPOSE_AUTH_TEST_VERIFIER_PW", "env password");
        let env =
            resolve_verifier(&SecretSource::Env("PGPURPOSE_AUTH_TEST_VERIFIER_PW".into())).unwrap();
        assert!(accepts(&env, "env password"));
        std::env::set_var("PGPURPOSE_AUTH_TEST_VERIFIER_V", VERIFIER);
        let env =
            resolve_verifier(&SecretSource::Env("PGPURPOSE_AUTH_TEST_VERIFIER_V".into())).unwrap();
        assert_eq!(env, inline);
    }

    #[test]
    fn verifier_source_errors_do_not_leak_secrets() {
        let missing = resolve_verifier(&SecretSource::Env("PGPURPOSE_AUTH_TEST_UNSET".into()));
        assert!(matches!(missing, Err(AuthError::SecretEnvMissing(_))));

        let no_file = resolve_verifier(&SecretSource::File("/nonexistent/pgpurpose".into()));
        assert!(matches!(no_file, Err(AuthError::SecretFile { .. })));

        let empty = file_with(" \n");
        let err = resolve_verifier(&SecretSource::File(empty.path().into())).unwrap_err();
        assert!(matches!(err, AuthError::SecretEmpty(_)), "{err:?}");

        let md5 = file_with("md5d2d3d26f5c1a9c3c8d3d26f5c1a9c3c8\n");
        let err = resolve_verifier(&SecretSource::File(md5.path().into())).unwrap_err();
        assert!(
            matches!(err, AuthError::Md5SecretNotSupported(_)),
            "{err:?}"
        );
        assert!(!err.to_string().contains("d2d3d26f"), "{err}");

        let broken = file_with("SCRAM-SHA-256$4096:c2VjcmV0c2FsdA==$broken");
        let err = resolve_verifier(&SecretSource::File(broken.path().into())).unwrap_err();
        assert!(matches!(err, AuthError::MalformedVerifier(_)), "{err:?}");
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");

        let big = file_with(&"x".repeat(MAX_SECRET_BYTES + 1));
        let err = resolve_verifier(&SecretSource::File(big.path().into())).unwrap_err();
        assert!(matches!(err, AuthError::SecretTooLarge(_)), "{err:?}");
    }

    #[test]
    fn password_sources() {
        let file = file_with("s3cret pass\r\n");
        assert_eq!(
            resolve_password(&SecretSource::File(file.path().into())).unwrap(),
            "s3cret pass"
        );
        std::env::set_var("PGPURPOSE_AUTH_TEST_PASSWORD", "from env");
        assert_eq!(
            resolve_password(&SecretSource::Env("PGPURPOSE_AUTH_TEST_PASSWORD".into())).unwrap(),
            "from env"
        );
        let err = resolve_password(&SecretSource::ScramVerifier(VERIFIER.into())).unwrap_err();
        assert!(matches!(err, AuthError::VerifierAsPassword(_)), "{err:?}");
        let file = file_with(VERIFIER);
        let err = resolve_password(&SecretSource::File(file.path().into())).unwrap_err();
        assert!(matches!(err, AuthError::VerifierAsPassword(_)), "{err:?}");
        assert!(!err.to_string().contains("lcRvd"), "{err}");
    }
}
