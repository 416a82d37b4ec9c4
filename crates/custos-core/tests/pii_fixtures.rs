//! PII detection against the Presidio test numbers in SECURITY.md §5 (copied exactly) and the
//! shapes named in the data-protection brief, plus robustness properties.

use custos_core::pii::{Detection, PiiKind, counts, detect, redact};
use proptest::prelude::*;

/// `(input, expected kind)`: the whole input must be detected as exactly one span of that kind.
const POSITIVE: &[(&str, PiiKind)] = &[
    // presidio-analyzer/tests/test_credit_card_recognizer.py — must be detected.
    ("4012888888881881", PiiKind::PaymentCard),
    ("4012-8888-8888-1881", PiiKind::PaymentCard),
    ("4012 8888 8888 1881", PiiKind::PaymentCard),
    ("4111111111111111", PiiKind::PaymentCard),
    ("371449635398431", PiiKind::PaymentCard),
    ("5555555555554444", PiiKind::PaymentCard),
    ("30569309025904", PiiKind::PaymentCard),
    ("6011000400000000", PiiKind::PaymentCard),
    ("3528000700000000", PiiKind::PaymentCard),
    ("5019717010103742", PiiKind::PaymentCard),
    ("122000000000003", PiiKind::PaymentCard),
    // presidio-analyzer/tests/test_us_ssn_recognizer.py — medium confidence.
    ("078-05-1123", PiiKind::UsSsn),
    ("078.05.1123", PiiKind::UsSsn),
    ("078 05 1123", PiiKind::UsSsn),
    // ISO 13616 examples (SECURITY.md §5), compact and in print form.
    ("GB82WEST12345698765432", PiiKind::Iban),
    ("DE89370400440532013000", PiiKind::Iban),
    ("GB82 WEST 1234 5698 7654 32", PiiKind::Iban),
    ("DE89 3704 0044 0532 0130 00", PiiKind::Iban),
    // Shapes named in the brief.
    ("(555) 123-4567", PiiKind::Phone),
    ("555-123-4567", PiiKind::Phone),
    ("+44 20 7946 0958", PiiKind::Phone),
    ("+14155552671", PiiKind::Phone),
    ("jane.doe@example.com", PiiKind::Email),
    ("192.168.0.1", PiiKind::IpAddress),
    ("2001:db8:85a3::8a2e:370:7334", PiiKind::IpAddress),
];

/// Inputs that must yield no detection at all, alone or after a context phrase.
const NEGATIVE: &[&str] = &[
    // Credit cards: "must not be detected even with context" (Luhn fails).
    "4012-8888-8888-1882",
    "36168002586008",
    // US SSN: "no match".
    "0780511201",
    "078051120",
    "000000000",
    "666000000",
    "078-05-0000",
    "078 00 1123",
    "693-09.4444",
    // IBAN with a wrong check digit.
    "GB82WEST12345698765431",
    // Brief: impossible areas and published samples.
    "900-12-3456",
    "219-09-9999",
    "078-05-1120",
    "111-11-1111",
];

const CONTEXTS: &[&str] = &["", "credit card number: ", "my ssn is ", "IBAN "];

fn only(text: &str) -> Vec<(PiiKind, &str)> {
    detect(text)
        .iter()
        .map(|d| (d.kind, &text[d.start..d.end]))
        .collect()
}

#[test]
fn presidio_and_brief_positives_are_detected_alone_and_in_context() {
    for &(value, kind) in POSITIVE {
        assert_eq!(only(value), vec![(kind, value)], "alone: {value}");
        let framed = format!("value: {value}, end");
        assert_eq!(only(&framed), vec![(kind, value)], "framed: {value}");
    }
}

#[test]
fn presidio_and_brief_negatives_are_not_detected() {
    for value in NEGATIVE {
        for ctx in CONTEXTS {
            let text = format!("{ctx}{value}");
            assert_eq!(only(&text), vec![], "{text:?}");
        }
    }
}

/// Presidio scores the bare `078051121` only 0.3–0.4 ("weak"). Nine bare digits are far more
/// often an ID than an SSN, so Custos reports them only after a context word.
#[test]
fn presidio_weak_bare_ssn_needs_context() {
    assert_eq!(only("078051121"), vec![]);
    assert_eq!(only("order 078051121"), vec![]);
    for ctx in ["SSN: ", "ssn#", "Social Security number ", "my SSN is "] {
        let text = format!("{ctx}078051121");
        assert_eq!(only(&text), vec![(PiiKind::UsSsn, "078051121")], "{text:?}");
    }
    // Context does not rescue an invalid number.
    assert_eq!(only("SSN: 078051120"), vec![]);
    // "ssn" must be a word, not part of one.
    assert_eq!(only("classname 078051121"), vec![]);
}

#[test]
fn mixed_text_counts_and_redaction() {
    let text = "Contact jane.doe@example.com or (555) 123-4567; card 4111 1111 1111 1111, \
                IBAN GB82 WEST 1234 5698 7654 32, SSN 078-05-1123, from 10.1.2.3 — ünïcödé ✓";
    let found = detect(text);
    let c = counts(text);
    assert_eq!(c.get(&PiiKind::Email), Some(&1));
    assert_eq!(c.get(&PiiKind::Phone), Some(&1));
    assert_eq!(c.get(&PiiKind::PaymentCard), Some(&1));
    assert_eq!(c.get(&PiiKind::Iban), Some(&1));
    assert_eq!(c.get(&PiiKind::UsSsn), Some(&1));
    assert_eq!(c.get(&PiiKind::IpAddress), Some(&1));
    assert_eq!(
        redact(text, &found),
        "Contact [EMAIL] or [PHONE]; card [PAYMENT_CARD], IBAN [IBAN], SSN [US_SSN], \
         from [IP_ADDRESS] — ünïcödé ✓"
    );
}

#[test]
fn numbers_inside_words_or_longer_numbers_are_not_split_out() {
    for text in [
        "id4111111111111111",
        "41111111111111111111111",
        "12-078-05-1123",
        "078-05-1123-9",
        "1.2.3.4.5",
        "x555-123-4567",
        "ab@cd",
        "GB82WEST12345698765432X",
    ] {
        assert_eq!(only(text), vec![], "{text:?}");
    }
}

#[test]
fn adversarial_repetitions_finish() {
    // Linear by construction; these would be pathological for a backtracking matcher.
    for unit in [
        "1-", "1 ", "a@", ".@", "::", "1.", "+1 ", "(1", "GB82 ", "a.", "9",
    ] {
        let text = unit.repeat(20_000);
        let found = detect(&text);
        assert!(found.windows(2).all(|w| w[0].end <= w[1].start));
    }
}

fn check_invariants(text: &str) -> Result<(), TestCaseError> {
    let found: Vec<Detection> = detect(text);
    for d in &found {
        prop_assert!(d.start < d.end && d.end <= text.len());
        prop_assert!(text.is_char_boundary(d.start) && text.is_char_boundary(d.end));
    }
    prop_assert!(
        found
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.end <= b.start))
    );
    let total: u32 = counts(text).values().sum();
    prop_assert_eq!(u32::try_from(found.len()).ok(), Some(total));
    let _ = redact(text, &found);
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_unicode_never_panics(chars in proptest::collection::vec(any::<char>(), 0..512)) {
        let text: String = chars.into_iter().collect();
        prop_assert!(text.len() <= 2048);
        check_invariants(&text)?;
    }

    #[test]
    fn pii_flavoured_text_never_panics(text in "[0-9a-fA-FGBDEX +().@:#/é✓-]{0,700}") {
        check_invariants(&text)?;
    }

    #[test]
    fn redact_never_panics_on_arbitrary_spans(
        text in "\\PC{0,64}",
        spans in proptest::collection::vec((0usize..300, 0usize..300), 0..8),
    ) {
        let dets: Vec<Detection> = spans
            .into_iter()
            .map(|(start, end)| Detection { kind: PiiKind::Phone, start, end })
            .collect();
        let _ = redact(&text, &dets);
    }
}
