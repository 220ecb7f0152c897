//! A small, strict binary codec for the protocol messages.
//!
//! Integers are little endian; byte strings and lists carry a 32-bit length that is checked
//! against the bytes remaining before anything is allocated, so decoding untrusted input never
//! panics and never over-allocates: every problem is an [`Error::SecAgg`] at stage `decode`.

use crate::error::{Error, Result};

/// Magic prefix of every encoded message (`"SA+"` and the format version 2: version 2 added
/// the run id to every message).
pub const MAGIC: [u8; 4] = *b"SA+\x02";

pub(crate) fn decode_error(reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: "decode".into(),
        reason: reason.into(),
    }
}

/// Appends encoded values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(tag: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&MAGIC);
        buf.push(tag);
        Writer { buf }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    pub(crate) fn array32(&mut self, v: &[u8; 32]) {
        self.buf.extend_from_slice(v);
    }

    /// A length prefix; lengths above u32::MAX are clamped and will fail to decode.
    pub(crate) fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }
}

/// Reads values back, failing with typed errors on truncation or malformed data.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Check the magic and the tag, then read the body.
    pub(crate) fn new(data: &'a [u8], tag: u8, what: &str) -> Result<Self> {
        let mut r = Reader { data };
        let magic = r.take(4)?;
        if magic != MAGIC {
            return Err(decode_error(format!("{what}: bad magic or version")));
        }
        let got = r.u8()?;
        if got != tag {
            return Err(decode_error(format!(
                "{what}: wrong message type {got} (expected {tag})"
            )));
        }
        Ok(r)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.data.len() {
            return Err(decode_error(format!(
                "truncated: need {n} bytes, {} left",
                self.data.len()
            )));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    pub(crate) fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| decode_error("integer too large"))
    }

    pub(crate) fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_bits(self.u64()?))
    }

    pub(crate) fn array32(&mut self) -> Result<[u8; 32]> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    /// A list length whose items take at least `min_item` bytes each.
    pub(crate) fn len(&mut self, min_item: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.remaining() {
            return Err(decode_error(format!(
                "list of {n} items exceeds the message"
            )));
        }
        Ok(n)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }

    /// Fail unless everything was consumed.
    pub(crate) fn finish(self) -> Result<()> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(decode_error(format!("{} trailing bytes", self.data.len())))
        }
    }
}
