//! Detection of personal data in free text: e-mail addresses, phone numbers, payment cards,
//! IBANs, US social security numbers and IP addresses.
//!
//! Owns: the recognizers (hand-written scanners with the validation Presidio applies — Luhn for
//! cards, ISO 13616 mod-97 and per-country length for IBANs, impossible-number rules for SSNs,
//! octet ranges and `std::net::Ipv6Addr` parsing for IPs), overlap resolution, per-kind counts and
//! span redaction. Must not: keep, log or return the matched text (callers store only
//! [`counts`]), do IO, or take super-linear time: every scanner starts only at a word boundary and
//! looks at a bounded number of bytes from there, so no input can trigger backtracking blow-up.
//!
//! All patterns are ASCII, so every reported offset lies on a `char` boundary of the input.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    /// An e-mail address.
    Email,
    /// An international (`+` and 8–15 digits) or North-American phone number.
    Phone,
    /// A Luhn-valid payment card number of 13–19 digits.
    PaymentCard,
    /// An IBAN with a valid length for its country and a valid mod-97 checksum.
    Iban,
    /// A US social security number that is not impossible or a published sample.
    UsSsn,
    /// An IPv4 or IPv6 address.
    IpAddress,
}

impl PiiKind {
    /// The placeholder name used by [`redact`], e.g. `PAYMENT_CARD`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::PaymentCard => "PAYMENT_CARD",
            Self::Iban => "IBAN",
            Self::UsSsn => "US_SSN",
            Self::IpAddress => "IP_ADDRESS",
        }
    }

    /// Overlap priority, lowest first. An e-mail address wins over digits inside it; checksummed
    /// kinds win over the unvalidated shapes (SSN, IP, phone), so a card number is never also
    /// counted as a phone number.
    /// The kind's name as stored and reported (`email`, `payment_card`, …), the same as its
    /// serialized form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::PaymentCard => "payment_card",
            Self::Iban => "iban",
            Self::UsSsn => "us_ssn",
            Self::IpAddress => "ip_address",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Self::Email => 0,
            Self::Iban => 1,
            Self::PaymentCard => 2,
            Self::UsSsn => 3,
            Self::IpAddress => 4,
            Self::Phone => 5,
        }
    }
}

/// One detected span: `text[start..end]` (byte offsets, on char boundaries) is of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Detection {
    /// What was found.
    pub kind: PiiKind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

/// All non-overlapping detections in `text`, ordered by `start`.
pub fn detect(text: &str) -> Vec<Detection> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for (at, &b) in bytes.iter().enumerate() {
        if b == b'@' {
            found.extend(email_at(text, at));
            continue;
        }
        if !b.is_ascii() || is_word(prev_char(text, at)) {
            continue;
        }
        if b.is_ascii_uppercase() {
            found.extend(iban_at(text, at));
        }
        if b.is_ascii_hexdigit() || b == b':' {
            found.extend(ipv6_at(text, at));
        }
        if (b.is_ascii_digit() || b == b'(' || b == b'+') && !continues_number(text, at) {
            found.extend(card_at(text, at));
            found.extend(ssn_at(text, at));
            found.extend(ipv4_at(text, at));
            found.extend(phone_at(text, at));
        }
    }
    resolve(bytes.len(), found)
}

/// How many detections of each kind `text` holds; the only form in which the product stores PII
/// findings.
pub fn counts(text: &str) -> BTreeMap<PiiKind, u32> {
    let mut out = BTreeMap::new();
    for d in detect(text) {
        let n: &mut u32 = out.entry(d.kind).or_insert(0);
        *n = n.saturating_add(1);
    }
    out
}

/// `text` with each detected span replaced by `[<KIND>]` (see [`PiiKind::label`]). Spans that are
/// out of range, not on char boundaries, empty or overlapping an earlier span are ignored, so
/// any `detections` slice is safe to pass.
pub fn redact(text: &str, detections: &[Detection]) -> String {
    let mut spans: Vec<&Detection> = detections.iter().collect();
    spans.sort_by_key(|d| (d.start, d.end));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0usize;
    for d in spans {
        if d.start < cursor || d.start >= d.end || text.get(d.start..d.end).is_none() {
            continue;
        }
        out.push_str(text.get(cursor..d.start).unwrap_or_default());
        out.push('[');
        out.push_str(d.kind.label());
        out.push(']');
        cursor = d.end;
    }
    out.push_str(text.get(cursor..).unwrap_or_default());
    out
}

/// Keeps the highest-priority candidates (then the longest, then the earliest) that do not
/// overlap one already kept.
fn resolve(len: usize, mut found: Vec<Detection>) -> Vec<Detection> {
    found.sort_by_key(|d| {
        (
            d.kind.rank(),
            std::cmp::Reverse(d.end.saturating_sub(d.start)),
            d.start,
        )
    });
    let mut taken = vec![false; len];
    let mut kept = Vec::new();
    for d in found {
        let Some(span) = taken.get_mut(d.start..d.end) else {
            continue;
        };
        if span.iter().any(|&t| t) {
            continue;
        }
        span.iter_mut().for_each(|t| *t = true);
        kept.push(d);
    }
    kept.sort_by_key(|d| d.start);
    kept
}

// ---------------------------------------------------------------------------------------------
// Shared helpers. Positions passed in are ASCII bytes or the end of an ASCII run, hence char
// boundaries, so `get` never returns `None` for them except at the ends of the text.

fn byte(text: &str, i: usize) -> Option<u8> {
    text.as_bytes().get(i).copied()
}

fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i).and_then(|s| s.chars().next_back())
}

fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

/// Python's `\w` as Presidio's `\b` sees it: Unicode letters and digits, and `_`.
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn is_digit_at(text: &str, i: usize) -> bool {
    byte(text, i).is_some_and(|b| b.is_ascii_digit())
}

/// Whether the number starting at `at` is really the tail of a longer one (`12-078-05-1123`,
/// `1.2.3.4.5`), which must not be reported piecemeal.
fn continues_number(text: &str, at: usize) -> bool {
    matches!(
        at.checked_sub(1).and_then(|p| byte(text, p)),
        Some(b'-' | b'.' | b'/')
    ) && at.checked_sub(2).is_some_and(|p| is_digit_at(text, p))
}

/// The number starting at `end` is finished: no word character follows and it does not go on
/// as `-digit` / `.digit`.
fn ends_number(text: &str, end: usize) -> bool {
    if is_word(next_char(text, end)) {
        return false;
    }
    !(matches!(byte(text, end), Some(b'-' | b'.')) && is_digit_at(text, end + 1))
}

/// End (exclusive) of the run of ASCII digits starting at `i`, looking at most `max` bytes.
fn digit_run(text: &str, i: usize, max: usize) -> usize {
    let mut j = i;
    while j - i < max && is_digit_at(text, j) {
        j += 1;
    }
    j
}

fn digits_in(text: &str, start: usize, end: usize) -> impl Iterator<Item = u8> + '_ {
    text.as_bytes()
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
}

// ---------------------------------------------------------------------------------------------
// E-mail

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-.".contains(&b)
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// An address around the `@` at `at`: dot-atom local part of at most 64 bytes, and a domain of
/// at most 253 bytes with at least two labels and an alphabetic TLD of two or more letters.
fn email_at(text: &str, at: usize) -> Option<Detection> {
    let mut start = at;
    while at - start < MAX_LOCAL && start > 0 && byte(text, start - 1).is_some_and(is_local_byte) {
        start -= 1;
    }
    // Over-long local part, or one that runs on in a non-ASCII script: not a match we can trust.
    if is_word(prev_char(text, start))
        || (start > 0 && byte(text, start - 1).is_some_and(is_local_byte))
    {
        return None;
    }
    while byte(text, start) == Some(b'.') {
        start += 1;
    }
    let local = text.get(start..at)?;
    if local.is_empty() || local.ends_with('.') || local.contains("..") {
        return None;
    }

    let mut end = at + 1;
    while end - at <= MAX_DOMAIN && byte(text, end).is_some_and(is_domain_byte) {
        end += 1;
    }
    if byte(text, end).is_some_and(is_domain_byte) {
        return None;
    }
    // A sentence-final full stop is not part of the domain.
    while end > at + 1 && byte(text, end - 1) == Some(b'.') {
        end -= 1;
    }
    if is_word(next_char(text, end)) {
        return None;
    }
    let domain = text.get(at + 1..end)?;
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return None;
    }
    let labels_ok = labels
        .iter()
        .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()));
    (labels_ok && tld_ok).then_some(Detection {
        kind: PiiKind::Email,
        start,
        end,
    })
}

// ---------------------------------------------------------------------------------------------
// Payment cards

/// 13–19 digits, either unbroken or as groups split by single spaces or dashes where the first
/// group has 4 digits and the others 3–6 (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3). Luhn-valid, first
/// digit 1–6 (UATP, Visa, Mastercard, Amex/Diners/JCB, Discover/Maestro), not 13 digits starting
/// with 1 (Presidio's guard against millisecond timestamps), not all one digit.
fn card_at(text: &str, at: usize) -> Option<Detection> {
    if !is_digit_at(text, at) {
        return None;
    }
    // (end of group, digits so far)
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = at;
    let mut total = 0usize;
    loop {
        let end = digit_run(text, i, 20);
        let len = end - i;
        total += len;
        if total > 19 {
            break;
        }
        let shape_ok = match groups.len() {
            0 => true,
            1 => groups.first().is_some_and(|&(_, n)| n == 4) && (3..=6).contains(&len),
            _ => (3..=6).contains(&len),
        };
        if !shape_ok {
            break;
        }
        groups.push((end, total));
        if matches!(byte(text, end), Some(b' ' | b'-')) && is_digit_at(text, end + 1) {
            i = end + 1;
        } else {
            break;
        }
    }
    let single = groups.len() == 1;
    groups
        .iter()
        .rev()
        .filter(|&&(_, n)| (13..=19).contains(&n))
        // Unbroken numbers must be the whole run: 20+ digits are not a card followed by a digit.
        .filter(|&&(end, _)| !single || !is_digit_at(text, end))
        .find(|&&(end, n)| {
            let digits: Vec<u8> = digits_in(text, at, end).collect();
            let first = digits.first().copied().unwrap_or(0);
            ends_number(text, end)
                && (1..=6).contains(&first)
                && !(n == 13 && first == 1)
                && !digits.iter().all(|&d| d == first)
                && luhn_valid(&digits)
        })
        .map(|&(end, _)| Detection {
            kind: PiiKind::PaymentCard,
            start: at,
            end,
        })
}

fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------------
// IBAN

/// IBAN length per ISO 13616 country code (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// Upper-case IBAN, compact or printed in groups of four separated by single spaces, of exactly
/// the registered length for its country, with `mod 97 == 1`. Unknown countries are not
/// reported: without a length the checksum alone lets 1 in 97 random codes through.
fn iban_at(text: &str, at: usize) -> Option<Detection> {
    let country = text.as_bytes().get(at..at + 2)?;
    let &(_, want) = IBAN_LENGTHS.iter().find(|(c, _)| c.as_slice() == country)?;
    let mut chars: Vec<u8> = Vec::with_capacity(want);
    let mut i = at;
    let mut after_space = false;
    while chars.len() < want {
        let b = byte(text, i)?;
        let ok = match chars.len() {
            0 | 1 => b.is_ascii_uppercase(),
            2 | 3 => b.is_ascii_digit(),
            _ => b.is_ascii_uppercase() || b.is_ascii_digit(),
        };
        if ok {
            chars.push(b);
            after_space = false;
            i += 1;
        } else if b == b' ' && chars.len().is_multiple_of(4) && !chars.is_empty() && !after_space {
            after_space = true;
            i += 1;
        } else {
            return None;
        }
    }
    if is_word(next_char(text, i)) {
        return None;
    }
    let (head, tail) = chars.split_at_checked(4)?;
    let rearranged = tail.iter().chain(head.iter());
    let rem = rearranged.fold(0u32, |r, &b| {
        if b.is_ascii_digit() {
            (r * 10 + u32::from(b - b'0')) % 97
        } else {
            (r * 100 + u32::from(b - b'A') + 10) % 97
        }
    });
    (rem == 1).then_some(Detection {
        kind: PiiKind::Iban,
        start: at,
        end: i,
    })
}

// ---------------------------------------------------------------------------------------------
// US SSN

/// Published or advertising sample numbers (Woolworth wallet card, a 1960s ad, the canonical
/// placeholder) that identify no one and are mostly test data.
const SAMPLE_SSNS: [&[u8; 9]; 3] = [b"078051120", b"219099999", b"123456789"];

/// How far before a bare nine-digit number to look for a word such as "SSN".
const SSN_CONTEXT_BYTES: usize = 48;

/// `AAA-GG-SSSS` with the same separator (`-`, space or `.`) in both places, or nine bare digits
/// when a context word ("ssn", "social security", …) precedes them: nine bare digits alone are
/// far more often an order or account number. Rejects area 000, 666 and 900–999, group 00,
/// serial 0000, one repeated digit and the published sample numbers.
fn ssn_at(text: &str, at: usize) -> Option<Detection> {
    let a_end = digit_run(text, at, 10);
    let (end, digits) = if a_end - at == 9 {
        if !has_ssn_context(text, at) {
            return None;
        }
        (a_end, digits_in(text, at, a_end).collect::<Vec<u8>>())
    } else if a_end - at == 3 {
        let sep = byte(text, a_end).filter(|b| matches!(b, b'-' | b' ' | b'.'))?;
        let g_end = digit_run(text, a_end + 1, 3);
        if g_end - (a_end + 1) != 2 || byte(text, g_end) != Some(sep) {
            return None;
        }
        let s_end = digit_run(text, g_end + 1, 5);
        if s_end - (g_end + 1) != 4 {
            return None;
        }
        (s_end, digits_in(text, at, s_end).collect())
    } else {
        return None;
    };
    if !ends_number(text, end) || !ssn_valid(&digits) {
        return None;
    }
    Some(Detection {
        kind: PiiKind::UsSsn,
        start: at,
        end,
    })
}

fn ssn_valid(d: &[u8]) -> bool {
    let (Some(area), Some(group), Some(serial)) = (d.get(0..3), d.get(3..5), d.get(5..9)) else {
        return false;
    };
    let first = d.first().copied().unwrap_or(0);
    let as_text: Vec<u8> = d.iter().map(|x| x + b'0').collect();
    area != [0, 0, 0]
        && area != [6, 6, 6]
        && first != 9
        && group != [0, 0]
        && serial != [0, 0, 0, 0]
        && !d.iter().all(|&x| x == first)
        && !SAMPLE_SSNS
            .iter()
            .any(|s| s.as_slice() == as_text.as_slice())
}

fn has_ssn_context(text: &str, at: usize) -> bool {
    let mut lo = at.saturating_sub(SSN_CONTEXT_BYTES);
    while lo < at && !text.is_char_boundary(lo) {
        lo += 1;
    }
    let window = text.get(lo..at).unwrap_or_default().to_ascii_lowercase();
    let words: Vec<&str> = window
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .iter()
        .any(|w| matches!(*w, "ssn" | "ssns" | "ssn#" | "ss#" | "ssid"))
        || words.windows(2).any(|p| p == ["social", "security"])
}

// ---------------------------------------------------------------------------------------------
// IP addresses

/// Dotted quad, each octet 0–255 written without leading zeros (`010` is octal to some parsers
/// and decimal to others, so it is not reported).
fn ipv4_at(text: &str, at: usize) -> Option<Detection> {
    let mut i = at;
    for octet in 0..4 {
        if octet > 0 {
            if byte(text, i) != Some(b'.') {
                return None;
            }
            i += 1;
        }
        let end = digit_run(text, i, 4);
        let part = text.get(i..end)?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0')) {
            return None;
        }
        if part.parse::<u16>().ok()? > 255 {
            return None;
        }
        i = end;
    }
    ends_number(text, i).then_some(Detection {
        kind: PiiKind::IpAddress,
        start: at,
        end: i,
    })
}

/// Longest textual IPv6 address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const MAX_IPV6: usize = 45;
/// Fewer hex digits than this (`::1`, `1::2`, Python slices like `x[1::2]`) is not reported.
const MIN_IPV6_HEX_DIGITS: usize = 5;

/// A token of hex digits, `:` and `.` that `Ipv6Addr` accepts.
fn ipv6_at(text: &str, at: usize) -> Option<Detection> {
    if matches!(prev_char(text, at), Some(':' | '.')) {
        return None;
    }
    let mut end = at;
    while end - at <= MAX_IPV6
        && byte(text, end).is_some_and(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        end += 1;
    }
    if end - at > MAX_IPV6 {
        return None;
    }
    while end > at && byte(text, end - 1) == Some(b'.') {
        end -= 1;
    }
    if is_word(next_char(text, end)) {
        return None;
    }
    let token = text.get(at..end)?;
    let hex = token.bytes().filter(u8::is_ascii_hexdigit).count();
    if token.bytes().filter(|&b| b == b':').count() < 2 || hex < MIN_IPV6_HEX_DIGITS {
        return None;
    }
    token.parse::<Ipv6Addr>().ok()?;
    Some(Detection {
        kind: PiiKind::IpAddress,
        start: at,
        end,
    })
}

// ---------------------------------------------------------------------------------------------
// Phone numbers

/// E.164 bounds: at most 15 digits; 8 is the shortest we accept, as Custos's brief demands.
const MIN_INTL_DIGITS: usize = 8;
const MAX_INTL_DIGITS: usize = 15;

fn phone_at(text: &str, at: usize) -> Option<Detection> {
    match byte(text, at)? {
        b'+' => intl_phone_at(text, at),
        _ => nanp_phone_at(text, at),
    }
}

/// `+` and a country code not starting with 0, then 8–15 digits in total, in groups separated by
/// single spaces, dashes or dots, one group optionally in parentheses: `+14155552671`,
/// `+44 20 7946 0958`, `+1 (555) 123-4567`. A longer digit sequence is not cut down to fit.
fn intl_phone_at(text: &str, at: usize) -> Option<Detection> {
    if !byte(text, at + 1).is_some_and(|b| (b'1'..=b'9').contains(&b)) {
        return None;
    }
    let mut i = at + 1;
    let mut digits = 0usize;
    let mut parens = false;
    loop {
        if byte(text, i) == Some(b'(') && !parens {
            let end = digit_run(text, i + 1, MAX_INTL_DIGITS + 1);
            if end == i + 1 || byte(text, end) != Some(b')') {
                return None;
            }
            parens = true;
            digits += end - (i + 1);
            i = end + 1;
        } else if is_digit_at(text, i) {
            let end = digit_run(text, i, MAX_INTL_DIGITS + 1);
            digits += end - i;
            i = end;
        } else {
            return None;
        }
        if digits > MAX_INTL_DIGITS {
            return None;
        }
        let sep = matches!(byte(text, i), Some(b' ' | b'-' | b'.'));
        let next = byte(text, i + 1);
        if sep && next.is_some_and(|b| b.is_ascii_digit() || (b == b'(' && !parens)) {
            i += 1;
        } else if i > 0 && byte(text, i - 1) == Some(b')') && is_digit_at(text, i) {
            // "(555)123-4567": the closing parenthesis is itself the separator.
        } else {
            break;
        }
    }
    (digits >= MIN_INTL_DIGITS && ends_number(text, i)).then_some(Detection {
        kind: PiiKind::Phone,
        start: at,
        end: i,
    })
}

/// North-American numbers: `(555) 123-4567`, `555-123-4567`, `555.123.4567`, `555 123 4567`,
/// optionally with a leading `1-` / `1 ` / `1.`. The area code starts with 2–9. Ten bare digits
/// are not reported: they are as often an ID as a phone number.
fn nanp_phone_at(text: &str, at: usize) -> Option<Detection> {
    let mut i = at;
    if byte(text, i) == Some(b'1')
        && matches!(byte(text, i + 1), Some(b' ' | b'-' | b'.'))
        && matches!(byte(text, i + 2), Some(b'(' | b'2'..=b'9'))
    {
        i += 2;
    }
    let area_sep;
    if byte(text, i) == Some(b'(') {
        let end = digit_run(text, i + 1, 4);
        if end - (i + 1) != 3 || byte(text, end) != Some(b')') {
            return None;
        }
        if !matches!(byte(text, i + 1), Some(b'2'..=b'9')) {
            return None;
        }
        i = end + 1;
        if byte(text, i) == Some(b' ') {
            i += 1;
        }
        area_sep = None;
    } else {
        let end = digit_run(text, i, 4);
        if end - i != 3 || !matches!(byte(text, i), Some(b'2'..=b'9')) {
            return None;
        }
        let sep = byte(text, end).filter(|b| matches!(b, b'-' | b'.' | b' '))?;
        area_sep = Some(sep);
        i = end + 1;
    }
    let ex_end = digit_run(text, i, 4);
    if ex_end - i != 3 {
        return None;
    }
    let sep = byte(text, ex_end).filter(|b| matches!(b, b'-' | b'.' | b' '))?;
    if area_sep.is_some_and(|a| a != sep) {
        return None;
    }
    let sub_start = ex_end + 1;
    let sub_end = digit_run(text, sub_start, 5);
    if sub_end - sub_start != 4 || !ends_number(text, sub_end) {
        return None;
    }
    Some(Detection {
        kind: PiiKind::Phone,
        start: at,
        end: sub_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        detect(text)
            .iter()
            .map(|d| (d.kind, &text[d.start..d.end]))
            .collect()
    }

    #[test]
    fn luhn_and_mod97_helpers() {
        assert!(luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
        assert!(!luhn_valid(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 4]));
        assert!(!luhn_valid(&[]));
    }

    #[test]
    fn email_shapes() {
        assert_eq!(
            kinds("mail john.doe+ml@example.co.uk."),
            vec![(PiiKind::Email, "john.doe+ml@example.co.uk")]
        );
        assert!(kinds("user@localhost").is_empty());
        assert!(kinds("user@example.c").is_empty());
        assert!(kinds("user@example.123").is_empty());
        assert!(kinds("a..b@example.com").is_empty());
        assert!(kinds("@example.com").is_empty());
    }

    #[test]
    fn phone_shapes() {
        for p in [
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "1-800-555-1234",
            "+44 20 7946 0958",
            "+14155552671",
            "+1 (555) 123-4567",
        ] {
            assert_eq!(
                kinds(&format!("call {p} now")),
                vec![(PiiKind::Phone, p)],
                "{p}"
            );
        }
        for p in [
            "5551234567",
            "555-123.4567",
            "+1234567",
            "+0 20 7946 0958",
            "155-123-4567",
        ] {
            assert!(kinds(&format!("call {p} now")).is_empty(), "{p}");
        }
    }

    #[test]
    fn ip_shapes() {
        assert_eq!(
            kinds("from 10.0.0.1."),
            vec![(PiiKind::IpAddress, "10.0.0.1")]
        );
        assert_eq!(
            kinds("[2001:db8::1]:443"),
            vec![(PiiKind::IpAddress, "2001:db8::1")]
        );
        assert_eq!(
            kinds("::ffff:192.0.2.1"),
            vec![(PiiKind::IpAddress, "::ffff:192.0.2.1")]
        );
        assert!(kinds("256.1.1.1").is_empty());
        assert!(kinds("10.01.0.1").is_empty());
        assert!(kinds("1.2.3.4.5").is_empty());
        assert!(kinds("at 12:30:45").is_empty());
        assert!(kinds("x[1::2]").is_empty());
    }

    #[test]
    fn overlap_keeps_validated_kind() {
        // A Luhn-valid 15-digit number fits E.164 too; it must count once, as a card.
        let text = "+371449635398431";
        assert!(kinds(text).iter().all(|(k, _)| *k != PiiKind::Phone));
        let text = "card 371449635398431 phone +44 20 7946 0958";
        assert_eq!(
            kinds(text),
            vec![
                (PiiKind::PaymentCard, "371449635398431"),
                (PiiKind::Phone, "+44 20 7946 0958")
            ]
        );
    }

    #[test]
    fn redact_replaces_spans_and_ignores_bad_ones() {
        let text = "mail a@b.io or 078-05-1123";
        let found = detect(text);
        assert_eq!(redact(text, &found), "mail [EMAIL] or [US_SSN]");
        let bogus = [
            Detection {
                kind: PiiKind::Email,
                start: 3,
                end: 2,
            },
            Detection {
                kind: PiiKind::Email,
                start: 0,
                end: 999,
            },
        ];
        assert_eq!(redact(text, &bogus), text);
        let multibyte = "é";
        let split = [Detection {
            kind: PiiKind::Phone,
            start: 1,
            end: 2,
        }];
        assert_eq!(redact(multibyte, &split), multibyte);
    }

    #[test]
    fn counts_and_serde_names() {
        let c = counts("a@b.io c@d.io 10.0.0.1");
        assert_eq!(c.get(&PiiKind::Email), Some(&2));
        assert_eq!(c.get(&PiiKind::IpAddress), Some(&1));
        assert_eq!(
            serde_json::to_string(&PiiKind::PaymentCard).unwrap(),
            "\"payment_card\""
        );
        assert_eq!(
            serde_json::to_string(&PiiKind::UsSsn).unwrap(),
            "\"us_ssn\""
        );
    }
}
