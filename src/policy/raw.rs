//! The policy files as written: serde structs that mirror the YAML one to one.
//!
//! Everything here is strict on purpose. Every struct denies unknown fields, every map
//! rejects a key given twice (serde's own maps keep the last one silently), and credentials
//! can only be written as a SCRAM-SHA-256 verifier or a reference to an environment variable
//! or file, so a plain password cannot be expressed at all. Errors raised while deserializing
//! carry the line and column `serde_yaml` attaches to them. Cross-references (purposes named
//! by services, tags and row filters) are checked later by `policy::validate`.
//!
//! The format is documented key by key in `docs/policy-reference.md`.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// One policy file. Any subset of the sections may appear; files are merged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyFile {
    /// Purpose name (dotted) → its definition.
    #[serde(default)]
    pub purposes: Option<UniqueMap<RawPurpose>>,
    /// Service name (the startup `user` a client connects with) → its definition.
    #[serde(default)]
    pub services: Option<UniqueMap<RawService>>,
    /// Relation name (`schema.name`, or `name` for `public.name`) → tags and filters.
    #[serde(default)]
    pub tables: Option<UniqueMap<RawTable>>,
    /// Policy-wide defaults; at most one file may hold this section.
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPurpose {
    /// What the purpose means; required so a policy reads as a record of processing.
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    #[serde(default)]
    pub description: Option<String>,
    /// How the service proves its identity to the proxy.
    pub credential: RawCredential,
    /// The purposes the service is declared for (at least one).
    pub purposes: Vec<String>,
    /// The database role the proxy connects as on the service's behalf.
    pub upstream: RawUpstream,
    /// Extra abilities; none by default.
    #[serde(default)]
    pub grants: Vec<RawGrant>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub user: String,
    /// `null`/absent (the server does not ask: trust, peer, cert) or `{env: VAR}` / `{file: PATH}`.
    #[serde(default)]
    pub password: UpstreamPassword,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawGrant {
    Ddl,
    CopyFrom,
    ProceduralCode,
    SessionControl,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    /// Whole-relation tag: purposes allowed for every column not tagged on its own.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Column name → purposes allowed for it (must lie within the whole-relation tag, if any).
    #[serde(default)]
    pub columns: Option<UniqueMap<Vec<String>>>,
    /// Purpose → boolean SQL expression added to every scan of the relation by that purpose.
    #[serde(default)]
    pub row_filters: Option<UniqueMap<String>>,
    /// Overrides `defaults.output_action` for this relation.
    #[serde(default)]
    pub output_action: Option<RawOutputAction>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[serde(default)]
    pub untagged: RawUntagged,
    #[serde(default)]
    pub output_action: RawOutputAction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawUntagged {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOutputAction {
    #[default]
    Mask,
    Block,
}

/// A reference to a secret kept outside the policy: `{env: VAR}` or `{file: PATH}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawSecretRef {
    Env(String),
    File(String),
}

/// A service credential: a SCRAM-SHA-256 verifier string, or a reference to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCredential {
    /// Checked to have the verifier's shape while deserializing.
    ScramVerifier(String),
    Ref(RawSecretRef),
}

const CREDENTIAL_EXPECTED: &str =
    "a SCRAM-SHA-256 verifier string (see `pgpurpose hash-password`) or {env: VAR} / {file: PATH}";

impl<'de> Deserialize<'de> for RawCredential {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CredentialVisitor;

        impl<'de> Visitor<'de> for CredentialVisitor {
            type Value = RawCredential;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(CREDENTIAL_EXPECTED)
            }

            // The value is never echoed in these errors: it may be a password pasted by mistake.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                check_scram_verifier(v)
                    .map(|()| RawCredential::ScramVerifier(v.to_owned()))
                    .map_err(|why| E::custom(format!("credential {why}")))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawSecretRef::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawCredential::Ref)
            }

            fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
                RawSecretRef::deserialize(de::value::EnumAccessDeserializer::new(data))
                    .map(RawCredential::Ref)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "credential must be {CREDENTIAL_EXPECTED}"
                )))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "credential must be {CREDENTIAL_EXPECTED}"
                )))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "credential must be {CREDENTIAL_EXPECTED}"
                )))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "credential must be {CREDENTIAL_EXPECTED}"
                )))
            }
        }

        deserializer.deserialize_any(CredentialVisitor)
    }
}

/// The upstream role's password: absent, or a reference. A plain string is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamPassword(pub Option<RawSecretRef>);

const PASSWORD_EXPECTED: &str = "null, {env: VAR} or {file: PATH}";

impl<'de> Deserialize<'de> for UpstreamPassword {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PasswordVisitor;

        impl<'de> Visitor<'de> for PasswordVisitor {
            type Value = UpstreamPassword;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(PASSWORD_EXPECTED)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(UpstreamPassword(None))
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(UpstreamPassword(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawSecretRef::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|r| UpstreamPassword(Some(r)))
            }

            fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
                RawSecretRef::deserialize(de::value::EnumAccessDeserializer::new(data))
                    .map(|r| UpstreamPassword(Some(r)))
            }

            // Never echo the value: this is where a plain password would be pasted.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "a plain password is not accepted in a policy; use {PASSWORD_EXPECTED}"
                )))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Err(E::custom(format!("password must be {PASSWORD_EXPECTED}")))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "a plain password is not accepted in a policy; use {PASSWORD_EXPECTED}"
                )))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "a plain password is not accepted in a policy; use {PASSWORD_EXPECTED}"
                )))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "a plain password is not accepted in a policy; use {PASSWORD_EXPECTED}"
                )))
            }
        }

        deserializer.deserialize_any(PasswordVisitor)
    }
}

/// Check that `v` has the shape of a Postgres SCRAM-SHA-256 verifier,
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64, 32-byte keys).
/// The error says what is wrong without repeating the value.
pub fn check_scram_verifier(v: &str) -> Result<(), &'static str> {
    let rest = v.strip_prefix("SCRAM-SHA-256$").ok_or(
        "is not a SCRAM-SHA-256 verifier (it must start with `SCRAM-SHA-256$`); plain passwords \
         are not accepted in a policy: store `pgpurpose hash-password` output, or use \
         {env: VAR} / {file: PATH}",
    )?;
    let (iter_salt, keys) = rest
        .split_once('$')
        .ok_or("verifier lacks the `$StoredKey:ServerKey` part")?;
    let (iterations, salt) = iter_salt
        .split_once(':')
        .ok_or("verifier lacks the `iterations:salt` part")?;
    match iterations.parse::<u32>() {
        Ok(n) if n > 0 => {}
        _ => return Err("verifier iteration count is not a positive integer"),
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    match b64.decode(salt) {
        Ok(s) if !s.is_empty() => {}
        _ => return Err("verifier salt is not valid base64"),
    }
    let (stored, server) = keys
        .split_once(':')
        .ok_or("verifier lacks the `StoredKey:ServerKey` part")?;
    for key in [stored, server] {
        match b64.decode(key) {
            Ok(k) if k.len() == 32 => {}
            _ => return Err("verifier keys must be base64 of 32 bytes"),
        }
    }
    Ok(())
}

/// A string-keyed map that keeps the file's order and refuses a key given twice.
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueMap<V>(pub Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(Vec::new())
    }
}

impl<V> UniqueMap<V> {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueMapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMapVisitor<V> {
            type Value = UniqueMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }

        deserializer.deserialize_map(UniqueMapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$\
        AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    #[test]
    fn verifier_shape_is_checked() {
        assert_eq!(check_scram_verifier(VERIFIER), Ok(()));
        assert!(check_scram_verifier("auth-pass").is_err());
        assert!(check_scram_verifier("SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA").is_err());
        assert!(check_scram_verifier("SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA").is_err());
        assert!(check_scram_verifier("SCRAM-SHA-256$4096:!!$x:y").is_err());
    }

    #[test]
    fn credential_forms() {
        let c: RawCredential = serde_yaml::from_str(&format!("\"{VERIFIER}\"")).unwrap();
        assert_eq!(c, RawCredential::ScramVerifier(VERIFIER.to_owned()));
        let c: RawCredential = serde_yaml::from_str("{env: AUTH_VERIFIER}").unwrap();
        assert_eq!(
            c,
            RawCredential::Ref(RawSecretRef::Env("AUTH_VERIFIER".into()))
        );
        let c: RawCredential = serde_yaml::from_str("file: /run/secrets/v").unwrap();
        assert_eq!(
            c,
            RawCredential::Ref(RawSecretRef::File("/run/secrets/v".into()))
        );
    }

    #[test]
    fn plain_password_credential_is_refused_without_echo() {
        let err = serde_yaml::from_str::<RawCredential>("hunter2-secret")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plain passwords are not accepted"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = serde_yaml::from_str::<RawCredential>("123456")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("123456"), "{err}");
    }

    #[test]
    fn upstream_password_forms() {
        let u: RawUpstream = serde_yaml::from_str("user: app\npassword: null").unwrap();
        assert_eq!(u.password, UpstreamPassword(None));
        let u: RawUpstream = serde_yaml::from_str("user: app").unwrap();
        assert_eq!(u.password, UpstreamPassword(None));
        let u: RawUpstream = serde_yaml::from_str("user: app\npassword: {env: PW}").unwrap();
        assert_eq!(
            u.password,
            UpstreamPassword(Some(RawSecretRef::Env("PW".into())))
        );
        let err = serde_yaml::from_str::<RawUpstream>("user: app\npassword: s3cr3t-pw")
            .unwrap_err()
            .to_string();
        assert!(err.contains("plain password is not accepted"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(
            serde_yaml::from_str::<RawUpstream>("user: a\npassword: {env: A, file: B}").is_err()
        );
        assert!(serde_yaml::from_str::<RawUpstream>("user: a\npassword: {vault: A}").is_err());
    }

    #[test]
    fn unique_map_refuses_duplicates() {
        let m: UniqueMap<u32> = serde_yaml::from_str("b: 1\na: 2").unwrap();
        assert_eq!(m.0, vec![("b".to_owned(), 1), ("a".to_owned(), 2)]);
        let err = serde_yaml::from_str::<UniqueMap<u32>>("a: 1\nb: 2\na: 3").unwrap_err();
        assert!(err.to_string().contains("duplicate key `a`"), "{err}");
        // serde_yaml points at the start of the mapping; `policy::load`'s pre-pass names the
        // exact line of both occurrences.
        assert!(err.location().is_some(), "{err}");
    }

    #[test]
    fn struct_denies_unknown_and_duplicate_fields() {
        let err = serde_yaml::from_str::<RawUpstream>("user: a\npasword: {env: X}").unwrap_err();
        assert!(err.to_string().contains("unknown field `pasword`"), "{err}");
        let err = serde_yaml::from_str::<RawUpstream>("user: a\nuser: b").unwrap_err();
        assert!(err.to_string().contains("duplicate field `user`"), "{err}");
    }
}
