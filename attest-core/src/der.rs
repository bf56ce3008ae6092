//! The few DER rules a verifier needs to check an X.509 signature over the
//! exact bytes it received: one element at a time, and a `SIGNED{...}`
//! structure (certificate, CRL) split into the signed bytes, the algorithm
//! and the signature. Semantic parsing stays with `x509-cert`; this only
//! locates bytes, so the signature is never checked over a re-encoding.

use crate::reader::Reader;
use crate::{AttestError, Malformed};

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

fn bad(what: &str, expected: &str, found: String) -> AttestError {
    Malformed::BadValue {
        what: what.into(),
        expected: expected.into(),
        found,
    }
    .into()
}

/// Reads one DER element: definite, minimal lengths of at most 4 bytes.
pub fn tlv<'a>(r: &mut Reader<'a>) -> Result<Tlv<'a>, AttestError> {
    let start = r.rest();
    let tag = r.u8("DER tag")?;
    if tag & 0x1f == 0x1f {
        return Err(bad(
            "DER tag",
            "a single-byte tag",
            format!("{tag:#04x} (a multi-byte tag)"),
        ));
    }
    let first = r.u8("DER length")?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let bytes = r.take(n, "DER length")?;
            if bytes[0] == 0 {
                return Err(bad(
                    "DER length",
                    "a minimal length",
                    "a leading zero byte".into(),
                ));
            }
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err(bad(
                    "DER length",
                    "a minimal length",
                    format!("{len} in the long form"),
                ));
            }
            len
        }
        _ => {
            return Err(bad(
                "DER length",
                "a definite length of at most 4 bytes",
                format!("length byte {first:#04x}"),
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
    let what = "signed DER structure";
    let mut outer = Reader::new(der, "signed DER structure");
    let seq = tlv(&mut outer)?;
    outer.finish()?;
    if seq.tag != 0x30 {
        return Err(bad(what, "a SEQUENCE", format!("tag {:#04x}", seq.tag)));
    }
    let mut r = Reader::new(seq.contents, "signed DER structure");
    let tbs = tlv(&mut r)?;
    let alg = tlv(&mut r)?;
    let sig = tlv(&mut r)?;
    r.finish()?;
    if tbs.tag != 0x30 || alg.tag != 0x30 || sig.tag != 0x03 {
        return Err(bad(
            what,
            "SEQUENCE, AlgorithmIdentifier, BIT STRING",
            format!("tags {:#04x}, {:#04x}, {:#04x}", tbs.tag, alg.tag, sig.tag),
        ));
    }
    let mut a = Reader::new(alg.contents, "signature algorithm");
    let oid = tlv(&mut a)?;
    if oid.tag != 0x06 {
        return Err(bad(
            "signature algorithm",
            "an OID",
            format!("tag {:#04x}", oid.tag),
        ));
    }
    let parameters = a.rest();
    let signature = match sig.contents.split_first() {
        Some((0, s)) => s,
        _ => {
            return Err(bad(
                "signature BIT STRING",
                "no unused bits",
                format!("{:?} unused bits", sig.contents.first()),
            ));
        }
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

    fn is_bad_length(r: Result<Tlv<'_>, AttestError>) -> bool {
        matches!(
            r.unwrap_err().malformed(),
            Some(Malformed::BadValue { what, .. }) if what == "DER length"
        )
    }

    #[test]
    fn lengths_are_minimal_and_bounded() {
        let mut r = Reader::new(&[0x30, 0x81, 0x05, 1, 2, 3, 4, 5], "t");
        assert!(
            tlv(&mut r).unwrap_err().malformed().is_some_and(
                |m| matches!(m, Malformed::BadValue { what, .. } if what == "DER length")
            ),
            "0x81 with a short length"
        );
        let mut r = Reader::new(&[0x30, 0x03, 1, 2, 3], "t");
        let t = tlv(&mut r).unwrap();
        assert_eq!(
            (t.tag, t.whole.len(), t.contents),
            (0x30, 5, &[1u8, 2, 3][..])
        );
        let mut r = Reader::new(&[0x30, 0x85, 0, 0, 0, 0, 1, 0], "t");
        assert!(is_bad_length(tlv(&mut r)));
        let mut r = Reader::new(&[0x30, 0x80], "t");
        assert!(is_bad_length(tlv(&mut r)), "indefinite length");
        let mut r = Reader::new(&[0x30, 0x82, 0x00, 0x90], "t");
        assert!(is_bad_length(tlv(&mut r)), "leading zero length byte");
        let mut r = Reader::new(&[0x30, 0x05, 1], "t");
        assert!(
            tlv(&mut r)
                .unwrap_err()
                .malformed()
                .is_some_and(Malformed::is_truncated)
        );
        let mut r = Reader::new(&[0x1f, 0x01, 0], "t");
        assert!(matches!(
            tlv(&mut r).unwrap_err().malformed(),
            Some(Malformed::BadValue { what, .. }) if what == "DER tag"
        ));
    }

    #[test]
    fn long_form_lengths_are_read_big_endian() {
        for (header, len) in [
            (&[0x04, 0x81, 0x80][..], 0x80usize),
            (&[0x04, 0x81, 0xff][..], 0xff),
            (&[0x04, 0x82, 0x01, 0x00][..], 0x100),
            (&[0x04, 0x82, 0x01, 0x02][..], 0x102),
            (&[0x04, 0x83, 0x01, 0x00, 0x01][..], 0x10001),
            (&[0x04, 0x84, 0x00, 0x01, 0x00, 0x00][..], 0),
        ] {
            let mut der = header.to_vec();
            der.resize(header.len() + len, 0xab);
            der.push(0x05);
            let mut r = Reader::new(&der, "t");
            let t = tlv(&mut r);
            if len == 0 {
                assert!(is_bad_length(t), "leading zero in a 4-byte length");
                continue;
            }
            let t = t.unwrap();
            assert_eq!(t.contents.len(), len, "{header:02x?}");
            assert_eq!(t.whole.len(), header.len() + len);
            assert_eq!(r.remaining(), 1, "the next element starts after it");
        }
        // 0x7f in the long form is not minimal; 0x80 is the first that needs it.
        let mut r = Reader::new(&[0x04, 0x81, 0x7f], "t");
        assert!(is_bad_length(tlv(&mut r)));
    }

    #[test]
    fn a_signed_structure_needs_each_of_its_three_tags() {
        // SEQUENCE { SEQUENCE {1}, SEQUENCE { OID 1.2, NULL }, BIT STRING 0 ab }
        let good = [
            0x30, 0x0e, 0x30, 0x01, 0x01, 0x30, 0x05, 0x06, 0x01, 0x2a, 0x05, 0x00, 0x03, 0x02,
            0x00, 0xab,
        ];
        for (at, tag) in [(0, 0x31), (2, 0x31), (5, 0x31), (12, 0x04)] {
            let mut der = good;
            der[at] = tag;
            assert!(
                matches!(
                    split_signed(&der).unwrap_err().malformed(),
                    Some(Malformed::BadValue { what, .. }) if what == "signed DER structure"
                ),
                "tag {tag:#04x} at {at}"
            );
        }
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
        assert!(matches!(
            split_signed(&trailing).unwrap_err().malformed(),
            Some(Malformed::TrailingData { extra: 1, .. })
        ));
        for cut in 0..der.len() {
            let e = split_signed(&der[..cut]).unwrap_err();
            assert!(
                e.malformed().is_some_and(Malformed::is_truncated),
                "cut at {cut}: {e}"
            );
        }
    }
}
