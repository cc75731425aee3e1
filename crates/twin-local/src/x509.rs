//! Just enough X.509 reading for the broker: the subject's Common Name, which is the identity
//! mosquitto gives a client under `use_identity_as_username`.

use base64::Engine as _;

/// The DER bodies of every `CERTIFICATE` block in a PEM text.
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN CERTIFICATE") {
            body = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            if let Some(b) = body.take() {
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b) {
                    out.push(der);
                }
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    out
}

/// The subject Common Name of the first certificate in `pem`, if it has exactly one.
pub fn common_name(pem: &str) -> Option<String> {
    let der = pem_certificates(pem).into_iter().next()?;
    subject_common_name(&der)
}

/// One DER element: (tag, contents, rest).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
/// 2.5.4.3, id-at-commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

fn subject_common_name(der: &[u8]) -> Option<String> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serial, signature algorithm, issuer, validity, then subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (tag, mut subject, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut names = Vec::new();
    while !subject.is_empty() {
        let (tag, mut rdn, after) = element(subject)?;
        subject = after;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (_, atv, after) = element(rdn)?;
            rdn = after;
            let (tag, oid, value) = element(atv)?;
            if tag == OID && oid == CN_OID {
                let (_, text, _) = element(value)?;
                names.push(String::from_utf8(text.to_vec()).ok()?);
            }
        }
    }
    // Two CNs would make the identity ambiguous: no identity.
    match names.len() {
        1 => names.pop(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name_of_a_device_certificate() -> Result<(), String> {
        let (pem, _key) = twin_aws::l1::certificate::make_certificate("twin--dev-1")
            .map_err(|e| e.to_string())?;
        assert_eq!(common_name(&pem).as_deref(), Some("twin--dev-1"));
        assert_eq!(pem_certificates(&format!("{pem}\n{pem}")).len(), 2);
        Ok(())
    }

    #[test]
    fn garbage_has_no_common_name() {
        assert_eq!(common_name("not a certificate"), None);
        assert_eq!(
            common_name("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
            None
        );
    }
}
