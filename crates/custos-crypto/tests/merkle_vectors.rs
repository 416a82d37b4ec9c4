//! Known-answer vectors and negative probes for `custos_crypto::merkle`, copied verbatim from
//! docs SECURITY.md §1.4. Their source is the RFC 6962 test data of the Go reference
//! implementation: transparency-dev/merkle `testonly/constants.go`, `rfc6962/rfc6962_test.go`
//! and `proof/verify_test.go` (originally certificate-transparency-go / Trillian). The Go
//! source stores 1-based leaf indices; SECURITY.md (and these tests) use 0-based ones.

// clippy.toml allows these only inside #[test] functions; the helpers below are test code too,
// and a panic in them is a failing test, which is what we want.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custos_crypto::merkle::{
    EMPTY_ROOT, Hash, MerkleError, consistency_proof, hash_from_slice, inclusion_proof, leaf_hash,
    node_hash, root, verify_consistency, verify_inclusion,
};

fn h(hex_str: &str) -> Hash {
    hex::decode(hex_str).unwrap().try_into().unwrap()
}

/// Leaf inputs D[0..7].
const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

const LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

const LEVEL1: [&str; 4] = [
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
];

const LEVEL2: [&str; 2] = [
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
];

const LEVEL3: &str = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";

/// MTH(D[0:n]) for n = 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, proof leaf → root).
const INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (size1, size2, proof).
const CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

fn leaves() -> Vec<Hash> {
    LEAF_INPUTS
        .iter()
        .map(|d| leaf_hash(&hex::decode(d).unwrap()))
        .collect()
}

fn proof(p: &[&str]) -> Vec<Hash> {
    p.iter().map(|x| h(x)).collect()
}

fn root_of(n: u64) -> Hash {
    h(ROOTS[n as usize])
}

fn flip_bit(x: &Hash, bit: usize) -> Hash {
    let mut out = *x;
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

#[test]
fn hasher_vectors() {
    assert_eq!(
        root(&[]),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_eq!(EMPTY_ROOT, root(&[]));
    assert_eq!(
        leaf_hash(b""),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    );
    assert_eq!(
        leaf_hash(b"L123456"),
        h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    );
    // The Go vector hashes the raw bytes "N123" ‖ "N456" as children; node_hash takes 32-byte
    // hashes, so reproduce the byte layout 0x01 ‖ left ‖ right directly.
    let mut raw = vec![0x01u8];
    raw.extend_from_slice(b"N123");
    raw.extend_from_slice(b"N456");
    use sha2::Digest as _;
    let got: Hash = sha2::Sha256::digest(&raw).into();
    assert_eq!(
        got,
        h("aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")
    );
    // rfc6962_test.go: a leaf and a node over the same bytes differ; node hashing is ordered.
    let (a, b) = (leaf_hash(b"N123"), leaf_hash(b"N456"));
    let mut ab = a.to_vec();
    ab.extend_from_slice(&b);
    assert_ne!(leaf_hash(&ab), node_hash(&a, &b));
    assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
}

#[test]
fn tree_levels_and_roots() {
    let l = leaves();
    for (i, want) in LEAF_HASHES.iter().enumerate() {
        assert_eq!(l[i], h(want), "leaf {i}");
    }
    for (i, want) in LEVEL1.iter().enumerate() {
        assert_eq!(node_hash(&l[2 * i], &l[2 * i + 1]), h(want), "level1 {i}");
    }
    for (i, want) in LEVEL2.iter().enumerate() {
        assert_eq!(root(&l[4 * i..4 * i + 4]), h(want), "level2 {i}");
    }
    assert_eq!(root(&l), h(LEVEL3));
    for n in 0..=8usize {
        assert_eq!(root(&l[..n]), h(ROOTS[n]), "root {n}");
    }
}

#[test]
fn consistency_happy_path_json_encoding() {
    // testdata/consistency/1/happy-path.json stores the 1→8 roots in base64.
    let r1 = STANDARD
        .decode("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=")
        .unwrap();
    let r2 = STANDARD
        .decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
        .unwrap();
    assert_eq!(hash_from_slice(&r1).unwrap(), root_of(1));
    assert_eq!(hash_from_slice(&r2).unwrap(), root_of(8));
}

#[test]
fn wrong_hash_length_is_rejected() {
    assert_eq!(
        hash_from_slice(&[0u8; 31]),
        Err(MerkleError::WrongHashLength(31))
    );
    assert_eq!(
        hash_from_slice(&[0u8; 33]),
        Err(MerkleError::WrongHashLength(33))
    );
    assert!(hash_from_slice(&[]).is_err());
}

/// Every probe of transparency-dev/merkle proof/verify_test.go for inclusion proofs.
fn inclusion_probes(
    index: u64,
    size: u64,
    leaf: Hash,
    proof: &[Hash],
    root: Hash,
) -> Vec<(String, u64, u64, Hash, Vec<Hash>, Hash)> {
    let mut out = Vec::new();
    let mut add = |name: String, i: u64, s: u64, l: Hash, p: Vec<Hash>, r: Hash| {
        if (i, s, l, p.as_slice(), r) != (index, size, leaf, proof, root) {
            out.push((name, i, s, l, p, r));
        }
    };
    let p = proof.to_vec();
    add(
        "index-1".into(),
        index.wrapping_sub(1),
        size,
        leaf,
        p.clone(),
        root,
    );
    add("index+1".into(), index + 1, size, leaf, p.clone(), root);
    add("index^2".into(), index ^ 2, size, leaf, p.clone(), root);
    add("size*2".into(), index, size * 2, leaf, p.clone(), root);
    add("size/2".into(), index, size / 2, leaf, p.clone(), root);
    add(
        "wrong leaf".into(),
        index,
        size,
        leaf_hash(b"WrongLeaf"),
        p.clone(),
        root,
    );
    add(
        "empty root".into(),
        index,
        size,
        leaf,
        p.clone(),
        EMPTY_ROOT,
    );
    add(
        "random root".into(),
        index,
        size,
        leaf,
        p.clone(),
        leaf_hash(b"random"),
    );
    let garbage = leaf_hash(b"garbage");
    let with = |front: Option<Hash>, back: Option<Hash>| {
        let mut v: Vec<Hash> = front.into_iter().collect();
        v.extend_from_slice(proof);
        v.extend(back);
        v
    };
    add(
        "trailing garbage".into(),
        index,
        size,
        leaf,
        with(None, Some(garbage)),
        root,
    );
    add(
        "preceding garbage".into(),
        index,
        size,
        leaf,
        with(Some(garbage), None),
        root,
    );
    add(
        "trailing root".into(),
        index,
        size,
        leaf,
        with(None, Some(root)),
        root,
    );
    add(
        "preceding root".into(),
        index,
        size,
        leaf,
        with(Some(root), None),
        root,
    );
    for (k, node) in proof.iter().enumerate() {
        for bit in [4usize, 0, 255] {
            let mut q = p.clone();
            q[k] = flip_bit(node, bit);
            add(format!("proof[{k}] bit {bit}"), index, size, leaf, q, root);
        }
    }
    if !proof.is_empty() {
        add(
            "last removed".into(),
            index,
            size,
            leaf,
            p[..p.len() - 1].to_vec(),
            root,
        );
        for pos in 0..=p.len() {
            let mut q = p.clone();
            q.insert(pos, garbage);
            add(format!("inserted at {pos}"), index, size, leaf, q, root);
        }
    }
    out
}

#[test]
fn inclusion_vectors_and_probes() {
    let l = leaves();
    for (index, size, p) in INCLUSION {
        let want = proof(p);
        let r = root_of(size);
        let leaf = l[index as usize];
        assert_eq!(
            inclusion_proof(&l[..size as usize], index).unwrap(),
            want,
            "generate ({index},{size})"
        );
        verify_inclusion(&leaf, index, size, &want, &r).unwrap();
        let probes = inclusion_probes(index, size, leaf, &want, r);
        assert!(probes.len() >= 8);
        for (name, i, s, lf, q, rt) in probes {
            assert!(
                verify_inclusion(&lf, i, s, &q, &rt).is_err(),
                "probe {name} on ({index},{size}) verified"
            );
        }
    }
}

#[test]
fn inclusion_all_pairs_of_the_8_leaf_tree() {
    let l = leaves();
    for size in 1..=8u64 {
        for index in 0..size {
            let p = inclusion_proof(&l[..size as usize], index).unwrap();
            verify_inclusion(&l[index as usize], index, size, &p, &root_of(size)).unwrap();
            for (name, i, s, lf, q, rt) in
                inclusion_probes(index, size, l[index as usize], &p, root_of(size))
            {
                assert!(
                    verify_inclusion(&lf, i, s, &q, &rt).is_err(),
                    "probe {name} on ({index},{size}) verified"
                );
            }
        }
    }
}

type ConsistencyCase = (String, u64, u64, Hash, Hash, Vec<Hash>);

/// Every probe of transparency-dev/merkle proof/verify_test.go for consistency proofs.
fn consistency_probes(
    s1: u64,
    s2: u64,
    r1: Hash,
    r2: Hash,
    proof: &[Hash],
) -> Vec<ConsistencyCase> {
    let mut out = Vec::new();
    let mut add = |name: String, a: u64, b: u64, x: Hash, y: Hash, p: Vec<Hash>| {
        if (a, b, x, y, p.as_slice()) != (s1, s2, r1, r2, proof) {
            out.push((name, a, b, x, y, p));
        }
    };
    let p = proof.to_vec();
    add("size1-1".into(), s1.wrapping_sub(1), s2, r1, r2, p.clone());
    add("size1+1".into(), s1 + 1, s2, r1, r2, p.clone());
    add("size1^2".into(), s1 ^ 2, s2, r1, r2, p.clone());
    add("size2*2".into(), s1, s2 * 2, r1, r2, p.clone());
    add("size2/2".into(), s1, s2 / 2, r1, r2, p.clone());
    add(
        "wrong root1".into(),
        s1,
        s2,
        leaf_hash(b"WrongRoot1"),
        r2,
        p.clone(),
    );
    add(
        "wrong root2".into(),
        s1,
        s2,
        r1,
        leaf_hash(b"WrongRoot2"),
        p.clone(),
    );
    add("swapped roots".into(), s1, s2, r2, r1, p.clone());
    add("empty proof".into(), s1, s2, r1, r2, Vec::new());
    let garbage = leaf_hash(b"garbage");
    let prepend = |x: Hash| {
        let mut v = vec![x];
        v.extend_from_slice(proof);
        v
    };
    let mut trailing = p.clone();
    trailing.push(garbage);
    add("trailing garbage".into(), s1, s2, r1, r2, trailing);
    add("preceding garbage".into(), s1, s2, r1, r2, prepend(garbage));
    add("prepended root1".into(), s1, s2, r1, r2, prepend(r1));
    add("prepended root2".into(), s1, s2, r1, r2, prepend(r2));
    if let Some(first) = proof.first() {
        add("prepended proof[0]".into(), s1, s2, r1, r2, prepend(*first));
        add(
            "truncated".into(),
            s1,
            s2,
            r1,
            r2,
            p[..p.len() - 1].to_vec(),
        );
    }
    for (k, node) in proof.iter().enumerate() {
        for bit in [4usize, 0, 255] {
            let mut q = p.clone();
            q[k] = flip_bit(node, bit);
            add(format!("proof[{k}] bit {bit}"), s1, s2, r1, r2, q);
        }
    }
    out
}

#[test]
fn consistency_vectors_and_probes() {
    let l = leaves();
    for (s1, s2, p) in CONSISTENCY {
        let want = proof(p);
        let (r1, r2) = (root_of(s1), root_of(s2));
        assert_eq!(
            consistency_proof(&l[..s2 as usize], s1).unwrap(),
            want,
            "generate ({s1},{s2})"
        );
        verify_consistency(s1, s2, &r1, &r2, &want).unwrap();
        for (name, a, b, x, y, q) in consistency_probes(s1, s2, r1, r2, &want) {
            assert!(
                verify_consistency(a, b, &x, &y, &q).is_err(),
                "probe {name} on ({s1},{s2}) verified"
            );
        }
    }
}

#[test]
fn consistency_all_pairs_of_the_8_leaf_tree() {
    let l = leaves();
    for s2 in 1..=8u64 {
        for s1 in 1..=s2 {
            let p = consistency_proof(&l[..s2 as usize], s1).unwrap();
            let (r1, r2) = (root_of(s1), root_of(s2));
            verify_consistency(s1, s2, &r1, &r2, &p).unwrap();
            for (name, a, b, x, y, q) in consistency_probes(s1, s2, r1, r2, &p) {
                assert!(
                    verify_consistency(a, b, &x, &y, &q).is_err(),
                    "probe {name} on ({s1},{s2}) verified"
                );
            }
        }
    }
}

#[test]
fn consistency_edge_sizes() {
    let r8 = root_of(8);
    // (0,0), (0,n), (n,n) with matching roots need an empty proof; non-empty must fail.
    verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).unwrap();
    verify_consistency(0, 8, &EMPTY_ROOT, &r8, &[]).unwrap();
    verify_consistency(8, 8, &r8, &r8, &[]).unwrap();
    assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[r8]).is_err());
    assert!(verify_consistency(0, 8, &EMPTY_ROOT, &r8, &[r8]).is_err());
    assert!(verify_consistency(8, 8, &r8, &r8, &[r8]).is_err());
    // Time travel.
    assert_eq!(
        verify_consistency(8, 1, &r8, &root_of(1), &[]),
        Err(MerkleError::OldSizeExceedsNew {
            old_size: 8,
            new_size: 1
        })
    );
    let p = proof(CONSISTENCY[1].2);
    assert!(verify_consistency(8, 1, &r8, &root_of(1), &p).is_err());
}
