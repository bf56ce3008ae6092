//! The msgpack subset dstack's V1 attestation uses, decoded by hand over the
//! one [`Reader`].
//!
//! V1 is written by `rmp_serde::to_vec_named`: maps with string keys, strings,
//! unsigned integers, `nil` for `None`, and bytes either as `bin` or (for a
//! plain `Vec<u8>`) as an array of small integers. The decoder is driven by
//! the schema in `v1.rs`: it reads the value it expects and skips, without
//! recursion and without allocating, any value under a key it does not know.
//! Every length is checked against the bytes left before it is used, so a
//! `bin32` or `array32` header claiming 4 GiB is refused at once.
//!
//! All multi-byte integers are big-endian (the msgpack specification).

use std::borrow::Cow;

use attest_core::reader::Reader;
use attest_core::{AttestError, Malformed};

/// Name of the structure in error messages.
const CONTEXT: &str = "dstack attestation (V1 msgpack)";

/// A msgpack pull decoder. Cloning it saves a position (offsets in errors
/// stay absolute, which a sub-slice reader would lose).
#[derive(Clone, Debug)]
pub(crate) struct Msgpack<'a> {
    r: Reader<'a>,
}

/// The head of a value: its type and, for containers and byte strings, its
/// declared length.
enum Head {
    Nil,
    Bool,
    UInt(u64),
    NegInt,
    Float,
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
    Ext(usize),
}

impl Head {
    fn name(&self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool => "a boolean",
            Head::UInt(_) => "an integer",
            Head::NegInt => "a negative integer",
            Head::Float => "a float",
            Head::Str(_) => "a string",
            Head::Bin(_) => "bin",
            Head::Array(_) => "an array",
            Head::Map(_) => "a map",
            Head::Ext(_) => "an ext value",
        }
    }
}

impl<'a> Msgpack<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Msgpack {
            r: Reader::new(buf, CONTEXT),
        }
    }

    /// A `Malformed` error about `what` at the current offset.
    pub(crate) fn error(&self, what: &str, problem: impl std::fmt::Display) -> AttestError {
        Malformed::BadField {
            context: CONTEXT,
            field: what.into(),
            offset: self.r.position(),
            problem: problem.to_string(),
        }
        .into()
    }

    /// A [`Malformed::WrongType`] about `what` at the current offset.
    fn wrong_type(&self, what: &str, expected: &'static str, found: &Head) -> AttestError {
        Malformed::WrongType {
            context: CONTEXT,
            field: what.into(),
            offset: self.r.position(),
            expected,
            found: found.name(),
        }
        .into()
    }

    /// A [`Malformed::MissingKey`] about the map `what` at the current
    /// offset.
    pub(crate) fn missing_key(&self, what: &str, key: &str) -> AttestError {
        Malformed::MissingKey {
            context: CONTEXT,
            field: what.into(),
            offset: self.r.position(),
            key: key.into(),
        }
        .into()
    }

    /// A [`Malformed::WrongValueAt`] about `what` at the current offset.
    pub(crate) fn wrong_value(
        &self,
        what: &str,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> AttestError {
        Malformed::WrongValueAt {
            context: CONTEXT,
            field: what.into(),
            offset: self.r.position(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
        .into()
    }

    /// A [`Malformed::FieldLength`] about `what` at the current offset: a
    /// value (`name`) of `expected` bytes that has `found`.
    pub(crate) fn field_length(
        &self,
        what: &str,
        name: &'static str,
        expected: usize,
        found: usize,
    ) -> AttestError {
        Malformed::FieldLength {
            context: CONTEXT,
            field: what.into(),
            offset: self.r.position(),
            name,
            expected,
            found,
        }
        .into()
    }

    /// Ends the decode: every byte must have been read.
    pub(crate) fn finish(self) -> Result<(), AttestError> {
        self.r.finish()
    }

    fn len_u8(&mut self, what: &str) -> Result<usize, AttestError> {
        self.r.u8(what).map(usize::from)
    }

    fn len_u16(&mut self, what: &str) -> Result<usize, AttestError> {
        self.r.u16_be(what).map(usize::from)
    }

    fn len_u32(&mut self, what: &str) -> Result<usize, AttestError> {
        let v = self.r.u32_be(what)?;
        usize::try_from(v).map_err(|_| self.error(what, "length does not fit in memory"))
    }

    /// Reads a value's head (type byte and length or scalar).
    fn head(&mut self, what: &str) -> Result<Head, AttestError> {
        let at = self.clone();
        let b = self.r.u8(what)?;
        Ok(match b {
            0x00..=0x7f => Head::UInt(u64::from(b)),
            0x80..=0x8f => Head::Map(usize::from(b & 0x0f)),
            0x90..=0x9f => Head::Array(usize::from(b & 0x0f)),
            0xa0..=0xbf => Head::Str(usize::from(b & 0x1f)),
            0xc0 => Head::Nil,
            0xc1 => return Err(at.error(what, "type byte 0xc1 is never used")),
            0xc2 | 0xc3 => Head::Bool,
            0xc4 => Head::Bin(self.len_u8(what)?),
            0xc5 => Head::Bin(self.len_u16(what)?),
            0xc6 => Head::Bin(self.len_u32(what)?),
            // ext: length, then a type byte, then the data.
            0xc7 => Head::Ext(self.len_u8(what)?.saturating_add(1)),
            0xc8 => Head::Ext(self.len_u16(what)?.saturating_add(1)),
            0xc9 => Head::Ext(self.len_u32(what)?.saturating_add(1)),
            0xca => {
                self.r.skip(4, what)?;
                Head::Float
            }
            0xcb => {
                self.r.skip(8, what)?;
                Head::Float
            }
            0xcc => Head::UInt(u64::from(self.r.u8(what)?)),
            0xcd => Head::UInt(u64::from(self.r.u16_be(what)?)),
            0xce => Head::UInt(u64::from(self.r.u32_be(what)?)),
            0xcf => Head::UInt(self.r.u64_be(what)?),
            // Signed encodings: serde writers may use them for a
            // non-negative value; the value decides.
            0xd0 => signed(i64::from(self.r.u8(what)? as i8)),
            0xd1 => signed(i64::from(self.r.u16_be(what)? as i16)),
            0xd2 => signed(i64::from(self.r.u32_be(what)? as i32)),
            0xd3 => signed(self.r.u64_be(what)? as i64),
            0xd4 => Head::Ext(2),
            0xd5 => Head::Ext(3),
            0xd6 => Head::Ext(5),
            0xd7 => Head::Ext(9),
            0xd8 => Head::Ext(17),
            0xd9 => Head::Str(self.len_u8(what)?),
            0xda => Head::Str(self.len_u16(what)?),
            0xdb => Head::Str(self.len_u32(what)?),
            0xdc => Head::Array(self.len_u16(what)?),
            0xdd => Head::Array(self.len_u32(what)?),
            0xde => Head::Map(self.len_u16(what)?),
            0xdf => Head::Map(self.len_u32(what)?),
            0xe0..=0xff => Head::NegInt,
        })
    }

    /// Whether the next value is `nil` (consumed if so).
    pub(crate) fn nil(&mut self) -> bool {
        if self.r.rest().first() == Some(&0xc0) {
            // The byte is there: skipping it cannot fail.
            let _ = self.r.skip(1, "nil");
            true
        } else {
            false
        }
    }

    /// Refuses a container of `n` elements, each at least one byte, that the
    /// bytes left cannot hold.
    fn check_fits(&self, at: &Self, what: &str, n: usize, per: usize) -> Result<(), AttestError> {
        if n.checked_mul(per)
            .is_none_or(|need| need > self.r.remaining())
        {
            return Err(Malformed::CountPastEnd {
                context: CONTEXT,
                field: what.into(),
                offset: at.r.position(),
                count: n,
                available: self.r.remaining(),
            }
            .into());
        }
        Ok(())
    }

    /// A map header: the number of key/value pairs.
    pub(crate) fn map(&mut self, what: &str) -> Result<usize, AttestError> {
        let at = self.clone();
        match self.head(what)? {
            Head::Map(n) => {
                self.check_fits(&at, what, n, 2)?;
                Ok(n)
            }
            h => Err(at.wrong_type(what, "a map", &h)),
        }
    }

    /// An array header: the number of elements.
    pub(crate) fn array(&mut self, what: &str, max: usize) -> Result<usize, AttestError> {
        let at = self.clone();
        match self.head(what)? {
            Head::Array(n) => {
                if n > max {
                    return Err(Malformed::FieldTooLarge {
                        context: CONTEXT,
                        field: what.into(),
                        offset: at.r.position(),
                        size: n,
                        unit: "elements",
                        max,
                    }
                    .into());
                }
                self.check_fits(&at, what, n, 1)?;
                Ok(n)
            }
            h => Err(at.wrong_type(what, "an array", &h)),
        }
    }

    /// A UTF-8 string of at most `max` bytes (borrowed).
    pub(crate) fn str(&mut self, what: &str, max: usize) -> Result<&'a str, AttestError> {
        let at = self.clone();
        match self.head(what)? {
            Head::Str(n) => {
                if n > max {
                    return Err(Malformed::FieldTooLarge {
                        context: CONTEXT,
                        field: what.into(),
                        offset: at.r.position(),
                        size: n,
                        unit: "bytes",
                        max,
                    }
                    .into());
                }
                let b = self.r.take(n, what)?;
                std::str::from_utf8(b).map_err(|e| {
                    Malformed::NotUtf8 {
                        context: CONTEXT,
                        field: what.into(),
                        offset: at.r.position(),
                        detail: e.to_string(),
                    }
                    .into()
                })
            }
            h => Err(at.wrong_type(what, "a string", &h)),
        }
    }

    /// A non-negative integer, whatever its encoding.
    pub(crate) fn uint(&mut self, what: &str) -> Result<u64, AttestError> {
        let at = self.clone();
        match self.head(what)? {
            Head::UInt(v) => Ok(v),
            h => Err(at.wrong_type(what, "a non-negative integer", &h)),
        }
    }

    /// A `u32`.
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, AttestError> {
        let at = self.clone();
        let v = self.uint(what)?;
        u32::try_from(v).map_err(|_| at.error(what, format_args!("{v} does not fit a u32")))
    }

    /// A byte string, accepted in both forms dstack's serializer produces:
    /// `bin` (serde's bytes) or an array of integers 0..=255 (a plain
    /// `Vec<u8>`). Borrowed when it was `bin`.
    pub(crate) fn bytes(&mut self, what: &str) -> Result<Cow<'a, [u8]>, AttestError> {
        let at = self.clone();
        match self.head(what)? {
            Head::Bin(n) => self.r.take(n, what).map(Cow::Borrowed),
            Head::Array(n) => {
                self.check_fits(&at, what, n, 1)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let el = self.clone();
                    let v = self.uint(what)?;
                    let b = u8::try_from(v).map_err(|_| -> AttestError {
                        Malformed::ByteOutOfRange {
                            context: CONTEXT,
                            field: what.into(),
                            offset: el.r.position(),
                            value: v,
                        }
                        .into()
                    })?;
                    out.push(b);
                }
                Ok(Cow::Owned(out))
            }
            h => Err(at.wrong_type(what, "bin or an array of bytes", &h)),
        }
    }

    /// Skips one value of any type, nested containers included, without
    /// recursion: a count of values still to skip grows by each container's
    /// length and can never exceed the bytes left.
    pub(crate) fn skip(&mut self, what: &str) -> Result<(), AttestError> {
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let at = self.clone();
            let more = match self.head(what)? {
                Head::Nil | Head::Bool | Head::UInt(_) | Head::NegInt | Head::Float => 0,
                Head::Str(n) | Head::Bin(n) | Head::Ext(n) => {
                    self.r.skip(n, what)?;
                    0
                }
                Head::Array(n) => n,
                Head::Map(n) => n
                    .checked_mul(2)
                    .ok_or_else(|| at.error(what, "map too large"))?,
            };
            pending = pending
                .checked_add(more)
                .filter(|p| *p <= self.r.remaining())
                .ok_or_else(|| -> AttestError {
                    Malformed::ContainerPastEnd {
                        context: CONTEXT,
                        field: what.into(),
                        offset: at.r.position(),
                        available: self.r.remaining(),
                    }
                    .into()
                })?;
        }
        Ok(())
    }
}

/// An integer read from a signed encoding: only its value matters.
fn signed(v: i64) -> Head {
    match u64::try_from(v) {
        Ok(u) => Head::UInt(u),
        Err(_) => Head::NegInt,
    }
}

/// Most keys a V1 map may have. dstack's maps have at most seven; the bound
/// keeps the duplicate-key check (quadratic in the key count) cheap against
/// a map of a million distinct unknown keys.
const MAX_MAP_KEYS: usize = 64;

/// Reads a map of known keys: calls `field(key, decoder)` for each pair;
/// `field` returns `false` for a key it does not know, which is then skipped.
/// A key seen twice is an error (a second value could shadow the first one
/// depending on the reader).
pub(crate) fn fields<'a>(
    m: &mut Msgpack<'a>,
    what: &str,
    mut field: impl FnMut(&str, &mut Msgpack<'a>) -> Result<bool, AttestError>,
) -> Result<(), AttestError> {
    let at = m.clone();
    let n = m.map(what)?;
    if n > MAX_MAP_KEYS {
        return Err(at.error(
            what,
            format_args!("map of {n} keys, at most {MAX_MAP_KEYS} accepted"),
        ));
    }
    let mut seen: Vec<&'a str> = Vec::new();
    for _ in 0..n {
        let at = m.clone();
        let key = m.str(what, 64)?;
        if seen.contains(&key) {
            return Err(Malformed::DuplicateKey {
                context: CONTEXT,
                field: what.into(),
                offset: at.r.position(),
                key: key.into(),
            }
            .into());
        }
        seen.push(key);
        if !field(key, m)? {
            m.skip(key)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_both_forms_and_bounds() {
        let mut m = Msgpack::new(&[0xc4, 2, 7, 8, 0x92, 0x07, 0xcc, 0xff]);
        assert_eq!(&*m.bytes("a").unwrap(), &[7, 8]);
        assert_eq!(&*m.bytes("b").unwrap(), &[7, 255]);
        m.finish().unwrap();
        let mut m = Msgpack::new(&[0x91, 0xcd, 0x01, 0x00]);
        assert!(
            m.bytes("c")
                .unwrap_err()
                .to_string()
                .contains("exceeds 255")
        );
        // bin32 and array32 of 2^31 elements: refused before allocating.
        let mut m = Msgpack::new(&[0xc6, 0x80, 0, 0, 0, 1]);
        assert!(m.bytes("d").is_err());
        let mut m = Msgpack::new(&[0xdd, 0x80, 0, 0, 0, 1]);
        assert!(
            m.bytes("e")
                .unwrap_err()
                .to_string()
                .contains("2147483648 elements cannot fit in the 1 bytes left")
        );
        let mut m = Msgpack::new(&[0xdf, 0x80, 0, 0, 0, 1]);
        assert!(m.clone().skip("f").is_err());
        assert!(m.map("f").is_err());
    }

    #[test]
    fn skips_nested_values_and_reads_ints() {
        // {"a": [1, {"b": nil}, -1, 1.5, "x", bin(1), ext]} then 5
        let buf = [
            0x81, 0xa1, b'a', 0x97, 0x01, 0x81, 0xa1, b'b', 0xc0, 0xff, 0xca, 0, 0, 0, 0, 0xa1,
            b'x', 0xc4, 1, 0, 0xd4, 1, 2, 0x05,
        ];
        let mut m = Msgpack::new(&buf);
        m.skip("v").unwrap();
        assert_eq!(m.uint("n").unwrap(), 5);
        m.finish().unwrap();
        for (enc, v) in [
            (&[0xd0, 0x05][..], Some(5)),
            (&[0xd0, 0xff], None),
            (&[0xd3, 0, 0, 0, 0, 0, 0, 0, 9], Some(9)),
            (&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0], None),
        ] {
            assert_eq!(Msgpack::new(enc).u32("x").ok(), v, "{enc:02x?}");
        }
        assert!(Msgpack::new(&[0xc1]).skip("x").is_err());
    }

    #[test]
    fn fields_rejects_many_keys() {
        let mut buf = vec![0xde, 0x00, 65];
        for i in 0..65u8 {
            buf.extend([0xa1, i, 0xc0]);
        }
        let err = fields(&mut Msgpack::new(&buf), "top", |_, _| Ok(false)).unwrap_err();
        assert!(
            err.to_string().contains("map of 65 keys, at most 64"),
            "{err}"
        );
        buf[2] = 64;
        buf.truncate(3 + 64 * 3);
        fields(&mut Msgpack::new(&buf), "top", |_, _| Ok(false)).unwrap();
    }

    #[test]
    fn fields_rejects_duplicate_keys() {
        let buf = [0x82, 0xa1, b'k', 0x01, 0xa1, b'k', 0x02];
        let mut m = Msgpack::new(&buf);
        let err = fields(&mut m, "top", |_, m| m.uint("k").map(|_| true)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed: dstack attestation (V1 msgpack): top at offset 4: key \"k\" appears twice"
        );
    }
}
