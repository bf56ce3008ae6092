//! SCALE (parity-scale-codec) primitives, hand-written over the one
//! [`Reader`].
//!
//! dstack encodes its V0 attestation and its CSRs with parity-scale-codec's
//! derives. Only a handful of shapes occur: compact lengths, `Vec<u8>`,
//! `String`, `bool`, `Option<T>`, fixed integers and arrays. Decoding them by
//! hand keeps the codec's allocation behaviour in our hands: every length is
//! checked against the bytes that are actually left before anything is
//! allocated, so a 4-byte compact length of 2^30 costs nothing.
//!
//! Errors name the structure, the field and the absolute offset.

use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed};

/// A SCALE decoder: a [`Reader`] plus the name of what is being decoded.
#[derive(Clone, Debug)]
pub struct Scale<'a> {
    r: Reader<'a>,
    context: &'static str,
}

impl<'a> Scale<'a> {
    /// A decoder over `buf`; `context` names the structure in errors.
    pub fn new(buf: &'a [u8], context: &'static str) -> Self {
        Scale {
            r: Reader::new(buf, context),
            context,
        }
    }

    /// The offset of the next byte.
    pub fn position(&self) -> usize {
        self.r.position()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.r.remaining()
    }

    /// Consumes and returns every unread byte.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let n = self.r.remaining();
        // Taking exactly what is left cannot fail.
        self.r.take(n, "rest").unwrap_or_default()
    }

    /// A `Malformed` error about `what` at the current offset.
    pub fn error(&self, what: &str, problem: impl std::fmt::Display) -> AttestError {
        Malformed::BadField {
            context: self.context,
            field: what.into(),
            offset: self.r.position(),
            problem: problem.to_string(),
        }
        .into()
    }

    /// A [`Malformed::WrongValueAt`] about `what` at the current offset.
    pub fn wrong_value(
        &self,
        what: &str,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> AttestError {
        Malformed::WrongValueAt {
            context: self.context,
            field: what.into(),
            offset: self.r.position(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
        .into()
    }

    /// A [`Malformed::FieldLength`] about `what` at the current offset: a
    /// value (`name`) of `expected` bytes that has `found`.
    pub fn field_length(
        &self,
        what: &str,
        name: &'static str,
        expected: usize,
        found: usize,
    ) -> AttestError {
        Malformed::FieldLength {
            context: self.context,
            field: what.into(),
            offset: self.r.position(),
            name,
            expected,
            found,
        }
        .into()
    }

    /// Ends the decode: every byte must have been read.
    pub fn finish(self) -> Result<(), AttestError> {
        self.r.finish()
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, AttestError> {
        self.r.u8(what)
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, AttestError> {
        self.r.u32_le(what)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, AttestError> {
        self.r.u64_le(what)
    }

    /// A fixed array (`[u8; N]` has no length prefix).
    pub fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AttestError> {
        self.r.take_array(what)
    }

    /// A `bool`: exactly `0x00` or `0x01`, as parity-scale-codec requires.
    pub fn bool(&mut self, what: &str) -> Result<bool, AttestError> {
        let at = self.clone();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(at.error(what, format_args!("bool byte {b:#04x} is neither 0 nor 1"))),
        }
    }

    /// A `Compact<u32>`, canonical form only.
    ///
    /// The two low bits of the first byte select the mode: `00` one byte
    /// (0..=63), `01` two bytes (64..=2^14-1), `10` four bytes
    /// (2^14..=2^30-1), `11` a 4-byte little-endian value after the mode
    /// byte (2^30..=2^32-1; the mode byte's upper six bits must be zero for a
    /// `u32`). A value encoded in a wider mode than it needs is rejected, as
    /// parity-scale-codec rejects it: one value, one encoding.
    pub fn compact_u32(&mut self, what: &str) -> Result<u32, AttestError> {
        let at = self.clone();
        let first = self.u8(what)?;
        let non_canonical = || -> AttestError {
            Malformed::NonCanonicalInteger {
                context: at.context,
                field: what.into(),
                offset: at.position(),
            }
            .into()
        };
        match first & 0b11 {
            0b00 => Ok(u32::from(first >> 2)),
            0b01 => {
                let second = self.u8(what)?;
                let v = u32::from(u16::from_le_bytes([first, second]) >> 2);
                if v < 1 << 6 {
                    return Err(non_canonical());
                }
                Ok(v)
            }
            0b10 => {
                let rest = self.array::<3>(what)?;
                let [a, b, c] = rest;
                let v = u32::from_le_bytes([first, a, b, c]) >> 2;
                if v < 1 << 14 {
                    return Err(non_canonical());
                }
                Ok(v)
            }
            _ => {
                if first >> 2 != 0 {
                    return Err(at.error(
                        what,
                        format_args!(
                            "compact integer of {} bytes does not fit a u32",
                            u32::from(first >> 2) + 4
                        ),
                    ));
                }
                let v = self.u32(what)?;
                if v < 1 << 30 {
                    return Err(non_canonical());
                }
                Ok(v)
            }
        }
    }

    /// A compact element count for a vector whose elements take at least
    /// `min_elem_len` bytes each (at least 1), and of which at most `max`
    /// are accepted. The count is refused before anything is allocated when
    /// the bytes left cannot hold it.
    pub fn count(
        &mut self,
        what: &str,
        min_elem_len: usize,
        max: usize,
    ) -> Result<usize, AttestError> {
        let at = self.clone();
        let n = self.compact_u32(what)?;
        let n = usize::try_from(n).map_err(|_| at.error(what, "length does not fit in memory"))?;
        if n > max {
            return Err(Malformed::FieldTooLarge {
                context: self.context,
                field: what.into(),
                offset: at.position(),
                size: n,
                unit: "elements",
                max,
            }
            .into());
        }
        let needed = n.checked_mul(min_elem_len.max(1));
        if needed.is_none_or(|needed| needed > self.remaining()) {
            return Err(Malformed::CountPastEnd {
                context: self.context,
                field: what.into(),
                offset: at.position(),
                count: n,
                available: self.remaining(),
            }
            .into());
        }
        Ok(n)
    }

    /// A `Vec<u8>`: compact length, then the bytes (borrowed).
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], AttestError> {
        let n = self.count(what, 1, usize::MAX)?;
        self.r.take(n, what)
    }

    /// A `String`: like `Vec<u8>`, and valid UTF-8; at most `max` bytes.
    pub fn string(&mut self, what: &str, max: usize) -> Result<String, AttestError> {
        let at = self.clone();
        let b = self.bytes(what)?;
        if b.len() > max {
            return Err(Malformed::FieldTooLarge {
                context: self.context,
                field: what.into(),
                offset: at.position(),
                size: b.len(),
                unit: "bytes",
                max,
            }
            .into());
        }
        std::str::from_utf8(b).map(str::to_owned).map_err(|e| {
            Malformed::NotUtf8 {
                context: at.context,
                field: what.into(),
                offset: at.position(),
                detail: e.to_string(),
            }
            .into()
        })
    }

    /// An `Option<T>`: `0x00` for `None`, `0x01` then the value for `Some`.
    pub fn option<T>(
        &mut self,
        what: &str,
        value: impl FnOnce(&mut Self) -> Result<T, AttestError>,
    ) -> Result<Option<T>, AttestError> {
        let at = self.clone();
        match self.u8(what)? {
            0 => Ok(None),
            1 => value(self).map(Some),
            b => Err(at.error(what, format_args!("Option tag {b:#04x} is neither 0 nor 1"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parity_scale_codec::{Compact, Encode};

    fn compact(bytes: &[u8]) -> Result<u32, AttestError> {
        let mut s = Scale::new(bytes, "t");
        let v = s.compact_u32("n")?;
        s.finish()?;
        Ok(v)
    }

    #[test]
    fn compact_agrees_with_parity_scale_codec() {
        let mut values: Vec<u32> = (0..300).collect();
        for shift in 0..32 {
            let p = 1u32 << shift;
            values.extend([p - 1, p, p.saturating_add(1)]);
        }
        values.push(u32::MAX);
        for v in values {
            let enc = Compact(v).encode();
            assert_eq!(compact(&enc).unwrap(), v, "{v}: {enc:02x?}");
        }
    }

    #[test]
    fn compact_rejects_non_canonical_and_oversized_forms() {
        for bad in [
            &[0x05, 0x00][..],               // 1 in two-byte mode
            &[0xfd, 0x00],                   // 63 in two-byte mode
            &[0x02, 0x01, 0x00, 0x00],       // 64 in four-byte mode
            &[0xfe, 0xff, 0x00, 0x00],       // 2^14-1 in four-byte mode
            &[0x03, 0xff, 0xff, 0xff, 0x3f], // 2^30-1 in big mode
            &[0x07, 0, 0, 0, 0, 1],          // a 5-byte big integer
            &[0x01],                         // truncated
            &[0x03, 0, 0, 0],                // truncated
        ] {
            let err = compact(bad).unwrap_err();
            assert_eq!(err.kind(), attest_core::ErrorKind::Malformed, "{bad:02x?}");
        }
        assert_eq!(
            compact(&[0x05, 0x00]).unwrap_err().to_string(),
            "malformed: t: n at offset 0: non-canonical compact integer"
        );
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left() {
        // 2^30 in big mode, then 3 bytes.
        let mut s = Scale::new(&[0x03, 0, 0, 0, 0x40, 1, 2, 3], "t");
        assert_eq!(
            s.bytes("quote").unwrap_err().to_string(),
            "malformed: t: quote at offset 0: 1073741824 elements cannot fit in the 3 bytes left"
        );
        let mut s = Scale::new(&[0x0c, 1, 2, 3], "t");
        assert!(s.clone().count("v", 2, 10).is_err());
        assert!(s.clone().count("v", 1, 2).is_err());
        assert_eq!(s.bytes("v").unwrap(), &[1, 2, 3]);
    }

    #[test]
    fn bool_option_and_string() {
        let mut s = Scale::new(&[1, 0, 2], "t");
        assert!(s.bool("a").unwrap());
        assert!(!s.bool("b").unwrap());
        assert_eq!(
            s.bool("c").unwrap_err().to_string(),
            "malformed: t: c at offset 2: bool byte 0x02 is neither 0 nor 1"
        );
        let enc = (Some(7u64), None::<u64>, "hé".to_string()).encode();
        let mut s = Scale::new(&enc, "t");
        assert_eq!(s.option("x", |s| s.u64("x")).unwrap(), Some(7));
        assert_eq!(s.option("y", |s| s.u64("y")).unwrap(), None);
        assert_eq!(s.string("z", 3).unwrap(), "hé");
        s.finish().unwrap();
        let mut s = Scale::new(&[0x08, 0xff, 0xfe], "t");
        assert!(
            s.clone()
                .string("z", 10)
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
        assert!(s.string("z", 1).is_err());
        let mut s = Scale::new(&[2], "t");
        assert!(s.option("o", |s| s.u8("o")).is_err());
    }
}
