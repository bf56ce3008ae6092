//! The one byte reader every binary parser uses.
//!
//! Modelled on rustls's `codec::Reader`: a cursor over a borrowed slice that
//! never panics, never reads past its end, and names the field it was
//! reading when it runs out. [`Reader::sub`] carves a length-prefixed region
//! into its own reader, and [`Reader::finish`] rejects trailing bytes, so a
//! parser states exactly which bytes it consumed.

use crate::{AttestError, Malformed};

/// A cursor over untrusted bytes.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What is being parsed, for error messages (`"CCEL log"`, `"TDX quote"`).
    context: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `context` names the structure in errors.
    pub fn new(buf: &'a [u8], context: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            context,
        }
    }

    /// The offset of the next byte, from the start of this reader's buffer.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn truncated(&self, what: &str, n: usize) -> AttestError {
        AttestError::Malformed(Malformed::Truncated {
            context: self.context,
            field: what.to_owned(),
            offset: self.pos,
            needed: n,
            available: self.remaining(),
        })
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AttestError> {
        if n > self.remaining() {
            return Err(self.truncated(what, n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn take_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AttestError> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// A reader over the next `n` bytes (a length-framed region).
    pub fn sub(&mut self, n: usize, what: &str) -> Result<Reader<'a>, AttestError> {
        let context = self.context;
        self.take(n, what).map(|b| Reader::new(b, context))
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, what: &str) -> Result<(), AttestError> {
        self.take(n, what).map(|_| ())
    }

    /// A little-endian `u8`.
    pub fn u8(&mut self, what: &str) -> Result<u8, AttestError> {
        Ok(self.take_array::<1>(what)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16_le(&mut self, what: &str) -> Result<u16, AttestError> {
        self.take_array(what).map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    pub fn u32_le(&mut self, what: &str) -> Result<u32, AttestError> {
        self.take_array(what).map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64_le(&mut self, what: &str) -> Result<u64, AttestError> {
        self.take_array(what).map(u64::from_le_bytes)
    }

    /// A big-endian `u16` (TPM structures).
    pub fn u16_be(&mut self, what: &str) -> Result<u16, AttestError> {
        self.take_array(what).map(u16::from_be_bytes)
    }

    /// A big-endian `u32` (TPM structures).
    pub fn u32_be(&mut self, what: &str) -> Result<u32, AttestError> {
        self.take_array(what).map(u32::from_be_bytes)
    }

    /// A big-endian `u64` (TPM structures).
    pub fn u64_be(&mut self, what: &str) -> Result<u64, AttestError> {
        self.take_array(what).map(u64::from_be_bytes)
    }

    /// The next little-endian `u32` without consuming it.
    pub fn peek_u32_le(&self) -> Option<u32> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Ends the parse: every byte must have been read.
    pub fn finish(self) -> Result<(), AttestError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(AttestError::Malformed(Malformed::TrailingData {
                context: self.context,
                offset: self.pos,
                extra: self.remaining(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_truncation() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9, 9], "test");
        assert_eq!(r.u16_le("a").unwrap(), 1);
        assert_eq!(r.u32_le("b").unwrap(), 2);
        assert_eq!(r.position(), 6);
        let err = r.u32_le("c").unwrap_err();
        assert_eq!(
            err.malformed(),
            Some(&Malformed::Truncated {
                context: "test",
                field: "c".into(),
                offset: 6,
                needed: 4,
                available: 2
            })
        );
        assert_eq!(
            err.to_string(),
            "malformed: test truncated: c needs 4 bytes at offset 6, 2 left"
        );
        // A failed read consumes nothing.
        assert_eq!(r.take_array::<2>("d").unwrap(), [9, 9]);
        r.finish().unwrap();
    }

    /// Every integer width in both byte orders, and `skip`'s truncation.
    #[test]
    fn integers_in_both_orders_and_skips() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut r = Reader::new(&bytes, "t");
        assert_eq!(r.u64_le("le").unwrap(), 0x0807_0605_0403_0201);
        r.finish().unwrap();
        let mut r = Reader::new(&bytes, "t");
        assert_eq!(r.u64_be("be").unwrap(), 0x0102_0304_0506_0708);
        let mut r = Reader::new(&bytes, "t");
        assert_eq!(r.u16_be("be").unwrap(), 0x0102);
        assert_eq!(r.peek_u32_le(), Some(0x0605_0403));
        assert_eq!(r.position(), 2, "peeking consumes nothing");
        r.skip(2, "gap").unwrap();
        assert_eq!(r.peek_u32_le(), Some(0x0807_0605));
        assert!(
            r.u64_le("x")
                .unwrap_err()
                .malformed()
                .is_some_and(Malformed::is_truncated)
        );
        assert!(
            r.u64_be("x")
                .unwrap_err()
                .malformed()
                .is_some_and(Malformed::is_truncated)
        );
        let err = r.skip(5, "gap").unwrap_err();
        assert_eq!(
            err.malformed(),
            Some(&Malformed::Truncated {
                context: "t",
                field: "gap".into(),
                offset: 4,
                needed: 5,
                available: 4
            })
        );
        r.skip(4, "gap").unwrap();
        r.finish().unwrap();
    }

    #[test]
    fn sub_and_finish() {
        let mut r = Reader::new(&[0, 0, 0, 5, 7, 8, 1], "t");
        assert_eq!(r.u32_be("len").unwrap(), 5);
        let mut s = r.sub(2, "inner").unwrap();
        assert_eq!(s.u8("x").unwrap(), 7);
        assert!(s.clone().finish().is_err());
        assert_eq!(s.rest(), &[8]);
        assert_eq!(r.peek_u32_le(), None);
        let err = r.finish().unwrap_err();
        assert_eq!(
            err.malformed(),
            Some(&Malformed::TrailingData {
                context: "t",
                offset: 6,
                extra: 1
            })
        );
        assert_eq!(
            err.to_string(),
            "malformed: t: 1 unexpected trailing bytes at offset 6"
        );
        let mut r = Reader::new(&[1, 2], "t");
        assert!(r.take(usize::MAX, "huge").is_err());
        assert!(r.sub(3, "inner").is_err());
        assert_eq!(r.u16_be("x").unwrap(), 0x0102);
    }
}
