//! The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802 / RFC 7677), as
//! PostgreSQL implements it, used to authenticate clients (services) to the proxy.
//!
//! Owns the per-connection exchange state machine. Verifiers live in [`super::verifier`],
//! channel-binding data in [`super::channel_binding`]; both are re-exported here.
//!
//! The parser follows Postgres's `auth-scram.c` closely, including its refusals (authzid,
//! mandatory extensions, a client that claims `y` while the server offers `-PLUS`), so that
//! clients see the same behaviour through the proxy as against Postgres itself.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

pub use super::channel_binding::tls_server_end_point;
pub use super::verifier::{dummy_verifier, ScramVerifier, DEFAULT_ITERATIONS};
use super::verifier::{hmac, sha256, KEY_LEN};
use super::AuthError;

/// Mechanism name without channel binding.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Mechanism name with `tls-server-end-point` channel binding.
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// Random bytes in the server nonce before base64 (Postgres's `SCRAM_RAW_NONCE_LEN`).
const RAW_NONCE_LEN: usize = 18;
/// The only channel-binding type Postgres (and the proxy) supports.
const CBIND_TYPE: &str = "tls-server-end-point";

/// A SCRAM parse failure, in Postgres's words.
fn malformed(detail: impl Into<String>) -> AuthError {
    AuthError::MalformedScramMessage(detail.into())
}

/// Reads `attr=value` pairs the way Postgres's `read_attr_value`/`read_any_attr` do:
/// a value runs to the next comma, which is consumed.
struct AttrReader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> AttrReader<'a> {
    fn new(input: &'a [u8]) -> Self {
        AttrReader { input, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn value(&mut self) -> Result<&'a [u8], AuthError> {
        if self.peek() != Some(b'=') {
            return Err(malformed("expected character \"=\" for attribute"));
        }
        self.pos += 1;
        let start = self.pos;
        let end = self.input[start..]
            .iter()
            .position(|&b| b == b',')
            .map_or(self.input.len(), |i| start + i);
        self.pos = if end < self.input.len() { end + 1 } else { end };
        Ok(&self.input[start..end])
    }

    /// `attr=value` for a specific attribute.
    fn expect(&mut self, attr: u8) -> Result<&'a [u8], AuthError> {
        if self.peek() != Some(attr) {
            return Err(malformed(format!(
                "expected attribute \"{}\"",
                char::from(attr)
            )));
        }
        self.pos += 1;
        self.value()
    }

    /// Any `attr=value` with an ASCII-letter attribute.
    fn any(&mut self) -> Result<(u8, &'a [u8]), AuthError> {
        match self.peek() {
            Some(attr) if attr.is_ascii_alphabetic() => {
                self.pos += 1;
                Ok((attr, self.value()?))
            }
            _ => Err(malformed("attribute expected, but found invalid character")),
        }
    }
}

/// RFC 5802 `printable`: %x21-2B / %x2D-7E (no comma).
fn is_printable(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (0x21..=0x7e).contains(&b) && b != b',')
}

enum State {
    /// Waiting for the client-first-message.
    Initial,
    /// Server-first sent; waiting for the client-final-message.
    FirstSent {
        /// The gs2 header exactly as the client sent it (`n,,`, `y,,` or `p=...,,`).
        gs2_header: Vec<u8>,
        /// True when the client chose `-PLUS` and the binding must be checked.
        binding_in_use: bool,
        client_first_bare: Vec<u8>,
        server_first: Vec<u8>,
        /// client nonce + server nonce, as the final message must repeat it.
        full_nonce: Vec<u8>,
    },
    /// Authenticated.
    Done,
    /// A step failed; the exchange cannot continue.
    Failed,
}

/// One server-side SCRAM exchange. Feed it the client's SASLInitialResponse (mechanism and
/// data) and SASLResponse; send back what it returns as AuthenticationSASLContinue and
/// AuthenticationSASLFinal. Any error ends the exchange (answer with the error's
/// `ErrorResponse`; a wrong password is [`AuthError::AuthenticationFailed`]).
pub struct ScramServer {
    verifier: ScramVerifier,
    /// `tls-server-end-point` data of the proxy's certificate; `Some` only on TLS connections.
    channel_binding: Option<Vec<u8>>,
    state: State,
}

impl ScramServer {
    pub fn new(verifier: ScramVerifier, channel_binding: Option<Vec<u8>>) -> Self {
        ScramServer {
            verifier,
            channel_binding,
            state: State::Initial,
        }
    }

    /// The mechanisms to list in AuthenticationSASL, preferred first (Postgres's order).
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.channel_binding.is_some() {
            &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]
        } else {
            &[SCRAM_SHA_256]
        }
    }

    /// True once `client_final` has accepted the client's proof.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Handle the client-first-message; returns the server-first-message.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Initial) {
            self.state = State::Failed;
            return Err(AuthError::ScramOutOfOrder);
        }
        self.state = State::Failed;
        let binding_in_use = match mechanism {
            SCRAM_SHA_256_PLUS if self.channel_binding.is_some() => true,
            SCRAM_SHA_256 => false,
            _ => return Err(AuthError::UnsupportedMechanism(mechanism.to_owned())),
        };
        let (gs2_len, bare) = self.parse_gs2_header(data, binding_in_use)?;
        let mut reader = AttrReader::new(bare);
        if reader.peek() == Some(b'm') {
            return Err(AuthError::UnsupportedScramFeature(
                "client requires an unsupported SCRAM extension",
            ));
        }
        // The SCRAM username is ignored, as in Postgres: identity is the startup packet's user.
        reader.expect(b'n')?;
        let client_nonce = reader.expect(b'r')?;
        if client_nonce.is_empty() || !is_printable(client_nonce) {
            return Err(malformed("non-printable characters in SCRAM nonce"));
        }
        while !reader.at_end() {
            reader.any()?;
        }

        let mut raw_nonce = [0u8; RAW_NONCE_LEN];
        rand::rng().fill_bytes(&mut raw_nonce);
        let mut full_nonce = client_nonce.to_vec();
        full_nonce.extend_from_slice(STANDARD.encode(raw_nonce).as_bytes());
        let mut server_first = b"r=".to_vec();
        server_first.extend_from_slice(&full_nonce);
        server_first.extend_from_slice(
            format!(
                ",s={},i={}",
                STANDARD.encode(&self.verifier.salt),
                self.verifier.iterations
            )
            .as_bytes(),
        );
        self.state = State::FirstSent {
            gs2_header: data[..gs2_len].to_vec(),
            binding_in_use,
            client_first_bare: bare.to_vec(),
            server_first: server_first.clone(),
            full_nonce,
        };
        Ok(server_first)
    }

    /// Check the gs2 header; returns its length and the client-first-message-bare.
    fn parse_gs2_header<'d>(
        &self,
        data: &'d [u8],
        binding_in_use: bool,
    ) -> Result<(usize, &'d [u8]), AuthError> {
        let authzid_at = match data.first() {
            Some(b'n') | Some(b'y') if binding_in_use => {
                return Err(malformed(
                    "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not \
                     include channel binding data.",
                ));
            }
            Some(flag @ (b'n' | b'y')) => {
                if *flag == b'y' && self.channel_binding.is_some() {
                    return Err(AuthError::ChannelBindingNegotiation(
                        "The client supports SCRAM channel binding but thinks the server does \
                         not. However, this server does support channel binding.",
                    ));
                }
                if data.get(1) != Some(&b',') {
                    return Err(malformed("comma expected after the channel-binding flag"));
                }
                2
            }
            Some(b'p') => {
                if !binding_in_use {
                    return Err(malformed(
                        "The client selected SCRAM-SHA-256 without channel binding, but the \
                         SCRAM message includes channel binding data.",
                    ));
                }
                let mut reader = AttrReader::new(data);
                if reader.expect(b'p')? != CBIND_TYPE.as_bytes() {
                    return Err(malformed("unsupported SCRAM channel-binding type"));
                }
                // The value's terminating comma was consumed (or the input ended).
                reader.pos
            }
            _ => return Err(malformed("unexpected channel-binding flag")),
        };
        match data.get(authzid_at) {
            Some(b'a') => Err(AuthError::UnsupportedScramFeature(
                "client uses authorization identity, but it is not supported",
            )),
            Some(b',') => Ok((authzid_at + 1, &data[authzid_at + 1..])),
            _ => Err(malformed("unexpected attribute in client-first-message")),
        }
    }

    /// Handle the client-final-message; returns the server-final-message (`v=...`).
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::FirstSent {
            gs2_header,
            binding_in_use,
            client_first_bare,
            server_first,
            full_nonce,
        } = std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(AuthError::ScramOutOfOrder);
        };

        let mut reader = AttrReader::new(data);
        let cbind = reader.expect(b'c')?;
        let mut cbind_input = gs2_header;
        if binding_in_use {
            // Only reachable when channel_binding is Some (checked in client_first).
            cbind_input.extend_from_slice(self.channel_binding.as_deref().unwrap_or_default());
        }
        // Constant time although the binding data (a certificate hash) is not secret: no
        // comparison on the authentication path should leak how much of its input matched.
        let cbind_ok: bool = cbind.ct_eq(STANDARD.encode(&cbind_input).as_bytes()).into();
        if !cbind_ok {
            return Err(if binding_in_use {
                AuthError::ChannelBindingMismatch
            } else {
                malformed("unexpected SCRAM channel-binding attribute in client-final-message")
            });
        }
        let final_nonce = reader.expect(b'r')?;
        let (without_proof_end, proof) = loop {
            let attr_start = reader.pos;
            if let (b'p', value) = reader.any()? {
                // The message without proof ends before the comma that precedes "p=".
                break (attr_start.saturating_sub(1), value);
            }
        };
        if !reader.at_end() || data.get(reader.pos.wrapping_sub(1)) == Some(&b',') {
            return Err(malformed(
                "Garbage found at the end of client-final-message.",
            ));
        }
        let proof: [u8; KEY_LEN] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| malformed("Malformed proof in client-final-message."))?;

        let nonce_ok = final_nonce.ct_eq(&full_nonce);
        let auth_message: &[&[u8]] = &[
            &client_first_bare,
            b",",
            &server_first,
            b",",
            &data[..without_proof_end],
        ];
        let client_signature = hmac(&self.verifier.stored_key, auth_message);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let proof_ok = sha256(&client_key).ct_eq(&self.verifier.stored_key);
        if !bool::from(nonce_ok & proof_ok) {
            return Err(AuthError::AuthenticationFailed);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message);
        self.state = State::Done;
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use sha2::Sha256;

    /// Made by PostgreSQL 15: `CREATE ROLE x PASSWORD 'secret'` (password_encryption=scram-sha-256).
    const PG15_SECRET: &str = "SCRAM-SHA-256$4096:lcRvdOfMrFYmzZ6PcQqYrg==$uKcVSu6mUeO/QiOOtqzUfH7OQXXXLTBCzzzDrWjV4Fo=:QxrsFAVpZug8vEIYC/vRBSjwrE+5CNm+jdTj+gqs5M0=";

    /// Run a full exchange with postgres-protocol's client; returns the server's verdict and,
    /// on success, whether the client accepted the server's signature.
    fn exchange(
        server: &mut ScramServer,
        mechanism: &str,
        password: &str,
        binding: ChannelBinding,
    ) -> Result<(), AuthError> {
        let mut client = ScramSha256::new(password.as_bytes(), binding);
        let server_first = server.client_first(mechanism, client.message())?;
        client.update(&server_first).unwrap();
        let server_final = server.client_final(client.message())?;
        client
            .finish(&server_final)
            .expect("client must accept the server signature");
        Ok(())
    }

    #[test]
    fn password_exchange_succeeds_and_wrong_password_fails() {
        let verifier = ScramVerifier::from_password("correct horse", DEFAULT_ITERATIONS);
        let mut server = ScramServer::new(verifier.clone(), None);
        assert_eq!(server.mechanisms(), &[SCRAM_SHA_256]);
        exchange(
            &mut server,
            SCRAM_SHA_256,
            "correct horse",
            ChannelBinding::unsupported(),
        )
        .unwrap();
        assert!(server.is_authenticated());

        let mut server = ScramServer::new(verifier, None);
        let err = exchange(
            &mut server,
            SCRAM_SHA_256,
            "correct horsE",
            ChannelBinding::unsupported(),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::AuthenticationFailed), "{err:?}");
        assert!(!server.is_authenticated());
    }

    #[test]
    fn postgres_made_verifier_accepts_its_password_only() {
        let verifier = ScramVerifier::parse(PG15_SECRET).unwrap();
        assert_eq!(verifier.to_string(), PG15_SECRET);
        let mut ok = ScramServer::new(verifier.clone(), None);
        exchange(
            &mut ok,
            SCRAM_SHA_256,
            "secret",
            ChannelBinding::unrequested(),
        )
        .unwrap();
        for wrong in ["Secret", "secret ", "", "secre"] {
            let mut server = ScramServer::new(verifier.clone(), None);
            let err = exchange(
                &mut server,
                SCRAM_SHA_256,
                wrong,
                ChannelBinding::unrequested(),
            );
            assert!(
                matches!(err, Err(AuthError::AuthenticationFailed)),
                "{wrong:?}: {err:?}"
            );
        }
    }

    /// A server that has answered a real client's first message, and that client's final
    /// message, for tampering.
    fn after_first(verifier: &ScramVerifier) -> (ScramServer, String) {
        let mut server = ScramServer::new(verifier.clone(), None);
        let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        let first = server
            .client_first(SCRAM_SHA_256, client.message())
            .unwrap();
        client.update(&first).unwrap();
        (
            server,
            String::from_utf8(client.message().to_vec()).unwrap(),
        )
    }

    /// A client proof computed by hand, so a test can sign any message it likes.
    fn sign(password: &str, verifier: &ScramVerifier, auth_message: &[u8]) -> String {
        let mut salted = [0u8; KEY_LEN];
        pbkdf2::pbkdf2_hmac::<Sha256>(
            password.as_bytes(),
            verifier.salt(),
            verifier.iterations(),
            &mut salted,
        );
        let client_key = hmac(&salted, &[b"Client Key"]);
        let signature = hmac(&sha256(&client_key), &[auth_message]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        STANDARD.encode(proof)
    }

    #[test]
    fn tampered_proof_and_nonce_fail() {
        let verifier = ScramVerifier::from_password("pw", 4096);

        // Flip a bit of the proof (keeping it valid base64 of 32 bytes).
        let (mut server, good) = after_first(&verifier);
        let (head, proof) = good.rsplit_once(",p=").unwrap();
        let mut raw = STANDARD.decode(proof).unwrap();
        raw[0] ^= 1;
        let tampered = format!("{head},p={}", STANDARD.encode(&raw));
        let err = server.client_final(tampered.as_bytes()).unwrap_err();
        assert!(matches!(err, AuthError::AuthenticationFailed), "{err:?}");
        // The exchange is over after a failure, even with the right message.
        assert!(matches!(
            server.client_final(good.as_bytes()),
            Err(AuthError::ScramOutOfOrder)
        ));

        // A final message with a different nonce but a proof that is valid for it: only the
        // nonce check stands in the way (a replayed or spliced exchange).
        let client_first_bare = b"n=,r=clientnonce";
        let mut server = ScramServer::new(verifier.clone(), None);
        let first = server
            .client_first(SCRAM_SHA_256, b"n,,n=,r=clientnonce")
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        let without_proof = "c=biws,r=clientnonceAAAAAAAAAAAAAAAAAAAAAAAA";
        let auth = format!(
            "{},{first},{without_proof}",
            String::from_utf8_lossy(client_first_bare)
        );
        let forged = format!(
            "{without_proof},p={}",
            sign("pw", &verifier, auth.as_bytes())
        );
        let err = server.client_final(forged.as_bytes()).unwrap_err();
        assert!(matches!(err, AuthError::AuthenticationFailed), "{err:?}");

        // The same hand-made signature over the right nonce passes: the failure above is the
        // nonce, and `sign` is a faithful client.
        let mut server = ScramServer::new(verifier.clone(), None);
        let first = server
            .client_first(SCRAM_SHA_256, b"n,,n=,r=clientnonce")
            .unwrap();
        let first = String::from_utf8(first).unwrap();
        let nonce = first.split(',').next().unwrap();
        let without_proof = format!("c=biws,{nonce}");
        let auth = format!("n=,r=clientnonce,{first},{without_proof}");
        let good = format!(
            "{without_proof},p={}",
            sign("pw", &verifier, auth.as_bytes())
        );
        let server_final = server.client_final(good.as_bytes()).unwrap();
        assert!(server_final.starts_with(b"v="));
        assert!(server.is_authenticated());
    }

    #[test]
    fn client_final_parsing_rejects_garbage() {
        let verifier = ScramVerifier::from_password("pw", 4096);
        let strip_proof = |m: &str| m.rsplit_once(",p=").unwrap().0.to_owned();
        let variants: &[fn(&str) -> String] = &[
            |m| format!("{m},x=1"),
            |m| format!("{m},"),
            |m| m.replacen("c=biws", "c=eSws", 1), // 'y' now, but the client said 'n'
            |m| m.replacen("c=biws,", "", 1),
            |m| m.rsplit_once(",p=").unwrap().0.to_owned(),
            |m| format!("{},p=AAAA", m.rsplit_once(",p=").unwrap().0),
            |m| format!("{},p=!!!", m.rsplit_once(",p=").unwrap().0),
        ];
        for tamper in variants {
            let (mut server, real) = after_first(&verifier);
            let bad = tamper(&real);
            let err = server.client_final(bad.as_bytes()).unwrap_err();
            assert!(
                matches!(err, AuthError::MalformedScramMessage(_)),
                "{bad}: {err:?}"
            );
        }
        // An extension before the proof is allowed by the grammar and covered by the proof
        // (it fails the proof, not the parser).
        let (mut server, real) = after_first(&verifier);
        let proof = real.rsplit_once(",p=").unwrap().1;
        let err = server
            .client_final(format!("{},x=ext,p={proof}", strip_proof(&real)).as_bytes())
            .unwrap_err();
        assert!(matches!(err, AuthError::AuthenticationFailed), "{err:?}");
        // Out of order: final before first, first twice.
        let mut server = ScramServer::new(verifier.clone(), None);
        assert!(matches!(
            server.client_final(b"c=biws"),
            Err(AuthError::ScramOutOfOrder)
        ));
        let (mut server, _) = after_first(&verifier);
        assert!(matches!(
            server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
            Err(AuthError::ScramOutOfOrder)
        ));
    }

    #[test]
    fn channel_binding_plus_succeeds_and_mismatch_fails() {
        let verifier = ScramVerifier::from_password("pw", 4096);
        let cert_hash = vec![0xAB; 32];
        let mut server = ScramServer::new(verifier.clone(), Some(cert_hash.clone()));
        assert_eq!(server.mechanisms(), &[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
        exchange(
            &mut server,
            SCRAM_SHA_256_PLUS,
            "pw",
            ChannelBinding::tls_server_end_point(cert_hash.clone()),
        )
        .unwrap();

        // A man in the middle terminates TLS with another certificate: the hashes differ.
        let mut server = ScramServer::new(verifier.clone(), Some(cert_hash.clone()));
        let err = exchange(
            &mut server,
            SCRAM_SHA_256_PLUS,
            "pw",
            ChannelBinding::tls_server_end_point(vec![0xCD; 32]),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::ChannelBindingMismatch), "{err:?}");

        // Client supports binding but thinks the server does not ('y'), server offers -PLUS.
        let mut server = ScramServer::new(verifier.clone(), Some(cert_hash.clone()));
        let err = exchange(
            &mut server,
            SCRAM_SHA_256,
            "pw",
            ChannelBinding::unrequested(),
        )
        .unwrap_err();
        assert!(
            matches!(err, AuthError::ChannelBindingNegotiation(_)),
            "{err:?}"
        );

        // 'y' without TLS is fine; 'n' with TLS is fine (client cannot bind).
        let mut server = ScramServer::new(verifier.clone(), None);
        exchange(
            &mut server,
            SCRAM_SHA_256,
            "pw",
            ChannelBinding::unrequested(),
        )
        .unwrap();
        let mut server = ScramServer::new(verifier.clone(), Some(cert_hash.clone()));
        exchange(
            &mut server,
            SCRAM_SHA_256,
            "pw",
            ChannelBinding::unsupported(),
        )
        .unwrap();

        // -PLUS is not offered without binding data; -PLUS with an 'n' header is refused;
        // binding data under the plain mechanism is refused.
        let mut server = ScramServer::new(verifier.clone(), None);
        let err = exchange(
            &mut server,
            SCRAM_SHA_256_PLUS,
            "pw",
            ChannelBinding::tls_server_end_point(cert_hash.clone()),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::UnsupportedMechanism(_)), "{err:?}");
        let mut server = ScramServer::new(verifier.clone(), Some(cert_hash.clone()));
        let err = exchange(
            &mut server,
            SCRAM_SHA_256_PLUS,
            "pw",
            ChannelBinding::unsupported(),
        )
        .unwrap_err();
        assert!(
            matches!(err, AuthError::MalformedScramMessage(_)),
            "{err:?}"
        );
        let mut server = ScramServer::new(verifier, Some(cert_hash.clone()));
        let err = exchange(
            &mut server,
            SCRAM_SHA_256,
            "pw",
            ChannelBinding::tls_server_end_point(cert_hash),
        )
        .unwrap_err();
        assert!(
            matches!(err, AuthError::MalformedScramMessage(_)),
            "{err:?}"
        );
    }

    #[test]
    fn client_first_parsing_follows_postgres() {
        let verifier = ScramVerifier::from_password("pw", 4096);
        let first = |mech: &str, msg: &str, binding: Option<Vec<u8>>| {
            ScramServer::new(verifier.clone(), binding).client_first(mech, msg.as_bytes())
        };
        let server_first =
            String::from_utf8(first(SCRAM_SHA_256, "n,,n=ignored,r=abc,x=ext", None).unwrap())
                .unwrap();
        assert!(server_first.starts_with("r=abc"), "{server_first}");
        assert!(server_first.ends_with(",i=4096"), "{server_first}");
        assert_eq!(
            server_first.len(),
            "r=abc".len() + 24 + ",s=".len() + 24 + ",i=4096".len()
        );

        // Refused as Postgres refuses them: unsupported features (0A000) ...
        for msg in ["n,a=bob,n=,r=abc", "n,,m=x,n=,r=abc"] {
            let err = first(SCRAM_SHA_256, msg, None).unwrap_err();
            assert!(
                matches!(err, AuthError::UnsupportedScramFeature(_)),
                "{msg}: {err:?}"
            );
        }
        // ... and malformed messages (08P01).
        let malformed = [
            "x,,n=,r=abc",
            "n,n=,r=abc",
            "n,,r=abc",
            "n,,n=,r=",
            "n,,n=,r=a\u{7f}c",
            "n,,n=,r=abc,1=x",
            "n,,n=,r=abc,x",
            "",
        ];
        for msg in malformed {
            let err = first(SCRAM_SHA_256, msg, None).unwrap_err();
            assert!(
                matches!(err, AuthError::MalformedScramMessage(_)),
                "{msg}: {err:?}"
            );
        }
        let err = first(SCRAM_SHA_256_PLUS, "p=tls-unique,,n=,r=abc", Some(vec![1])).unwrap_err();
        assert!(
            matches!(err, AuthError::MalformedScramMessage(_)),
            "{err:?}"
        );
        let err = first("SCRAM-SHA-1", "n,,n=,r=abc", None).unwrap_err();
        assert!(matches!(err, AuthError::UnsupportedMechanism(_)), "{err:?}");
        assert!(first(
            SCRAM_SHA_256_PLUS,
            "p=tls-server-end-point,,n=,r=abc",
            Some(vec![1])
        )
        .is_ok());
    }
}
