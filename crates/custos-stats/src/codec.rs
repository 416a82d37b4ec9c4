//! Little-endian byte writer/reader for the profile envelope and payloads.
//!
//! Owns: bounds-checked primitive reads that turn truncation into [`StatsError::Corrupt`].
//! Must not: know anything about profiles, allocate based on an untrusted length before checking
//! that the bytes are actually there, or panic on any input.

use crate::error::StatsError;

pub(crate) fn corrupt(what: impl Into<String>) -> StatsError {
    StatsError::Corrupt(what.into())
}

#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
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
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Length-prefixed blob. Blobs are sketch images or category names; both are far below 4 GiB,
    /// and `to_bytes` is infallible by contract, so an impossible oversize is clamped rather than
    /// reported (the reader would then reject the image as corrupt).
    pub(crate) fn blob(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.bytes(bytes);
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], StatsError> {
        if self.rest.len() < n {
            return Err(corrupt(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], StatsError> {
        let head = self.take(N, what)?;
        <[u8; N]>::try_from(head).map_err(|_| corrupt(format!("truncated {what}")))
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, StatsError> {
        Ok(u8::from_le_bytes(self.array::<1>(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, StatsError> {
        Ok(u32::from_le_bytes(self.array::<4>(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, StatsError> {
        Ok(u64::from_le_bytes(self.array::<8>(what)?))
    }

    pub(crate) fn f64(&mut self, what: &str) -> Result<f64, StatsError> {
        Ok(f64::from_le_bytes(self.array::<8>(what)?))
    }

    pub(crate) fn blob(&mut self, what: &str) -> Result<&'a [u8], StatsError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| corrupt(format!("{what} length overflows")))?;
        self.take(len, what)
    }

    /// Trailing garbage is rejected so that one byte string maps to exactly one profile; silently
    /// ignoring it would hide framing bugs in the storage layer.
    pub(crate) fn finish(self, what: &str) -> Result<(), StatsError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(corrupt(format!(
                "{} trailing bytes after {what}",
                self.rest.len()
            )))
        }
    }
}
