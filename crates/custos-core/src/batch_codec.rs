//! The compact binary form of a batch of [`MaskedRecord`]s, as sealed event batches hold it.
//!
//! Owns: the byte layout of a batch and its strict decoder. Must not: compress, encrypt or
//! know keys (that is `custos-crypto`'s seal format around it), or accept anything it did not
//! write — every length is checked against the bytes left, every string must be UTF-8, every
//! tag and timestamp valid, and nothing may follow the last record.
//!
//! Why not JSON: sealing a batch serialised as JSON spent most of its time writing
//! `{"t":"number","v":…}` for every value and an RFC 3339 string for every timestamp, then
//! compressing those repeated tags again. This layout writes each value once, in its natural
//! width.
//!
//! Layout (all integers little-endian):
//! `FORMAT (u8 = 0x02) ‖ record count (u32) ‖ record*`, where
//! `record = event id (str) ‖ seconds (i64) ‖ nanoseconds (u32) ‖ value count (u32) ‖ value*`,
//! `str = length (u32) ‖ UTF-8 bytes`, and a value is a tag byte and its payload:
//! `0` missing, `1` dropped, `2` redacted, `3` pseudonym (str), `4` token (str),
//! `5` number (f64 bits), `6` boolean (u8 0 | 1), `7` text (str), `8` time (i64 seconds ‖ u32
//! nanoseconds). A JSON batch starts with `[`, so the first byte tells the two apart.

use crate::record::{MaskedRecord, MaskedValue};
use chrono::{DateTime, Utc};

/// First byte of a batch in this layout.
pub const BATCH_FORMAT_BINARY: u8 = 0x02;

/// Why a batch could not be encoded (more than 2^32 − 1 records, values or bytes in one
/// item) or decoded (malformed). Deliberately without the bytes: a batch holds (masked)
/// monitoring data, which does not belong in an error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch layout: {0}")]
pub struct BatchCodecError(&'static str);

/// The batch in the binary layout.
pub fn encode_batch(records: &[MaskedRecord]) -> Result<Vec<u8>, BatchCodecError> {
    let mut out = Vec::with_capacity(16 + records.len() * 96);
    out.push(BATCH_FORMAT_BINARY);
    put_len(&mut out, records.len())?;
    for record in records {
        put_str(&mut out, record.event_id())?;
        put_time(&mut out, record.timestamp());
        put_len(&mut out, record.values().len())?;
        for value in record.values() {
            match value {
                MaskedValue::Missing => out.push(0),
                MaskedValue::Dropped => out.push(1),
                MaskedValue::Redacted => out.push(2),
                MaskedValue::Pseudonym(s) => {
                    out.push(3);
                    put_str(&mut out, s)?;
                }
                MaskedValue::Token(s) => {
                    out.push(4);
                    put_str(&mut out, s)?;
                }
                MaskedValue::Number(x) => {
                    out.push(5);
                    out.extend_from_slice(&x.to_bits().to_le_bytes());
                }
                MaskedValue::Bool(b) => {
                    out.push(6);
                    out.push(u8::from(*b));
                }
                MaskedValue::Text(s) => {
                    out.push(7);
                    put_str(&mut out, s)?;
                }
                MaskedValue::Time(t) => {
                    out.push(8);
                    put_time(&mut out, *t);
                }
            }
        }
    }
    Ok(out)
}

/// Decodes a batch written by [`encode_batch`]; anything else is an error, never a panic.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MaskedRecord>, BatchCodecError> {
    let mut input = Reader { rest: bytes };
    if input.u8()? != BATCH_FORMAT_BINARY {
        return Err(BatchCodecError("unknown batch format"));
    }
    let count = input.len()?;
    // A record takes at least 20 bytes (empty id, time, no values): a forged count cannot
    // make the decoder reserve more than the input could hold.
    let mut records = Vec::with_capacity(count.min(input.rest.len() / 20));
    for _ in 0..count {
        let event_id = input.str()?;
        let timestamp = input.time()?;
        let value_count = input.len()?;
        let mut values = Vec::with_capacity(value_count.min(input.rest.len()));
        for _ in 0..value_count {
            values.push(match input.u8()? {
                0 => MaskedValue::Missing,
                1 => MaskedValue::Dropped,
                2 => MaskedValue::Redacted,
                3 => MaskedValue::Pseudonym(input.str()?),
                4 => MaskedValue::Token(input.str()?),
                5 => MaskedValue::Number(f64::from_bits(u64::from_le_bytes(input.array()?))),
                6 => match input.u8()? {
                    0 => MaskedValue::Bool(false),
                    1 => MaskedValue::Bool(true),
                    _ => return Err(BatchCodecError("boolean is neither 0 nor 1")),
                },
                7 => MaskedValue::Text(input.str()?),
                8 => MaskedValue::Time(input.time()?),
                _ => return Err(BatchCodecError("unknown value tag")),
            });
        }
        records.push(MaskedRecord::from_sealed(event_id, timestamp, values));
    }
    if !input.rest.is_empty() {
        return Err(BatchCodecError("bytes after the last record"));
    }
    Ok(records)
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), BatchCodecError> {
    let len = u32::try_from(len).map_err(|_| BatchCodecError("more than 2^32 - 1 items"))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), BatchCodecError> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    out.extend_from_slice(&t.timestamp().to_le_bytes());
    out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchCodecError> {
        if self.rest.len() < n {
            return Err(BatchCodecError("batch ends early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BatchCodecError> {
        self.take(N)?
            .try_into()
            .map_err(|_| BatchCodecError("batch ends early"))
    }

    fn u8(&mut self) -> Result<u8, BatchCodecError> {
        Ok(self.array::<1>()?[0])
    }

    fn len(&mut self) -> Result<usize, BatchCodecError> {
        usize::try_from(u32::from_le_bytes(self.array()?))
            .map_err(|_| BatchCodecError("length does not fit this platform"))
    }

    fn str(&mut self) -> Result<String, BatchCodecError> {
        let len = self.len()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| BatchCodecError("string is not UTF-8"))
    }

    fn time(&mut self) -> Result<DateTime<Utc>, BatchCodecError> {
        let seconds = i64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        DateTime::from_timestamp(seconds, nanos).ok_or(BatchCodecError("time out of range"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = MaskedValue> {
        prop_oneof![
            Just(MaskedValue::Missing),
            Just(MaskedValue::Dropped),
            Just(MaskedValue::Redacted),
            ".{0,12}".prop_map(MaskedValue::Pseudonym),
            ".{0,12}".prop_map(MaskedValue::Token),
            any::<f64>().prop_map(MaskedValue::Number),
            any::<bool>().prop_map(MaskedValue::Bool),
            ".{0,40}".prop_map(MaskedValue::Text),
            (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
                .prop_map(|(s, n)| { MaskedValue::Time(DateTime::from_timestamp(s, n).unwrap()) }),
        ]
    }

    fn record() -> impl Strategy<Value = MaskedRecord> {
        (
            ".{0,20}",
            (0i64..4_000_000_000, 0u32..1_000_000_000),
            proptest::collection::vec(value(), 0..10),
        )
            .prop_map(|(id, (s, n), values)| {
                MaskedRecord::from_sealed(id, DateTime::from_timestamp(s, n).unwrap(), values)
            })
    }

    /// Equality that treats NaN as equal to itself bit for bit (`PartialEq` on f64 does not).
    fn same(a: &[MaskedRecord], b: &[MaskedRecord]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.event_id() == y.event_id()
                    && x.timestamp() == y.timestamp()
                    && x.values().len() == y.values().len()
                    && x.values()
                        .iter()
                        .zip(y.values())
                        .all(|(u, v)| match (u, v) {
                            (MaskedValue::Number(p), MaskedValue::Number(q)) => {
                                p.to_bits() == q.to_bits()
                            }
                            _ => u == v,
                        })
            })
    }

    proptest! {
        #[test]
        fn every_batch_round_trips(records in proptest::collection::vec(record(), 0..20)) {
            let bytes = encode_batch(&records).unwrap();
            prop_assert!(same(&decode_batch(&bytes).unwrap(), &records));
        }

        #[test]
        fn a_cut_or_extended_batch_is_refused(
            records in proptest::collection::vec(record(), 1..8),
            cut in 1usize..64,
        ) {
            let bytes = encode_batch(&records).unwrap();
            let short = &bytes[..bytes.len().saturating_sub(cut)];
            prop_assert!(decode_batch(short).is_err());
            let mut long = bytes.clone();
            long.push(0);
            prop_assert!(decode_batch(&long).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_batch(&bytes);
        }
    }

    #[test]
    fn bad_tags_strings_and_counts_are_named() {
        let one = MaskedRecord::from_sealed(
            "e1".into(),
            DateTime::from_timestamp(1_764_115_200, 0).unwrap(),
            vec![MaskedValue::Bool(true), MaskedValue::Text("ok".into())],
        );
        let good = encode_batch(std::slice::from_ref(&one)).unwrap();
        // Layout: format 1 + count 4 + id (4 + 2) + time 12 + value count 4 = 27, then values.
        let mut bad_tag = good.clone();
        bad_tag[27] = 9;
        assert_eq!(
            decode_batch(&bad_tag).unwrap_err().to_string(),
            "batch layout: unknown value tag"
        );
        let mut bad_bool = good.clone();
        bad_bool[28] = 2;
        assert!(decode_batch(&bad_bool).is_err());
        let mut bad_utf8 = good.clone();
        bad_utf8[9] = 0xFF;
        assert_eq!(
            decode_batch(&bad_utf8).unwrap_err().to_string(),
            "batch layout: string is not UTF-8"
        );
        let mut huge_count = good.clone();
        huge_count[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_batch(&huge_count).is_err());
        assert!(decode_batch(b"[]").is_err(), "JSON is not this layout");
    }
}
