//! RFC 6962 / RFC 9162 §2.1 Merkle tree hashing for the tamper-evident audit log: leaf and node
//! hashes, tree roots, inclusion and consistency proofs (generation and verification), and a
//! compact range (the perfect-subtree roots of a growing tree) so the server can extend its root
//! one leaf at a time without holding every leaf.
//!
//! Owns: the exact hash layout (this is what gets persisted and what external verifiers
//! recompute, so it follows the RFC bit for bit rather than a library's choices). Must not: do
//! IO, allocate proportionally to untrusted input beyond the proof it was given, or panic on any
//! input — verification runs on data an attacker may control.

use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// `MTH({})`, the root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

// Domain separation between leaves and interior nodes: without it a leaf whose bytes equal
// `left ‖ right` would hash like that node (a second preimage on the tree).
const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// Why a Merkle computation or proof check failed. Proof failures say which structural rule
/// broke so operators can tell a truncated proof from a forged one; none of this is secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// A leaf index at or beyond the tree size.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency check or proof from a larger tree to a smaller one ("time travel").
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeExceedsNew {
        /// The claimed earlier size.
        old_size: u64,
        /// The claimed later size.
        new_size: u64,
    },
    /// The proof has more or fewer nodes than the sizes and index require.
    #[error("proof has {actual} nodes, expected {expected}")]
    WrongProofLength {
        /// Nodes the proof must have.
        expected: usize,
        /// Nodes it has.
        actual: usize,
    },
    /// The proof is well-formed but does not lead to the given root(s).
    #[error("proof does not match the given root hash")]
    RootMismatch,
    /// Two tree heads of the same size have different roots: a split view.
    #[error("tree heads of equal size have different roots")]
    DifferentRootsForSameSize,
    /// A hash given as bytes is not 32 bytes long.
    #[error("hash must be 32 bytes, got {0}")]
    WrongHashLength(usize),
    /// A tree size that cannot be represented on this platform or has reached `u64::MAX`.
    #[error("tree size overflow")]
    SizeOverflow,
    /// A persisted compact range whose node count does not fit its size.
    #[error("compact range for size {size} needs {expected} nodes, got {actual}")]
    InvalidCompactRange {
        /// The persisted tree size.
        size: u64,
        /// Nodes a range of that size has (one per set bit of the size).
        expected: usize,
        /// Nodes that were supplied.
        actual: usize,
    },
}

/// `SHA-256(0x00 ‖ data)`: the hash of one log entry.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Checks that untrusted bytes are exactly one hash long (proofs arriving as JSON/base64).
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, MerkleError> {
    Hash::try_from(bytes).map_err(|_| MerkleError::WrongHashLength(bytes.len()))
}

/// `MTH(D[n])` over leaf hashes (not raw entries). The empty tree's root is [`EMPTY_ROOT`].
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [only] => *only,
        _ => match split(leaves) {
            Some((left, right)) => node_hash(&root(left), &root(right)),
            // Unreachable for len ≥ 2; returning a value keeps this function total.
            None => EMPTY_ROOT,
        },
    }
}

/// The audit path (RFC 9162 §2.1.3.1 `PATH`) for leaf `index`, ordered leaf → root.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, MerkleError> {
    let size = len_u64(leaves)?;
    let idx = usize::try_from(index)
        .ok()
        .filter(|i| *i < leaves.len())
        .ok_or(MerkleError::IndexOutOfRange { index, size })?;
    let mut out = Vec::new();
    path(idx, leaves, &mut out);
    Ok(out)
}

fn path(index: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let Some((left, right)) = split(leaves) else {
        return;
    };
    // The RFC appends the sibling subtree after the sub-path, which yields leaf → root order.
    if index < left.len() {
        path(index, left, out);
        out.push(root(right));
    } else {
        path(index - left.len(), right, out);
        out.push(root(left));
    }
}

/// The consistency proof (RFC 9162 §2.1.4.1 `PROOF`/`SUBPROOF`) that the first `old_size`
/// leaves form a prefix of `leaves`. Empty when `old_size` is 0 or equals the tree size.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, MerkleError> {
    let new_size = len_u64(leaves)?;
    if old_size > new_size {
        return Err(MerkleError::OldSizeExceedsNew { old_size, new_size });
    }
    let m = usize::try_from(old_size).map_err(|_| MerkleError::SizeOverflow)?;
    let mut out = Vec::new();
    // The RFC defines PROOF only for 0 < m; the empty tree is a prefix of everything, so its
    // proof carries nothing (and `verify_consistency` demands exactly that).
    if m > 0 {
        subproof(m, leaves, true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    if m == leaves.len() {
        // The verifier already knows the old root when the old tree is this exact subtree.
        if !complete {
            out.push(root(leaves));
        }
        return;
    }
    let Some((left, right)) = split(leaves) else {
        return;
    };
    if m <= left.len() {
        subproof(m, left, complete, out);
        out.push(root(right));
    } else {
        subproof(m - left.len(), right, false, out);
        out.push(root(left));
    }
}

/// RFC 9162 §2.1.3.2: checks that `leaf` (a leaf hash) sits at `index` in the tree of
/// `tree_size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    // Checked up front (by running the RFC's index walk without hashing) so a padded or
    // truncated proof gets a precise error; the walk below would reject it anyway.
    let expected = inclusion_proof_len(index, tree_size);
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if r == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// The number of nodes in an inclusion proof, by the same index walk as RFC 9162 §2.1.3.2.
/// Requires `index < tree_size`.
fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let (mut fn_, mut sn) = (index, tree_size.saturating_sub(1));
    let mut n = 0usize;
    while sn != 0 {
        if fn_ & 1 == 1 || fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
        n += 1;
    }
    n
}

/// RFC 9162 §2.1.4.2: checks that the tree of `old_size` leaves with root `old_root` is a prefix
/// of the tree of `new_size` leaves with root `new_root`.
///
/// Edge rules, from the RFC's definitions: `SUBPROOF(m, D[m], true)` is empty, so equal sizes
/// take an empty proof and must have equal roots; proofs exist only for `0 < m`, so from the
/// empty tree the proof must be empty and the old root must be `MTH({})` — any new tree extends
/// it. A non-empty proof in either case is rejected, as is `old_size > new_size`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::OldSizeExceedsNew { old_size, new_size });
    }
    if old_size == new_size || old_size == 0 {
        if !proof.is_empty() {
            return Err(MerkleError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        if old_size == 0 && *old_root != EMPTY_ROOT {
            return Err(MerkleError::RootMismatch);
        }
        if old_size == new_size && old_root != new_root {
            return Err(MerkleError::DifferentRootsForSameSize);
        }
        return Ok(());
    }

    // Now 0 < old_size < new_size.
    let old_is_power_of_two = old_size.is_power_of_two();
    let (fn0, sn0) = skip_common_right_edge(old_size - 1, new_size - 1);
    let walk = consistency_walk_len(fn0, sn0);
    // The RFC prepends old_root to the path when the old tree is a perfect subtree.
    let expected = if old_is_power_of_two { walk } else { walk + 1 };
    if proof.len() != expected {
        return Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }

    let mut nodes = proof.iter();
    let first = if old_is_power_of_two {
        Some(old_root)
    } else {
        nodes.next()
    };
    let Some(first) = first else {
        return Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    };
    let (mut fn_, mut sn) = (fn0, sn0);
    let (mut fr, mut sr) = (*first, *first);
    for c in nodes {
        if sn == 0 {
            return Err(MerkleError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(MerkleError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// RFC 9162 §2.1.4.2 step 4: drop the levels where the old tree's last leaf is a right child.
fn skip_common_right_edge(mut fn_: u64, mut sn: u64) -> (u64, u64) {
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    (fn_, sn)
}

/// How many path elements after the first one RFC 9162 §2.1.4.2 step 6 consumes.
fn consistency_walk_len(mut fn_: u64, mut sn: u64) -> usize {
    let mut n = 0usize;
    while sn != 0 {
        if fn_ & 1 == 1 || fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
        n += 1;
    }
    n
}

/// Splits at `k`, the largest power of two strictly below `len` (`len ≥ 2`).
fn split(leaves: &[Hash]) -> Option<(&[Hash], &[Hash])> {
    let n = leaves.len();
    if n < 2 {
        return None;
    }
    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    leaves.split_at_checked(k)
}

fn len_u64(leaves: &[Hash]) -> Result<u64, MerkleError> {
    u64::try_from(leaves.len()).map_err(|_| MerkleError::SizeOverflow)
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves, largest (leftmost)
/// first — one per set bit of `size`, so at most 64 hashes. Appending a leaf merges equal-size
/// subtrees like a binary counter's carry; the root folds them right to left, which is exactly
/// `MTH` because RFC 6962 splits at the largest power of two.
///
/// `nodes()` and `from_parts()` are the persisted form: `size` plus these hashes is everything
/// needed to resume appending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    nodes: Vec<Hash>,
}

impl CompactRange {
    /// The range of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a persisted range, checking that the node count matches the size.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Result<Self, MerkleError> {
        let expected = size.count_ones() as usize;
        if nodes.len() != expected {
            return Err(MerkleError::InvalidCompactRange {
                size,
                expected,
                actual: nodes.len(),
            });
        }
        Ok(Self { size, nodes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, leftmost (largest) first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends one leaf hash (see [`leaf_hash`]). O(log n) hashing.
    pub fn append(&mut self, leaf: Hash) -> Result<(), MerkleError> {
        let new_size = self.size.checked_add(1).ok_or(MerkleError::SizeOverflow)?;
        let mut carry = leaf;
        let mut bits = self.size;
        // Each trailing 1-bit of the old size is a subtree of the same height as `carry`.
        while bits & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                // Only reachable if the invariant nodes.len() == popcount(size) was broken,
                // which from_parts prevents; refuse rather than produce a wrong root.
                return Err(MerkleError::InvalidCompactRange {
                    size: self.size,
                    expected: self.size.count_ones() as usize,
                    actual: self.nodes.len(),
                });
            };
            carry = node_hash(&left, &carry);
            bits >>= 1;
        }
        self.nodes.push(carry);
        self.size = new_size;
        Ok(())
    }

    /// The root of the tree so far (`MTH` of all appended leaves).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return EMPTY_ROOT;
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize, seed: u64) -> Vec<Hash> {
        (0..n as u64)
            .map(|i| {
                let mut d = seed.to_le_bytes().to_vec();
                d.extend_from_slice(&i.to_le_bytes());
                leaf_hash(&d)
            })
            .collect()
    }

    fn flip(h: &Hash, byte: usize, bit: u8) -> Hash {
        let mut out = *h;
        out[byte] ^= 1 << bit;
        out
    }

    #[test]
    fn leaf_and_node_hashes_are_domain_separated_and_ordered() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut concat = a.to_vec();
        concat.extend_from_slice(&b);
        assert_ne!(leaf_hash(&concat), node_hash(&a, &b));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn compact_range_matches_root_for_sizes_0_to_300() {
        let all = leaves(300, 7);
        let mut cr = CompactRange::new();
        assert_eq!(cr.root(), root(&[]));
        for n in 1..=300usize {
            cr.append(all[n - 1]).unwrap();
            assert_eq!(cr.size(), n as u64);
            assert_eq!(cr.nodes().len(), n.count_ones() as usize);
            assert_eq!(cr.root(), root(&all[..n]), "size {n}");
        }
        let restored = CompactRange::from_parts(cr.size(), cr.nodes().to_vec()).unwrap();
        assert_eq!(restored, cr);
        assert!(CompactRange::from_parts(5, vec![[0; 32]]).is_err());
        assert!(CompactRange::from_parts(0, vec![[0; 32]]).is_err());
    }

    #[test]
    fn compact_range_refuses_to_overflow() {
        let mut cr = CompactRange::from_parts(u64::MAX, vec![[1; 32]; 64]).unwrap();
        assert_eq!(cr.append([2; 32]), Err(MerkleError::SizeOverflow));
    }

    #[test]
    fn proofs_on_empty_or_out_of_range() {
        assert!(inclusion_proof(&[], 0).is_err());
        let l = leaves(3, 1);
        assert!(inclusion_proof(&l, 3).is_err());
        assert!(inclusion_proof(&l, u64::MAX).is_err());
        assert!(consistency_proof(&l, 4).is_err());
        assert_eq!(consistency_proof(&l, 0).unwrap(), Vec::<Hash>::new());
        assert_eq!(consistency_proof(&l, 3).unwrap(), Vec::<Hash>::new());
        assert!(verify_inclusion(&l[0], 0, 0, &[], &EMPTY_ROOT).is_err());
    }

    #[test]
    fn consistency_edge_rules() {
        let l = leaves(5, 2);
        let r5 = root(&l);
        // (0,0), (0,n), (n,n): empty proof only.
        verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).unwrap();
        verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[]).unwrap();
        verify_consistency(5, 5, &r5, &r5, &[]).unwrap();
        assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[r5]).is_err());
        assert!(verify_consistency(0, 5, &EMPTY_ROOT, &r5, &[r5]).is_err());
        assert!(verify_consistency(5, 5, &r5, &r5, &[r5]).is_err());
        assert!(verify_consistency(0, 5, &r5, &r5, &[]).is_err());
        assert!(verify_consistency(0, 0, &r5, &r5, &[]).is_err());
        assert_eq!(
            verify_consistency(5, 5, &r5, &EMPTY_ROOT, &[]),
            Err(MerkleError::DifferentRootsForSameSize)
        );
        // Time travel.
        assert!(matches!(
            verify_consistency(5, 4, &r5, &r5, &[]),
            Err(MerkleError::OldSizeExceedsNew { .. })
        ));
        assert!(verify_consistency(1, 5, &l[0], &r5, &[]).is_err());
    }

    /// Small trees exhaustively: every index / old size, every bit of every proof node.
    #[test]
    fn exhaustive_small_trees_flip_every_bit() {
        for n in 1..=20usize {
            let l = leaves(n, n as u64);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i as u64).unwrap();
                verify_inclusion(&l[i], i as u64, n as u64, &p, &r).unwrap();
                for k in 0..p.len() {
                    for byte in 0..32 {
                        for bit in 0..8 {
                            let mut bad = p.clone();
                            bad[k] = flip(&bad[k], byte, bit);
                            assert!(verify_inclusion(&l[i], i as u64, n as u64, &bad, &r).is_err());
                        }
                    }
                }
            }
            for m in 0..=n {
                let p = consistency_proof(&l, m as u64).unwrap();
                let rm = root(&l[..m]);
                verify_consistency(m as u64, n as u64, &rm, &r, &p).unwrap();
                for k in 0..p.len() {
                    for byte in 0..32 {
                        let mut bad = p.clone();
                        bad[k] = flip(&bad[k], byte, (byte % 8) as u8);
                        assert!(verify_consistency(m as u64, n as u64, &rm, &r, &bad).is_err());
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_trees_all_proofs_verify_and_mutations_fail(
            n in 1usize..200,
            seed in any::<u64>(),
            pick in any::<u64>(),
            pick_m in any::<u64>(),
        ) {
            let l = leaves(n, seed);
            let r = root(&l);
            let size = n as u64;
            for i in 0..n {
                let p = inclusion_proof(&l, i as u64).unwrap();
                prop_assert!(verify_inclusion(&l[i], i as u64, size, &p, &r).is_ok());
            }
            for m in 0..=n {
                let p = consistency_proof(&l, m as u64).unwrap();
                prop_assert!(verify_consistency(m as u64, size, &root(&l[..m]), &r, &p).is_ok());
            }

            // One chosen index: every byte of every node flipped, and other indices/sizes.
            let i = (pick % size) as usize;
            let p = inclusion_proof(&l, i as u64).unwrap();
            for k in 0..p.len() {
                for byte in 0..32 {
                    let mut bad = p.clone();
                    bad[k][byte] ^= 0xff;
                    prop_assert!(verify_inclusion(&l[i], i as u64, size, &bad, &r).is_err());
                }
            }
            // The probe set of transparency-dev/merkle proof/verify_test.go. (Size ±1 is not in
            // it on purpose: e.g. index 0 of sizes 3 and 4 hash along the same path, and the
            // size is authenticated by the signed checkpoint, not by the proof.)
            for other in [i as u64 ^ 2, i as u64 + 1, (i as u64).wrapping_sub(1), size] {
                if other != i as u64 {
                    prop_assert!(verify_inclusion(&l[i], other, size, &p, &r).is_err());
                }
            }
            for other_size in [size * 2, size / 2] {
                if other_size != size {
                    prop_assert!(verify_inclusion(&l[i], i as u64, other_size, &p, &r).is_err());
                }
            }

            let m = pick_m % (size + 1);
            let p = consistency_proof(&l, m).unwrap();
            let rm = root(&l[..m as usize]);
            for k in 0..p.len() {
                for byte in 0..32 {
                    let mut bad = p.clone();
                    bad[k][byte] ^= 0xff;
                    prop_assert!(verify_consistency(m, size, &rm, &r, &bad).is_err());
                }
            }
            for other_m in [m + 1, m ^ 2, m.wrapping_sub(1)] {
                if other_m != m {
                    prop_assert!(verify_consistency(other_m, size, &rm, &r, &p).is_err());
                }
            }
            // From the empty tree every larger tree is consistent, so only m > 0 is probed.
            for other_n in [size * 2, size / 2] {
                if other_n != size && m > 0 {
                    prop_assert!(verify_consistency(m, other_n, &rm, &r, &p).is_err());
                }
            }
        }

        #[test]
        fn verify_never_panics(
            leaf in any::<[u8; 32]>(),
            index in any::<u64>(),
            size in any::<u64>(),
            old_size in any::<u64>(),
            proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70),
            r1 in any::<[u8; 32]>(),
            r2 in any::<[u8; 32]>(),
        ) {
            let _ = verify_inclusion(&leaf, index, size, &proof, &r1);
            let _ = verify_inclusion(&leaf, index % size.max(1), size, &proof, &r1);
            let _ = verify_consistency(old_size, size, &r1, &r2, &proof);
            let _ = verify_consistency(old_size % size.max(1), size, &r1, &r2, &proof);
            let _ = verify_consistency(old_size % 300, size % 300, &r1, &r2, &proof);
        }
    }
}
