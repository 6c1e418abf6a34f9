//! Heuristics for columns that look like personal data, by name or type, for `pgpurpose
//! check`'s warnings on untagged columns. A heuristic finds candidates for a DBA to look at;
//! it proves nothing either way (a column named `note` can hold a phone number).
//!
//! Names are split into words at `_`, digits and case changes; short or ambiguous words
//! (`ip`, `dob`, `zip`, `tel`) must be whole words, distinctive ones (`phone`, `email`,
//! `birth`) may be part of a word (`phone2fa`, `birthdate`).

/// A kind of personal data a column seems to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    Phone,
    Email,
    NetworkAddress,
    PostalAddress,
    BirthDate,
    GovernmentId,
    PersonName,
    Location,
    Credential,
    Financial,
    Device,
    SpecialCategory,
}

impl PiiKind {
    pub fn describe(self) -> &'static str {
        match self {
            PiiKind::Phone => "a phone number",
            PiiKind::Email => "an email address",
            PiiKind::NetworkAddress => "a network address",
            PiiKind::PostalAddress => "a postal address",
            PiiKind::BirthDate => "a date of birth",
            PiiKind::GovernmentId => "a government identifier",
            PiiKind::PersonName => "a person's name",
            PiiKind::Location => "a location",
            PiiKind::Credential => "a credential",
            PiiKind::Financial => "financial data",
            PiiKind::Device => "a device identifier",
            PiiKind::SpecialCategory => "special-category data",
        }
    }
}

/// Substrings that mark a kind wherever they appear in a word.
const PART_OF_WORD: &[(&str, PiiKind)] = &[
    ("phone", PiiKind::Phone),
    ("mobile", PiiKind::Phone),
    ("msisdn", PiiKind::Phone),
    ("email", PiiKind::Email),
    ("birth", PiiKind::BirthDate),
    ("ssn", PiiKind::GovernmentId),
    ("passport", PiiKind::GovernmentId),
    ("address", PiiKind::PostalAddress),
    ("street", PiiKind::PostalAddress),
    ("postcode", PiiKind::PostalAddress),
    ("postal", PiiKind::PostalAddress),
    ("latitude", PiiKind::Location),
    ("longitude", PiiKind::Location),
    ("geoloc", PiiKind::Location),
    ("password", PiiKind::Credential),
    ("passwd", PiiKind::Credential),
    ("iban", PiiKind::Financial),
    ("creditcard", PiiKind::Financial),
    ("surname", PiiKind::PersonName),
    ("firstname", PiiKind::PersonName),
    ("lastname", PiiKind::PersonName),
    ("fullname", PiiKind::PersonName),
    ("ethnic", PiiKind::SpecialCategory),
    ("religio", PiiKind::SpecialCategory),
    ("diagnos", PiiKind::SpecialCategory),
];

/// Whole words that mark a kind.
const WHOLE_WORDS: &[(&str, PiiKind)] = &[
    ("tel", PiiKind::Phone),
    ("mail", PiiKind::Email),
    ("ip", PiiKind::NetworkAddress),
    ("ipv4", PiiKind::NetworkAddress),
    ("ipv6", PiiKind::NetworkAddress),
    ("mac", PiiKind::NetworkAddress),
    ("dob", PiiKind::BirthDate),
    ("birthday", PiiKind::BirthDate),
    ("zip", PiiKind::PostalAddress),
    ("zipcode", PiiKind::PostalAddress),
    ("city", PiiKind::PostalAddress),
    ("nin", PiiKind::GovernmentId),
    ("tin", PiiKind::GovernmentId),
    ("lat", PiiKind::Location),
    ("lng", PiiKind::Location),
    ("lon", PiiKind::Location),
    ("gps", PiiKind::Location),
    ("geo", PiiKind::Location),
    ("location", PiiKind::Location),
    ("secret", PiiKind::Credential),
    ("token", PiiKind::Credential),
    ("card", PiiKind::Financial),
    ("salary", PiiKind::Financial),
    ("device", PiiKind::Device),
    ("imei", PiiKind::Device),
    ("idfa", PiiKind::Device),
    ("gender", PiiKind::SpecialCategory),
    ("health", PiiKind::SpecialCategory),
];

/// Word pairs that mark a kind (`first_name`, `national_id`, `user_agent`, `social_security`).
const WORD_PAIRS: &[(&str, &str, PiiKind)] = &[
    ("first", "name", PiiKind::PersonName),
    ("last", "name", PiiKind::PersonName),
    ("full", "name", PiiKind::PersonName),
    ("legal", "name", PiiKind::PersonName),
    ("national", "id", PiiKind::GovernmentId),
    ("tax", "id", PiiKind::GovernmentId),
    ("social", "security", PiiKind::GovernmentId),
    ("user", "agent", PiiKind::Device),
    ("account", "number", PiiKind::Financial),
];

/// Postgres types (as `format_type` prints them) that mark a kind whatever the name.
fn kind_of_type(type_name: &str) -> Option<PiiKind> {
    match type_name {
        "inet" | "cidr" | "macaddr" | "macaddr8" => Some(PiiKind::NetworkAddress),
        "point" | "geography" | "geometry" => Some(PiiKind::Location),
        _ => None,
    }
}

/// Split a column name into lower-case words at `_`, `-`, spaces, digits and camelCase.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        let boundary = !ch.is_alphabetic() || (ch.is_uppercase() && prev_lower);
        if boundary && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        if ch.is_alphabetic() {
            cur.extend(ch.to_lowercase());
        }
        prev_lower = ch.is_lowercase();
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The kind of personal data a column of this name and type seems to hold, if any.
pub fn classify(column: &str, type_name: &str) -> Option<PiiKind> {
    let ws = words(column);
    let joined: String = ws.concat();
    // Whole words first: `ip_address` is a network address, not a postal one.
    if let Some((_, kind)) = WHOLE_WORDS.iter().find(|(w, _)| ws.iter().any(|x| x == w)) {
        return Some(*kind);
    }
    if let Some((_, _, kind)) = WORD_PAIRS
        .iter()
        .find(|(a, b, _)| ws.windows(2).any(|p| p[0] == *a && p[1] == *b))
    {
        return Some(*kind);
    }
    if let Some((_, kind)) = PART_OF_WORD.iter().find(|(p, _)| joined.contains(p)) {
        return Some(*kind);
    }
    kind_of_type(type_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_that_look_personal() {
        let cases = [
            ("phone_2fa", "text", Some(PiiKind::Phone)),
            ("contactPhone", "text", Some(PiiKind::Phone)),
            ("email_login", "text", Some(PiiKind::Email)),
            ("client_ip", "text", Some(PiiKind::NetworkAddress)),
            ("ip_address", "text", Some(PiiKind::NetworkAddress)),
            ("seen_from", "inet", Some(PiiKind::NetworkAddress)),
            ("birth_year", "integer", Some(PiiKind::BirthDate)),
            ("dob", "date", Some(PiiKind::BirthDate)),
            ("ssn", "text", Some(PiiKind::GovernmentId)),
            ("home_address", "text", Some(PiiKind::PostalAddress)),
            ("first_name", "text", Some(PiiKind::PersonName)),
            ("user_agent", "text", Some(PiiKind::Device)),
            ("password_hash", "text", Some(PiiKind::Credential)),
        ];
        for (name, ty, want) in cases {
            assert_eq!(classify(name, ty), want, "{name} {ty}");
        }
    }

    #[test]
    fn ordinary_columns_are_not_flagged() {
        for (name, ty) in [
            ("id", "bigint"),
            ("handle", "text"),
            ("created_at", "timestamp with time zone"),
            ("zipped", "boolean"),
            ("description", "text"),
            ("clicked", "boolean"),
            ("shipping_method", "text"),
            ("latency_ms", "integer"),
            ("display_name", "text"),
        ] {
            assert_eq!(classify(name, ty), None, "{name} {ty}");
        }
    }
}
