//! Hash chaining of audit records. Each record's hash covers the previous record's hash, so
//! changing, removing or reordering any stored record breaks every hash after it.

use sha2::{Digest, Sha256};

/// The hash that precedes the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// `SHA-256("custos-audit-v1" ‖ 0x00 ‖ previous ‖ record)`. The domain prefix keeps these hashes
/// from colliding with any other SHA-256 use in the system.
pub fn chain_hash(previous: &[u8; 32], record: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"custos-audit-v1\0");
    hasher.update(previous);
    hasher.update(record);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_depend_on_order_and_content() {
        let a = chain_hash(&GENESIS, b"a");
        let ab = chain_hash(&a, b"b");
        let b = chain_hash(&GENESIS, b"b");
        let ba = chain_hash(&b, b"a");
        assert_ne!(ab, ba);
        assert_ne!(chain_hash(&a, b"c"), ab);
    }
}
