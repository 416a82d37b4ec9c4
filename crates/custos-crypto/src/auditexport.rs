//! The audit export file: everything an auditor needs to verify the log offline, holding only
//! the signing keys' public halves (and, better, their own copy of them).
//!
//! Owns the line format (`custos-audit-export/1`, JSON lines: one header, the public keys with
//! their validity windows, the checkpoints, then every entry in order) and its verification,
//! which feeds the same [`LogVerifier`] the live store uses. Reads from any `BufRead`; does no
//! other IO.

use crate::auditlog::{Anchor, KeyWindow, LogVerifier, Problem, StoredCheckpoint, Verified};
use crate::checkpoint::{Checkpoint, NoteVerifier};
use serde::{Deserialize, Serialize};
use std::io::BufRead;

/// The format name in the header line.
pub const FORMAT: &str = "custos-audit-export/1";

/// Longest line read (an entry's record is far smaller; a checkpoint note at most 1 MiB).
const MAX_LINE: usize = 2 << 20;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExportLine {
    /// First line.
    Header {
        /// [`FORMAT`].
        format: String,
        /// The log's origin.
        origin: String,
        /// The retention anchor (0: nothing pruned).
        anchor: u64,
        /// When the export was made (RFC 3339).
        exported_at: String,
    },
    /// A checkpoint signing key's public half.
    Key {
        /// Version.
        version: u32,
        /// C2SP verifier key.
        verifier_key: String,
        /// Window start (unix microseconds).
        valid_from: i64,
        /// Window end, if retired.
        valid_until: Option<i64>,
    },
    /// A signed checkpoint.
    Checkpoint {
        /// Entries covered.
        tree_size: u64,
        /// Signed note.
        note: String,
        /// Signing key version.
        key_version: u32,
        /// Signing time (unix microseconds).
        signed_at: i64,
        /// Compact range at `tree_size`, hex of packed 32-byte nodes.
        frontier: String,
        /// Chain hash of entry `tree_size`, hex.
        chain_hash: String,
    },
    /// One entry.
    Entry {
        /// Position.
        seq: u64,
        /// The stored record, exactly.
        record: String,
        /// Its chain hash, hex.
        hash: String,
    },
}

/// Why an export does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The log itself is wrong.
    #[error(transparent)]
    Log(#[from] Problem),
    /// The file is not a well-formed export at this line (1-based).
    #[error("line {line}: {reason}")]
    Format {
        /// Line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

fn format_error(line: u64, reason: impl Into<String>) -> ExportError {
    ExportError::Format {
        line,
        reason: reason.into(),
    }
}

fn hash32(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Verifies an export. `pinned`: the only signing keys trusted (keys in the file that are not
/// pinned are ignored, so their checkpoints fail); `None` trusts the file's keys, which only
/// proves internal consistency. `trusted`: checkpoints kept from earlier that the entries must
/// reproduce. A damaged entry line is reported as a bad entry at its expected position.
pub fn verify_export<R: BufRead>(
    mut reader: R,
    pinned: Option<&[NoteVerifier]>,
    trusted: &[Checkpoint],
) -> Result<Verified, ExportError> {
    let mut origin: Option<String> = None;
    let mut anchor_size = 0u64;
    let mut keys: Vec<KeyWindow> = Vec::new();
    let mut checkpoints: Vec<StoredCheckpoint> = Vec::new();
    let mut anchor: Option<Anchor> = None;
    let mut verifier: Option<LogVerifier> = None;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = std::io::Read::take(&mut reader, u64::try_from(MAX_LINE).unwrap_or(u64::MAX))
            .read_until(b'\n', &mut buf)
            .map_err(|e| format_error(line_no.saturating_add(1), format!("unreadable: {e}")))?;
        if read == 0 {
            break;
        }
        line_no = line_no.saturating_add(1);
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if text.is_empty() {
            continue;
        }
        let parsed: Result<ExportLine, _> = serde_json::from_slice(text);
        let line = match parsed {
            Ok(line) => line,
            Err(e) => {
                // Inside the entries, a damaged line is a damaged entry.
                if let Some(v) = &verifier {
                    return Err(Problem::Entry {
                        seq: v.next_seq(),
                        reason: format!("export line {line_no} is unreadable ({e})"),
                    }
                    .into());
                }
                return Err(format_error(line_no, format!("not an export line ({e})")));
            }
        };
        match line {
            ExportLine::Header {
                format,
                origin: o,
                anchor: a,
                ..
            } => {
                if line_no != 1 || format != FORMAT {
                    return Err(format_error(line_no, "header must come first, format 1"));
                }
                origin = Some(o);
                anchor_size = a;
            }
            ExportLine::Key {
                version,
                verifier_key,
                valid_from,
                valid_until,
            } => {
                if verifier.is_some() || origin.is_none() {
                    return Err(format_error(line_no, "keys belong after the header"));
                }
                let key = NoteVerifier::from_verifier_key(&verifier_key)
                    .map_err(|e| format_error(line_no, format!("bad public key ({e})")))?;
                if let Some(pinned) = pinned
                    && !pinned
                        .iter()
                        .any(|p| p.verifier_key() == key.verifier_key())
                {
                    continue;
                }
                keys.push(KeyWindow {
                    version,
                    verifier: key,
                    valid_from,
                    valid_until,
                });
            }
            ExportLine::Checkpoint {
                tree_size,
                note,
                key_version,
                signed_at,
                frontier,
                chain_hash,
            } => {
                if verifier.is_some() || origin.is_none() {
                    return Err(format_error(
                        line_no,
                        "checkpoints belong before the entries",
                    ));
                }
                if tree_size == anchor_size && anchor_size > 0 {
                    let nodes = hex::decode(&frontier)
                        .ok()
                        .and_then(|b| crate::auditlog::unpack_frontier(&b))
                        .ok_or_else(|| format_error(line_no, "bad compact range"))?;
                    let chain = hash32(&chain_hash)
                        .ok_or_else(|| format_error(line_no, "bad chain hash"))?;
                    anchor = Some(Anchor {
                        tree_size,
                        frontier: nodes,
                        chain_hash: chain,
                    });
                }
                checkpoints.push(StoredCheckpoint {
                    tree_size,
                    note,
                    key_version,
                    signed_at,
                });
            }
            ExportLine::Entry { seq, record, hash } => {
                if verifier.is_none() {
                    let Some(o) = &origin else {
                        return Err(format_error(line_no, "entries before the header"));
                    };
                    if anchor_size > 0 && anchor.is_none() {
                        return Err(Problem::Checkpoint {
                            tree_size: anchor_size,
                            reason: "the retention anchor's checkpoint is missing".into(),
                        }
                        .into());
                    }
                    verifier = Some(LogVerifier::new(
                        o,
                        &keys,
                        &checkpoints,
                        anchor.as_ref(),
                        trusted,
                    )?);
                }
                let Some(v) = verifier.as_mut() else {
                    return Err(format_error(line_no, "internal: no verifier"));
                };
                let Ok(hash) = hex::decode(&hash) else {
                    return Err(Problem::Entry {
                        seq: v.next_seq(),
                        reason: "hash is not hex".into(),
                    }
                    .into());
                };
                v.entry(seq, record.as_bytes(), &hash)?;
            }
        }
    }
    match verifier {
        Some(v) => Ok(v.finish()?),
        None => {
            let Some(o) = &origin else {
                return Err(format_error(0, "empty export"));
            };
            Ok(LogVerifier::new(o, &keys, &checkpoints, anchor.as_ref(), trusted)?.finish()?)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::audit::{GENESIS, chain_hash};
    use crate::auditlog::TreeBuilder;
    use crate::checkpoint::NoteSigner;

    fn export(n: u64) -> (Vec<String>, NoteVerifier) {
        let signer = NoteSigner::from_seed("custos-audit/t", &[3u8; 32]).unwrap();
        let mut lines = vec![
            serde_json::to_string(&ExportLine::Header {
                format: FORMAT.into(),
                origin: "custos-audit/t".into(),
                anchor: 0,
                exported_at: "2026-11-26T00:00:00Z".into(),
            })
            .unwrap(),
            serde_json::to_string(&ExportLine::Key {
                version: 1,
                verifier_key: signer.verifier().verifier_key(),
                valid_from: 0,
                valid_until: None,
            })
            .unwrap(),
        ];
        let mut entries = Vec::new();
        let mut builder = TreeBuilder::resume(0, Vec::new(), GENESIS).unwrap();
        let mut prev = GENESIS;
        for seq in 1..=n {
            let record = format!("{{\"seq\":{seq},\"action\":\"a\\nb\"}}");
            let h = chain_hash(&prev, record.as_bytes());
            prev = h;
            builder.push(seq, record.as_bytes(), &h).unwrap();
            entries.push(
                serde_json::to_string(&ExportLine::Entry {
                    seq,
                    record,
                    hash: hex::encode(h),
                })
                .unwrap(),
            );
        }
        let note = signer
            .sign(&Checkpoint {
                origin: "custos-audit/t".into(),
                size: n,
                root: builder.root(),
            })
            .unwrap();
        lines.push(
            serde_json::to_string(&ExportLine::Checkpoint {
                tree_size: n,
                note,
                key_version: 1,
                signed_at: 5,
                frontier: hex::encode(crate::auditlog::pack_frontier(builder.frontier())),
                chain_hash: hex::encode(builder.chain_hash()),
            })
            .unwrap(),
        );
        lines.extend(entries);
        (lines, signer.verifier())
    }

    fn run(lines: &[String], pinned: Option<&[NoteVerifier]>) -> Result<Verified, ExportError> {
        let text = lines.join("\n") + "\n";
        verify_export(text.as_bytes(), pinned, &[])
    }

    #[test]
    fn intact_export_verifies_with_pinned_key() {
        let (lines, key) = export(12);
        let ok = run(&lines, Some(&[key])).unwrap();
        assert_eq!((ok.entries, ok.checkpoints), (12, 1));
    }

    #[test]
    fn unpinned_key_fails() {
        let (lines, _) = export(12);
        let other = NoteSigner::from_seed("custos-audit/t", &[4u8; 32]).unwrap();
        assert!(run(&lines, Some(&[other.verifier()])).is_err());
    }

    #[test]
    fn every_single_byte_flip_in_an_entry_line_is_caught() {
        let (lines, key) = export(6);
        let target = lines.len() - 3;
        let original = lines[target].clone().into_bytes();
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= 0x01;
            let mut copy = lines.clone();
            copy[target] = String::from_utf8_lossy(&bytes).into_owned();
            if copy[target] == lines[target] {
                continue;
            }
            let result = run(&copy, Some(std::slice::from_ref(&key)));
            // A flip inside a JSON key name that serde still accepts cannot exist
            // (deny_unknown_fields), so every flip must fail.
            assert!(result.is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn dropped_last_line_is_truncation() {
        let (mut lines, key) = export(6);
        lines.pop();
        assert!(matches!(
            run(&lines, Some(&[key])),
            Err(ExportError::Log(Problem::Truncated {
                first_missing: 6,
                ..
            }))
        ));
    }
}
