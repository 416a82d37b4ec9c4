//! FF1 through the public AES-256 API: NIST samples 7–9 (samples 1–6 use AES-128/-192 and are
//! checked by the unit tests in `src/ff1.rs` through the crate-private generic path), round trips,
//! domain refusal, alphabet errors and key redaction.

// Helpers outside `#[test]` fns are not covered by clippy's allow-*-in-tests; failing here is
// a failing test, which is what we want.
#![allow(clippy::unwrap_used)]

use custos_crypto::ff1::{
    Alphabet, Ff1Error, Ff1Key, MIN_DOMAIN_SIZE, check_domain, decrypt, encrypt,
};
use proptest::prelude::*;

const K256: &str = "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94";

fn nist_key() -> Ff1Key {
    Ff1Key::from_slice(&hex::decode(K256).unwrap()).unwrap()
}

#[test]
fn nist_samples_7_to_9_aes256_both_directions() {
    let t10 = hex::decode("39383736353433323130").unwrap();
    let t11 = hex::decode("3737373770717273373737").unwrap();
    let digits = Alphabet::digits();
    let alnum = Alphabet::lowercase_alphanumeric();
    let cases: [(&[u8], &Alphabet, &str, &str); 3] = [
        (b"", &digits, "0123456789", "6657667009"),
        (&t10, &digits, "0123456789", "1001623463"),
        (&t11, &alnum, "0123456789abcdefghi", "xs8a0azh2avyalyzuwd"),
    ];
    let key = nist_key();
    for (tweak, alphabet, pt, ct) in cases {
        assert_eq!(encrypt(&key, tweak, alphabet, pt).unwrap(), ct);
        assert_eq!(decrypt(&key, tweak, alphabet, ct).unwrap(), pt);
    }
}

#[test]
fn domain_below_one_million_is_refused() {
    let digits = Alphabet::digits();
    assert_eq!(
        check_domain(&digits, 5),
        Err(Ff1Error::DomainTooSmall { radix: 10, len: 5 })
    );
    assert_eq!(check_domain(&digits, 6), Ok(()));
    assert!(check_domain(&digits, 0).is_err());

    let binary = Alphabet::new("01").unwrap();
    assert!(check_domain(&binary, 19).is_err());
    assert_eq!(check_domain(&binary, 20), Ok(()));

    let alnum = Alphabet::lowercase_alphanumeric();
    assert!(check_domain(&alnum, 3).is_err()); // 46,656
    assert_eq!(check_domain(&alnum, 4), Ok(())); // 1,679,616
    assert_eq!(MIN_DOMAIN_SIZE, 1_000_000);

    // encrypt/decrypt enforce the same floor on the actual input.
    let key = nist_key();
    assert_eq!(
        encrypt(&key, b"t", &digits, "12345"),
        Err(Ff1Error::DomainTooSmall { radix: 10, len: 5 })
    );
    assert!(decrypt(&key, b"t", &digits, "").is_err());
    assert!(encrypt(&key, b"t", &digits, "123456").is_ok());
}

#[test]
fn char_outside_alphabet_is_refused_by_position_without_echoing_it() {
    let key = nist_key();
    let err = encrypt(&key, b"", &Alphabet::digits(), "12345Z7890").unwrap_err();
    assert_eq!(err, Ff1Error::NotInAlphabet { position: 5 });
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains('Z'), "{shown}");

    // Positions count characters, not bytes.
    let err = decrypt(&key, b"", &Alphabet::digits(), "12é4567890").unwrap_err();
    assert_eq!(err, Ff1Error::NotInAlphabet { position: 2 });
}

#[test]
fn alphabet_validation() {
    assert_eq!(Alphabet::new("0"), Err(Ff1Error::InvalidRadix { size: 1 }));
    assert_eq!(Alphabet::new(""), Err(Ff1Error::InvalidRadix { size: 0 }));
    assert_eq!(
        Alphabet::new("0123456780"),
        Err(Ff1Error::DuplicateAlphabetChar { position: 9 })
    );
    let greek = Alphabet::new("αβγδεζηθικ").unwrap();
    assert_eq!(greek.radix(), 10);
    assert!(greek.contains('κ'));
    assert!(!greek.contains('0'));
}

#[test]
fn non_ascii_alphabet_round_trips_char_for_char() {
    let greek = Alphabet::new("αβγδεζηθικ").unwrap();
    let key = Ff1Key::generate().unwrap();
    let pt = "αβγδεζηθικα";
    let ct = encrypt(&key, b"tenant/field", &greek, pt).unwrap();
    assert_eq!(ct.chars().count(), pt.chars().count());
    assert!(ct.chars().all(|c| greek.contains(c)));
    assert_eq!(decrypt(&key, b"tenant/field", &greek, &ct).unwrap(), pt);
}

#[test]
fn key_length_is_validated_and_debug_is_redacted() {
    assert_eq!(
        Ff1Key::from_slice(&[7u8; 16]).unwrap_err(),
        Ff1Error::InvalidKeyLength {
            expected: 32,
            found: 16
        }
    );
    let key = Ff1Key::from_slice(&[0xABu8; 32]).unwrap();
    let shown = format!("{key:?} {key:#?}");
    assert!(shown.contains("redacted"), "{shown}");
    assert!(!shown.to_lowercase().contains("ab"), "{shown}");
    assert!(!shown.contains("171"), "{shown}");
}

#[test]
fn tweak_changes_ciphertext() {
    let key = nist_key();
    let a = encrypt(&key, b"tenant-a/ssn", &Alphabet::digits(), "123456789").unwrap();
    let b = encrypt(&key, b"tenant-b/ssn", &Alphabet::digits(), "123456789").unwrap();
    assert_ne!(a, b);
}

proptest! {
    #[test]
    fn digits_round_trip(
        pt in "[0-9]{6,40}",
        tweak in proptest::collection::vec(any::<u8>(), 0..32),
        key in proptest::array::uniform32(any::<u8>()),
    ) {
        let key = Ff1Key::from_slice(&key).unwrap();
        let digits = Alphabet::digits();
        let ct = encrypt(&key, &tweak, &digits, &pt).unwrap();
        prop_assert_eq!(ct.len(), pt.len());
        prop_assert!(ct.chars().all(|c| c.is_ascii_digit()));
        prop_assert_eq!(decrypt(&key, &tweak, &digits, &ct).unwrap(), pt);
    }
}
