//! SCRAM-SHA-256 verifiers: Postgres's stored form
//! (`SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`), deriving one from a password with
//! SASLprep as Postgres does, and the deterministic mock verifier for unknown services.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::AuthError;

/// Iteration count for verifiers the proxy derives, and for mock verifiers (Postgres's default).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length for derived verifiers (Postgres's `SCRAM_DEFAULT_SALT_LEN`).
const SALT_LEN: usize = 16;
/// Length of SHA-256 output, StoredKey, ServerKey and proofs.
pub(super) const KEY_LEN: usize = 32;

/// HMAC-SHA-256 over the concatenation of `parts`.
pub(super) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

pub(super) fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    Sha256::digest(data).into()
}

/// SASLprep a password the way Postgres's `pg_saslprep` is used when building a verifier:
/// ASCII passes through unchanged; otherwise normalise, and fall back to the raw bytes when
/// the input is prohibited (or maps to nothing), exactly as libpq and the server do.
///
/// Known divergence: Postgres checks prohibited code points before NFKC and uses its own
/// Unicode tables, the `stringprep` crate checks after; both only matter for exotic input.
fn saslprep_password(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepared) if !prepared.is_empty() => prepared.into_owned().into_bytes(),
        _ => password.as_bytes().to_vec(),
    }
}

/// A stored SCRAM-SHA-256 secret: what the server needs to check a client, and nothing that
/// lets it log in elsewhere. `Debug` hides the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    // Visible to the exchange in `scram`; outside `auth` only through the getters, so a
    // verifier is always one that parsed or was derived (positive count, non-empty salt).
    pub(super) iterations: u32,
    pub(super) salt: Vec<u8>,
    pub(super) stored_key: [u8; KEY_LEN],
    pub(super) server_key: [u8; KEY_LEN],
}

impl ScramVerifier {
    /// Parse Postgres's `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
    /// Error messages never echo the input, which may be secret.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(AuthError::MalformedVerifier(
                "missing SCRAM-SHA-256$ prefix",
            ))?;
        let (iter_salt, keys) = rest
            .split_once('$')
            .ok_or(AuthError::MalformedVerifier("missing '$' before the keys"))?;
        let (iterations, salt) = iter_salt
            .split_once(':')
            .ok_or(AuthError::MalformedVerifier("missing ':' after iterations"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or(AuthError::MalformedVerifier("missing ':' between the keys"))?;
        if !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::MalformedVerifier("iterations is not a number"));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| AuthError::MalformedVerifier("iterations is not a number"))?;
        if iterations == 0 {
            return Err(AuthError::MalformedVerifier("iterations must be positive"));
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| AuthError::MalformedVerifier("salt is not base64"))?;
        if salt.is_empty() {
            return Err(AuthError::MalformedVerifier("salt is empty"));
        }
        let key = |b64: &str, what: &'static str| -> Result<[u8; KEY_LEN], AuthError> {
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| AuthError::MalformedVerifier(what))?;
            bytes
                .try_into()
                .map_err(|_| AuthError::MalformedVerifier(what))
        };
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: key(stored, "StoredKey is not 32 base64-encoded bytes")?,
            server_key: key(server, "ServerKey is not 32 base64-encoded bytes")?,
        })
    }

    /// Derive a verifier from a password with a fresh random 16-byte salt. The password is
    /// SASLprep'd as Postgres does, so a verifier made here accepts the same clients as one
    /// made by `CREATE ROLE ... PASSWORD`.
    pub fn from_password(password: &str, iterations: u32) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::derive(password, salt, iterations)
    }

    fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        // A zero count would make PBKDF2 meaningless; the format demands a positive number.
        let iterations = iterations.max(1);
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::pbkdf2_hmac::<Sha256>(&saslprep_password(password), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramVerifier {
            iterations,
            salt,
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }
}

impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// A deterministic fake verifier for a service that does not exist, so that the exchange
/// (mechanisms, salt, iteration count) looks exactly like a real one and the same name always
/// gets the same salt; no password can satisfy it. `secret` is a per-process (or per-install)
/// random key so outsiders cannot predict the fake salts. Uses [`DEFAULT_ITERATIONS`]: real
/// verifiers with a different count remain distinguishable, as they are in Postgres.
pub fn dummy_verifier(username: &str, secret: &[u8; 32]) -> ScramVerifier {
    let name = username.as_bytes();
    let salt = hmac(secret, &[b"pgpurpose mock salt\0", name]);
    ScramVerifier {
        iterations: DEFAULT_ITERATIONS,
        salt: salt[..SALT_LEN].to_vec(),
        stored_key: hmac(secret, &[b"pgpurpose mock stored key\0", name]),
        server_key: hmac(secret, &[b"pgpurpose mock server key\0", name]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::scram::{ScramServer, SCRAM_SHA_256};
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Made by PostgreSQL 15: `CREATE ROLE x PASSWORD 'secret'` (password_encryption=scram-sha-256).
    const PG15_SECRET: &str = "SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=";
    /// Made by PostgreSQL 15 for the password "pässwörd Ⅸ" (SASLprep maps Ⅸ to "IX").
    const PG15_UNICODE: &str = "SCRAM-SHA-256$4096:zGEYICbDKpNpphKaAgtFbA==$Q9YBYxrwg7FXZPkjK9/7avkJW1JnvpbDL0PyyRE8XZA=:DvxRAdvF+Cz1eIyQZzw2k+hgBSqxDjD0sqg5vy3jrus=";

    fn accepts(verifier: &ScramVerifier, password: &str) -> bool {
        let mut server = ScramServer::new(verifier.clone(), None);
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let first = server
            .client_first(SCRAM_SHA_256, client.message())
            .unwrap();
        client.update(&first).unwrap();
        server.client_final(client.message()).is_ok()
    }

    #[test]
    fn derivation_matches_postgres_including_saslprep() {
        for (text, password) in [(PG15_SECRET, "secret"), (PG15_UNICODE, "pässwörd Ⅸ")] {
            let pg = ScramVerifier::parse(text).unwrap();
            let ours = ScramVerifier::derive(password, pg.salt.clone(), pg.iterations);
            assert_eq!(ours.to_string(), text);
        }
        // Without SASLprep the unicode one would differ: guard that the test means something.
        let pg = ScramVerifier::parse(PG15_UNICODE).unwrap();
        let unprepped = ScramVerifier::derive("pässwörd IX", pg.salt.clone(), pg.iterations);
        assert_eq!(unprepped, pg, "NFKC of Ⅸ is IX");
        let other = ScramVerifier::derive("pässwörd Ⅹ", pg.salt.clone(), pg.iterations);
        assert_ne!(other, pg);
    }

    #[test]
    fn verifier_round_trips_and_rejects_malformed() {
        let v = ScramVerifier::from_password("pw", 10_000);
        assert_eq!(v.iterations(), 10_000);
        assert_eq!(v.salt().len(), SALT_LEN);
        let text = v.to_string();
        assert_eq!(ScramVerifier::parse(&text).unwrap(), v);
        assert_ne!(
            ScramVerifier::from_password("pw", 10_000),
            v,
            "salt is random"
        );
        assert!(!format!("{v:?}").contains(&STANDARD.encode(v.stored_key)));

        let good = PG15_SECRET;
        let bad = [
            "",
            "md5d2d3d26f5c1a9c3c8d3d26f5c1a9c3c8",
            "SCRAM-SHA-1$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$0:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$-1:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$+4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$99999999999:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$4096:$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            "SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=",
            "SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=:x",
            "SCRAM-SHA-256$4096lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
            " SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=",
        ];
        assert!(ScramVerifier::parse(good).is_ok());
        for text in bad {
            let err = ScramVerifier::parse(text).unwrap_err();
            assert!(matches!(err, AuthError::MalformedVerifier(_)), "{text}");
            // The message must not leak the (secret) input.
            assert!(!err.to_string().contains("uKcVSu6m"), "{err}");
        }
    }

    #[test]
    fn dummy_verifier_is_deterministic_per_name_and_unpassable() {
        let secret = [7u8; 32];
        let a = dummy_verifier("alice", &secret);
        assert_eq!(a, dummy_verifier("alice", &secret));
        assert_ne!(a.salt(), dummy_verifier("bob", &secret).salt());
        assert_ne!(a.salt(), dummy_verifier("alice", &[8u8; 32]).salt());
        assert_eq!(a.iterations(), DEFAULT_ITERATIONS);
        assert_eq!(a.salt().len(), SALT_LEN);
        for guess in ["", "alice", "password"] {
            assert!(!accepts(&a, guess), "{guess:?}");
        }
    }
}
