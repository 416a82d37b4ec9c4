//! Envelope encryption of payloads under a (model, partition) data key.
//!
//! Owns: the sealed byte format, batch compression (zstd) around the batch layout of
//! [`custos_core::batch_codec`] (batches sealed before it hold a JSON array and still open),
//! and the associated data that binds every ciphertext to its model, partition, kind (and, for
//! blobs, label). Must
//! not: read keys from anywhere (callers pass an unwrapped [`DataKey`]), tell callers which part
//! of a damaged ciphertext was wrong (every authentication failure is
//! [`CryptoError::Decrypt`]), or inflate untrusted input without a bound.
//!
//! Format: `header ‖ ciphertext ‖ tag (16)`, where `header = "CSB" ‖ format (u8 = 1) ‖ kind (u8)
//! ‖ nonce (12)`. AES-256-GCM associated data: `header ‖ model_id (i64 LE) ‖ partition (i64 LE) ‖
//! kind`, and for blobs additionally `label length (u64 LE) ‖ label`. Hence a tampered header,
//! nonce, body or tag, or a ciphertext moved to another model, partition, kind or label, fails
//! closed.
//!
//! Nonces are random 96-bit values. That is safe here because each data key covers one
//! (model, day): even 50 batches/s for a whole day is 4.3 M messages per key, far below the
//! 2^32 messages NIST SP 800-38D allows per key with random nonces (collision probability
//! ≈ n²/2^97 ≈ 10^-16 at that volume).

use crate::error::CryptoError;
use crate::gcm::{self, NONCE_LEN};
use crate::keys::DataKey;
use crate::sealed::{SealedBatch, SealedBlob};
use custos_core::batch_codec::{BATCH_FORMAT_BINARY, decode_batch, encode_batch};
use custos_core::{MaskedRecord, Partition};
use std::cell::RefCell;
use std::io::Read as _;

const MAGIC: &[u8; 3] = b"CSB";
const FORMAT_V1: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 2 + NONCE_LEN;
const KIND_BATCH: u8 = 1;

/// Largest serialised batch that is sealed or opened (before compression / after
/// decompression): a hostile or corrupt blob cannot make `open_batch` allocate more.
pub const MAX_BATCH_PLAINTEXT: usize = 256 * 1024 * 1024;
/// zstd level 1: on our NDJSON-like rows it is both faster and smaller than the default 3
/// (LIMITS.md §5: 4.06× at ~510 MB/s vs 3.78× at ~360 MB/s).
const ZSTD_LEVEL: i32 = 1;
/// Largest zstd window accepted when decompressing (8 MiB). Level 1 uses at most 2^19; the cap
/// keeps a crafted frame from making the decoder allocate a 128 MiB window.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// What a [`SealedBlob`] holds. Part of the associated data, so a profile cannot be opened as
/// a label or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobKind {
    /// A profile (sketch) delta.
    Profile,
    /// A ground-truth label.
    Label,
    /// A secret value.
    Secret,
    /// The original of a token-vault entry.
    VaultEntry,
}

impl BlobKind {
    fn code(self) -> u8 {
        match self {
            Self::Profile => 2,
            Self::Label => 3,
            Self::Secret => 4,
            Self::VaultEntry => 5,
        }
    }
}

fn header(kind: u8, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    let format_and_kind = [FORMAT_V1, kind];
    let fixed = MAGIC.iter().chain(&format_and_kind).chain(nonce);
    for (dst, src) in header.iter_mut().zip(fixed) {
        *dst = *src;
    }
    header
}

fn aad(
    header: &[u8],
    model_id: i64,
    partition: Partition,
    kind: u8,
    label: Option<&str>,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 17 + label.map_or(0, |l| l.len() + 8));
    aad.extend_from_slice(header);
    aad.extend_from_slice(&model_id.to_le_bytes());
    aad.extend_from_slice(&partition.0.to_le_bytes());
    aad.push(kind);
    if let Some(label) = label {
        aad.extend_from_slice(&(label.len() as u64).to_le_bytes());
        aad.extend_from_slice(label.as_bytes());
    }
    aad
}

fn seal_bytes(
    key: &DataKey,
    model_id: i64,
    partition: Partition,
    kind: u8,
    label: Option<&str>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce = gcm::random_nonce()?;
    let header = header(kind, &nonce);
    let aad = aad(&header, model_id, partition, kind, label);
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + gcm::TAG_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(HEADER_LEN..).ok_or(CryptoError::Encoding)?;
    let tag = gcm::encrypt_in_place(key.bytes(), &nonce, &aad, body)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

fn open_bytes(
    key: &DataKey,
    model_id: i64,
    partition: Partition,
    kind: u8,
    label: Option<&str>,
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let gcm::Parts { header, body, tag } = gcm::split_sealed(sealed, HEADER_LEN)?;
    // The header is authenticated as part of the AAD anyway; checking it first only saves work.
    // Same error as a bad tag, so probing the header reveals nothing.
    let (fixed, nonce) = header.split_at(MAGIC.len() + 2);
    if fixed.get(..MAGIC.len()) != Some(MAGIC.as_slice())
        || fixed.get(MAGIC.len()..) != Some(&[FORMAT_V1, kind])
    {
        return Err(CryptoError::Decrypt);
    }
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
    let aad = aad(header, model_id, partition, kind, label);
    let mut plaintext = body.to_vec();
    gcm::decrypt_in_place(key.bytes(), nonce, &aad, &mut plaintext, tag)?;
    Ok(plaintext)
}

thread_local! {
    // A zstd context costs about a megabyte to set up; reusing one per thread makes sealing a
    // small batch cheap. Thread-local, so no lock and no sharing across requests' data.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

fn compress(data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|_| CryptoError::Encoding)?;
        if slot.is_none() {
            *slot =
                Some(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|_| CryptoError::Encoding)?);
        }
        let compressor = slot.as_mut().ok_or(CryptoError::Encoding)?;
        compressor.compress(data).map_err(|_| CryptoError::Encoding)
    })
}

/// Streams the frame through a reader capped at `cap + 1` bytes, so memory stays bounded by the
/// cap whatever the frame claims about its content size.
fn decompress_capped(data: &[u8], cap: usize) -> Result<Vec<u8>, CryptoError> {
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(data).map_err(|_| CryptoError::Encoding)?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|_| CryptoError::Encoding)?;
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(cap));
    decoder
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| CryptoError::Encoding)?;
    if out.len() > cap {
        return Err(CryptoError::TooLarge);
    }
    Ok(out)
}

/// Serialises (the binary layout of [`custos_core::batch_codec`]), compresses (zstd 1) and
/// seals masked records of one model and one day partition. Fails on an empty slice, more than
/// `u32::MAX` records, or more than [`MAX_BATCH_PLAINTEXT`] serialised bytes (which
/// `open_batch` would refuse).
///
/// The records' event keys are not part of the sealed form (`MaskedRecord` skips them when
/// serialising); the store keeps them in its index.
pub fn seal_batch(
    key: &DataKey,
    model_id: i64,
    partition: Partition,
    records: &[MaskedRecord],
) -> Result<SealedBatch, CryptoError> {
    let first = records
        .first()
        .ok_or_else(|| CryptoError::Format("cannot seal an empty batch".to_owned()))?;
    let row_count = u32::try_from(records.len()).map_err(|_| CryptoError::TooLarge)?;
    let (min_time, max_time) = records
        .iter()
        .fold((first.timestamp(), first.timestamp()), |(lo, hi), r| {
            (lo.min(r.timestamp()), hi.max(r.timestamp()))
        });
    let encoded = encode_batch(records).map_err(|_| CryptoError::TooLarge)?;
    if encoded.len() > MAX_BATCH_PLAINTEXT {
        return Err(CryptoError::TooLarge);
    }
    let compressed = compress(&encoded)?;
    let ciphertext = seal_bytes(key, model_id, partition, KIND_BATCH, None, &compressed)?;
    Ok(SealedBatch {
        model_id,
        partition,
        row_count,
        min_time,
        max_time,
        ciphertext,
    })
}

/// Opens a sealed batch of `model_id`/`partition`. Any damage or mismatch is `Decrypt`; a
/// payload that inflates beyond [`MAX_BATCH_PLAINTEXT`] is `TooLarge`. The returned records have
/// no event key (see [`seal_batch`]).
pub fn open_batch(
    key: &DataKey,
    model_id: i64,
    partition: Partition,
    ciphertext: &[u8],
) -> Result<Vec<MaskedRecord>, CryptoError> {
    let compressed = open_bytes(key, model_id, partition, KIND_BATCH, None, ciphertext)?;
    let plaintext = decompress_capped(&compressed, MAX_BATCH_PLAINTEXT)?;
    match plaintext.first() {
        Some(&BATCH_FORMAT_BINARY) => decode_batch(&plaintext).map_err(|_| CryptoError::Encoding),
        // Batches sealed before the binary layout are a JSON array.
        _ => serde_json::from_slice(&plaintext).map_err(|_| CryptoError::Encoding),
    }
}

/// Seals a small value (no compression) bound to model, partition, kind and `label` (e.g. the
/// column name and hour of a profile delta).
pub fn seal_blob(
    key: &DataKey,
    model_id: i64,
    partition: Partition,
    kind: BlobKind,
    label: &str,
    plaintext: &[u8],
) -> Result<SealedBlob, CryptoError> {
    let ciphertext = seal_bytes(
        key,
        model_id,
        partition,
        kind.code(),
        Some(label),
        plaintext,
    )?;
    Ok(SealedBlob {
        model_id,
        partition,
        ciphertext,
    })
}

/// Opens a blob sealed with exactly these model, partition, kind and label.
pub fn open_blob(
    key: &DataKey,
    model_id: i64,
    partition: Partition,
    kind: BlobKind,
    label: &str,
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    open_bytes(
        key,
        model_id,
        partition,
        kind.code(),
        Some(label),
        ciphertext,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{CANARY, masked_records, pseudonymizer};

    const MODEL: i64 = 42;
    const DAY: Partition = Partition(20_418);

    fn same_rows(a: &[MaskedRecord], b: &[MaskedRecord]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.event_id(), y.event_id());
            assert_eq!(x.timestamp(), y.timestamp());
            assert_eq!(x.values(), y.values());
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_batch_sealed_as_json_before_the_binary_layout_still_opens() {
        let records = masked_records(50, &pseudonymizer());
        let key = DataKey::generate().unwrap();
        let json = serde_json::to_vec(&records).unwrap();
        let ciphertext = seal_bytes(
            &key,
            MODEL,
            DAY,
            KIND_BATCH,
            None,
            &compress(&json).unwrap(),
        )
        .unwrap();
        same_rows(
            &open_batch(&key, MODEL, DAY, &ciphertext).unwrap(),
            &records,
        );
        // And the binary layout is what is sealed now, and smaller.
        let sealed = seal_batch(&key, MODEL, DAY, &records).unwrap();
        let compressed =
            open_bytes(&key, MODEL, DAY, KIND_BATCH, None, sealed.ciphertext()).unwrap();
        let plaintext = decompress_capped(&compressed, MAX_BATCH_PLAINTEXT).unwrap();
        assert_eq!(plaintext.first(), Some(&BATCH_FORMAT_BINARY));
        assert!(
            plaintext.len() < json.len(),
            "{} >= {}",
            plaintext.len(),
            json.len()
        );
    }

    #[test]
    fn batch_round_trip_of_1000_records() {
        let records = masked_records(1_000, &pseudonymizer());
        let key = DataKey::generate().unwrap();
        let sealed = seal_batch(&key, MODEL, DAY, &records).unwrap();
        assert_eq!(sealed.model_id(), MODEL);
        assert_eq!(sealed.partition(), DAY);
        assert_eq!(sealed.row_count(), 1_000);
        let min = records.iter().map(MaskedRecord::timestamp).min().unwrap();
        let max = records.iter().map(MaskedRecord::timestamp).max().unwrap();
        assert_eq!((sealed.min_time(), sealed.max_time()), (min, max));
        assert!(min < max);
        assert_eq!(&sealed.ciphertext()[..3], b"CSB");

        // The canary was stored in the clear in a plain categorical field...
        let json = serde_json::to_vec(&records).unwrap();
        assert!(contains(&json, CANARY.as_bytes()));
        // ...but neither it nor an event id survives into the ciphertext.
        assert!(!contains(sealed.ciphertext(), CANARY.as_bytes()));
        assert!(!contains(
            sealed.ciphertext(),
            records[0].event_id().as_bytes()
        ));
        // Compression happened before encryption.
        assert!(
            sealed.ciphertext().len() * 2 < json.len(),
            "{} vs {}",
            sealed.ciphertext().len(),
            json.len()
        );

        let opened = open_batch(&key, MODEL, DAY, sealed.ciphertext()).unwrap();
        same_rows(&records, &opened);
        assert!(opened.iter().all(|r| r.event_key().is_none()));

        // Random nonces: sealing the same rows twice gives different ciphertexts.
        let again = seal_batch(&key, MODEL, DAY, &records).unwrap();
        assert_ne!(again.ciphertext(), sealed.ciphertext());
    }

    #[test]
    fn batch_every_byte_flip_fails_closed() {
        let records = masked_records(3, &pseudonymizer());
        let key = DataKey::generate().unwrap();
        let sealed = seal_batch(&key, MODEL, DAY, &records).unwrap();
        let ct = sealed.ciphertext();
        assert!(ct.len() > HEADER_LEN + gcm::TAG_LEN + 10);
        for i in 0..ct.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = ct.to_vec();
                bad[i] ^= bit;
                match open_batch(&key, MODEL, DAY, &bad) {
                    Err(CryptoError::Decrypt) => {}
                    other => panic!("byte {i} bit {bit:#x}: {other:?}"),
                }
            }
        }
        for len in [
            0,
            1,
            HEADER_LEN,
            HEADER_LEN + gcm::TAG_LEN - 1,
            ct.len() - 1,
        ] {
            assert!(
                matches!(
                    open_batch(&key, MODEL, DAY, &ct[..len]),
                    Err(CryptoError::Decrypt)
                ),
                "truncated to {len}"
            );
        }
        let mut extended = ct.to_vec();
        extended.push(0);
        assert!(matches!(
            open_batch(&key, MODEL, DAY, &extended),
            Err(CryptoError::Decrypt)
        ));
        // Untouched, it still opens: the loop above tested the damage, not a broken setup.
        same_rows(&records, &open_batch(&key, MODEL, DAY, ct).unwrap());
    }

    #[test]
    fn batch_bound_to_model_partition_key_and_kind() {
        let records = masked_records(5, &pseudonymizer());
        let key = DataKey::generate().unwrap();
        let sealed = seal_batch(&key, MODEL, DAY, &records).unwrap();
        let ct = sealed.ciphertext();
        let decrypt_err =
            |r: Result<Vec<MaskedRecord>, CryptoError>| matches!(r, Err(CryptoError::Decrypt));
        assert!(decrypt_err(open_batch(&key, MODEL + 1, DAY, ct)));
        assert!(decrypt_err(open_batch(
            &key,
            MODEL,
            Partition(DAY.0 + 1),
            ct
        )));
        assert!(decrypt_err(open_batch(
            &DataKey::generate().unwrap(),
            MODEL,
            DAY,
            ct
        )));
        // A batch is not a blob of any kind, under any label.
        for kind in [
            BlobKind::Profile,
            BlobKind::Label,
            BlobKind::Secret,
            BlobKind::VaultEntry,
        ] {
            assert!(matches!(
                open_blob(&key, MODEL, DAY, kind, "", ct),
                Err(CryptoError::Decrypt)
            ));
        }
        // Swapping the kind byte in the header to a blob kind does not help either.
        let mut relabelled = ct.to_vec();
        relabelled[4] = BlobKind::Profile.code();
        assert!(open_blob(&key, MODEL, DAY, BlobKind::Profile, "", &relabelled).is_err());
    }

    #[test]
    fn empty_batch_is_refused() {
        let key = DataKey::generate().unwrap();
        assert!(matches!(
            seal_batch(&key, MODEL, DAY, &[]),
            Err(CryptoError::Format(_))
        ));
    }

    #[test]
    fn blob_round_trip_and_tamper() {
        let key = DataKey::generate().unwrap();
        let label = "amount@492000";
        let plaintext = b"profile bytes: secret-ish sketch state".to_vec();
        let sealed = seal_blob(&key, MODEL, DAY, BlobKind::Profile, label, &plaintext).unwrap();
        assert_eq!(sealed.model_id(), MODEL);
        assert_eq!(sealed.partition(), DAY);
        let ct = sealed.ciphertext();
        assert_eq!(ct.len(), HEADER_LEN + plaintext.len() + gcm::TAG_LEN);
        assert!(!contains(ct, b"secret-ish"));
        assert_eq!(
            open_blob(&key, MODEL, DAY, BlobKind::Profile, label, ct).unwrap(),
            plaintext
        );

        for i in 0..ct.len() {
            let mut bad = ct.to_vec();
            bad[i] ^= 0x01;
            assert!(
                matches!(
                    open_blob(&key, MODEL, DAY, BlobKind::Profile, label, &bad),
                    Err(CryptoError::Decrypt)
                ),
                "byte {i}"
            );
        }
        let open = |model, day, kind, label: &str, key: &DataKey| {
            open_blob(key, model, day, kind, label, ct)
        };
        assert!(open(MODEL, DAY, BlobKind::Label, label, &key).is_err());
        assert!(open(MODEL, DAY, BlobKind::Secret, label, &key).is_err());
        assert!(open(MODEL, DAY, BlobKind::Profile, "amount@492001", &key).is_err());
        assert!(open(MODEL, DAY, BlobKind::Profile, "", &key).is_err());
        assert!(open(MODEL + 1, DAY, BlobKind::Profile, label, &key).is_err());
        assert!(open(MODEL, Partition(DAY.0 - 1), BlobKind::Profile, label, &key).is_err());
        assert!(
            open(
                MODEL,
                DAY,
                BlobKind::Profile,
                label,
                &DataKey::generate().unwrap()
            )
            .is_err()
        );
        // A blob is not a batch.
        assert!(open_batch(&key, MODEL, DAY, ct).is_err());
    }

    #[test]
    fn empty_blob_round_trips() {
        let key = DataKey::generate().unwrap();
        let sealed = seal_blob(&key, 1, DAY, BlobKind::Secret, "s", b"").unwrap();
        assert!(
            open_blob(&key, 1, DAY, BlobKind::Secret, "s", sealed.ciphertext())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn decompression_is_capped() {
        // 4 MiB of zeros compresses to a few hundred bytes; a 1 MiB cap must refuse it without
        // producing it all.
        let big = vec![0u8; 4 * 1024 * 1024];
        let compressed = compress(&big).unwrap();
        assert!(compressed.len() < 4096);
        assert!(matches!(
            decompress_capped(&compressed, 1024 * 1024),
            Err(CryptoError::TooLarge)
        ));
        assert_eq!(decompress_capped(&compressed, big.len()).unwrap(), big);
        assert!(decompress_capped(b"not zstd at all", 1024).is_err());
    }

    use proptest::collection::vec;
    use proptest::prelude::{ProptestConfig, any};

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn blobs_round_trip_any_label_and_payload(
            label in ".{0,40}",
            payload in vec(any::<u8>(), 0..512),
        ) {
            let key = DataKey::generate().unwrap();
            let day = Partition(-1);
            let sealed = seal_blob(&key, -3, day, BlobKind::Label, &label, &payload).unwrap();
            let ct = sealed.ciphertext();
            let opened = open_blob(&key, -3, day, BlobKind::Label, &label, ct).unwrap();
            proptest::prop_assert_eq!(opened, payload);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
            let key = DataKey::generate().unwrap();
            let batch = open_batch(&key, 1, DAY, &bytes);
            proptest::prop_assert!(matches!(batch, Err(CryptoError::Decrypt)));
            let blob = open_blob(&key, 1, DAY, BlobKind::Profile, "x", &bytes);
            proptest::prop_assert!(blob.is_err());
        }
    }
}
