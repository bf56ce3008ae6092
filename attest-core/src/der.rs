//! The few DER rules a verifier needs to check an X.509 signature over the
//! exact bytes it received: one element at a time, and a `SIGNED{...}`
//! structure (certificate, CRL) split into the signed bytes, the algorithm
//! and the signature. Semantic parsing stays with `x509-cert`; this only
//! locates bytes, so the signature is never checked over a re-encoding.

use crate::AttestError;
use crate::reader::Reader;

/// One DER element: its tag, the whole element and its contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag byte (single-byte tags only).
    pub tag: u8,
    /// The element, header included.
    pub whole: &'a [u8],
    /// The contents.
    pub contents: &'a [u8],
}

/// Reads one DER element: definite, minimal lengths of at most 4 bytes.
pub fn tlv<'a>(r: &mut Reader<'a>) -> Result<Tlv<'a>, AttestError> {
    let start = r.rest();
    let tag = r.u8("DER tag")?;
    if tag & 0x1f == 0x1f {
        return Err(AttestError::Malformed(
            "multi-byte DER tags are not used here".into(),
        ));
    }
    let first = r.u8("DER length")?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let bytes = r.take(n, "DER length")?;
            if bytes[0] == 0 {
                return Err(AttestError::Malformed("non-minimal DER length".into()));
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err(AttestError::Malformed("non-minimal DER length".into()));
            }
            len
        }
        _ => {
            return Err(AttestError::Malformed(
                "indefinite or oversized DER length".into(),
            ));
        }
    };
    let header = start.len() - r.remaining();
    let contents = r.take(len, "DER contents")?;
    Ok(Tlv {
        tag,
        whole: &start[..header + len],
        contents,
    })
}

/// A `SIGNED{...}` structure: `SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }`.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    /// The signed element, exactly as received.
    pub tbs: &'a [u8],
    /// The algorithm OID's contents.
    pub algorithm: &'a [u8],
    /// The algorithm's parameters (the elements after the OID), if any.
    pub parameters: &'a [u8],
    /// The signature bits (no unused bits allowed).
    pub signature: &'a [u8],
}

/// Splits a certificate or CRL (DER) into its signed bytes, algorithm and
/// signature. The whole input must be the one structure.
pub fn split_signed(der: &[u8]) -> Result<Signed<'_>, AttestError> {
    let bad = |m: &str| AttestError::Malformed(format!("signed DER structure: {m}"));
    let mut outer = Reader::new(der, "signed DER structure");
    let seq = tlv(&mut outer)?;
    outer.finish()?;
    if seq.tag != 0x30 {
        return Err(bad("not a SEQUENCE"));
    }
    let mut r = Reader::new(seq.contents, "signed DER structure");
    let tbs = tlv(&mut r)?;
    let alg = tlv(&mut r)?;
    let sig = tlv(&mut r)?;
    r.finish()?;
    if tbs.tag != 0x30 || alg.tag != 0x30 || sig.tag != 0x03 {
        return Err(bad("expected SEQUENCE, AlgorithmIdentifier, BIT STRING"));
    }
    let mut a = Reader::new(alg.contents, "signature algorithm");
    let oid = tlv(&mut a)?;
    if oid.tag != 0x06 {
        return Err(bad("the algorithm is not an OID"));
    }
    let parameters = a.rest();
    let signature = match sig.contents.split_first() {
        Some((0, s)) => s,
        _ => return Err(bad("the signature has unused bits")),
    };
    Ok(Signed {
        tbs: tbs.whole,
        algorithm: oid.contents,
        parameters,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_minimal_and_bounded() {
        let mut r = Reader::new(&[0x30, 0x81, 0x05, 1, 2, 3, 4, 5], "t");
        assert!(tlv(&mut r).is_err(), "0x81 with a short length");
        let mut r = Reader::new(&[0x30, 0x03, 1, 2, 3], "t");
        let t = tlv(&mut r).unwrap();
        assert_eq!(
            (t.tag, t.whole.len(), t.contents),
            (0x30, 5, &[1u8, 2, 3][..])
        );
        let mut r = Reader::new(&[0x30, 0x85, 0, 0, 0, 0, 1, 0], "t");
        assert!(tlv(&mut r).is_err());
        let mut r = Reader::new(&[0x30, 0x80], "t");
        assert!(tlv(&mut r).is_err(), "indefinite length");
        let mut r = Reader::new(&[0x30, 0x82, 0x00, 0x90], "t");
        assert!(tlv(&mut r).is_err(), "leading zero length byte");
        let mut r = Reader::new(&[0x30, 0x05, 1], "t");
        assert_eq!(tlv(&mut r).unwrap_err().kind(), crate::ErrorKind::Malformed);
    }

    #[test]
    fn splits_a_signed_structure() {
        // SEQUENCE { SEQUENCE {1}, SEQUENCE { OID 1.2, NULL }, BIT STRING 0 ab }
        let der = [
            0x30, 0x0e, 0x30, 0x01, 0x01, 0x30, 0x05, 0x06, 0x01, 0x2a, 0x05, 0x00, 0x03, 0x02,
            0x00, 0xab,
        ];
        let s = split_signed(&der).unwrap();
        assert_eq!(s.tbs, &[0x30, 0x01, 0x01]);
        assert_eq!(s.algorithm, &[0x2a]);
        assert_eq!(s.parameters, &[0x05, 0x00]);
        assert_eq!(s.signature, &[0xab]);
        let mut trailing = der.to_vec();
        trailing.push(0);
        assert!(split_signed(&trailing).is_err());
        for cut in 0..der.len() {
            assert!(split_signed(&der[..cut]).is_err(), "cut at {cut}");
        }
    }
}
