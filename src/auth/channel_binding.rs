//! `tls-server-end-point` channel-binding data (RFC 5929) for SCRAM-SHA-256-PLUS, computed
//! from a DER certificate: the proxy's own for clients, the upstream server's for upstream.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

/// The `tls-server-end-point` channel-binding data of a DER certificate (RFC 5929): its hash
/// with the hash function of the certificate's signature algorithm, SHA-256 when that is MD5
/// or SHA-1. `None` when the algorithm has no single hash (Ed25519, Ed448, RSA-PSS) or the
/// certificate cannot be read: Postgres cannot bind to those either, so do not offer `-PLUS`.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let hash = signature_hash(cert_der)?;
    Some(match hash {
        CertHash::Sha224 => Sha224::digest(cert_der).to_vec(),
        CertHash::Sha256 => Sha256::digest(cert_der).to_vec(),
        CertHash::Sha384 => Sha384::digest(cert_der).to_vec(),
        CertHash::Sha512 => Sha512::digest(cert_der).to_vec(),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum CertHash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Read one DER TLV at the start of `input`: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The hash of `Certificate.signatureAlgorithm` (the outer one, after tbsCertificate).
fn signature_hash(cert_der: &[u8]) -> Option<CertHash> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (tag, cert, _) = der_tlv(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _tbs, rest) = der_tlv(cert)?;
    let (tag, alg, _) = der_tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid, _) = der_tlv(alg)?;
    if tag != OID {
        return None;
    }
    const PKCS1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
    const DSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03];
    const NIST_SIG: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03];
    if let Some(last) = oid.strip_prefix(PKCS1) {
        return match last {
            [4] | [5] | [11] => Some(CertHash::Sha256), // md5, sha1, sha256 WithRSAEncryption
            [12] => Some(CertHash::Sha384),
            [13] => Some(CertHash::Sha512),
            [14] => Some(CertHash::Sha224),
            _ => None, // RSASSA-PSS and others
        };
    }
    if let Some(last) = oid.strip_prefix(ECDSA) {
        return match last {
            [1] | [3, 2] => Some(CertHash::Sha256), // ecdsa-with-SHA1, -SHA256
            [3, 1] => Some(CertHash::Sha224),
            [3, 3] => Some(CertHash::Sha384),
            [3, 4] => Some(CertHash::Sha512),
            _ => None,
        };
    }
    if oid == DSA_SHA1 {
        return Some(CertHash::Sha256);
    }
    if let Some(last) = oid.strip_prefix(NIST_SIG) {
        return match last {
            [1] => Some(CertHash::Sha224), // dsa-with-sha224
            [2] => Some(CertHash::Sha256), // dsa-with-sha256
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_server_end_point_uses_the_signature_hash() {
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let der = |key: &rcgen::KeyPair| params.self_signed(key).unwrap().der().to_vec();

        let c256 = der(&p256);
        assert_eq!(
            tls_server_end_point(&c256),
            Some(Sha256::digest(&c256).to_vec())
        );
        let c384 = der(&p384);
        assert_eq!(
            tls_server_end_point(&c384),
            Some(Sha384::digest(&c384).to_vec())
        );
        assert_eq!(tls_server_end_point(&der(&ed)), None);
        assert_eq!(tls_server_end_point(b"not a certificate"), None);
        assert_eq!(tls_server_end_point(&c256[..c256.len() / 2]), None);
    }
}
