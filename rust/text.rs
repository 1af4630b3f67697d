//! Pure byte-level pieces of the canonical form. Nothing here touches Python, so all of it
//! is unit-tested by `cargo test`.

use std::cmp::Ordering;

/// Where canonical bytes go: a `Vec<u8>` for `canonical_json`, a hashing sink for
/// `fingerprint`.
pub trait Sink {
    fn write(&mut self, bytes: &[u8]);
    fn push(&mut self, byte: u8);
}

impl<T: Sink> Sink for &mut T {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        (**self).write(bytes);
    }
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        (**self).push(byte);
    }
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
}

/// 0: written raw. `u`: written `\u00hh`. Anything else: written as `\` + that byte.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first byte at or after `from` that RFC 8785 escapes (`< 0x20`, `"`, `\`),
/// or `bytes.len()`. Sixteen bytes a step with SSE2 (baseline on x86_64), eight with SWAR
/// elsewhere: long strings are mostly escape-free.
#[inline]
fn find_escape(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::arch::x86_64::*;
        let quote = _mm_set1_epi8(b'"' as i8);
        let slash = _mm_set1_epi8(b'\\' as i8);
        let ctrl_max = _mm_set1_epi8(0x1f);
        while i + 16 <= bytes.len() {
            let x = _mm_loadu_si128(bytes.as_ptr().add(i) as *const __m128i);
            // min(x, 0x1f) == x exactly when x <= 0x1f (unsigned).
            let ctrl = _mm_cmpeq_epi8(_mm_min_epu8(x, ctrl_max), x);
            let hits = _mm_or_si128(
                ctrl,
                _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, slash)),
            );
            let mask = _mm_movemask_epi8(hits);
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    while i + 8 <= bytes.len() {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&bytes[i..i + 8]);
        let x = u64::from_le_bytes(chunk);
        // A byte < 0x20 (exact for every byte: bytes >= 0x80 are masked by !x).
        let ctrl = x.wrapping_sub(LO * 0x20) & !x & HI;
        let q = x ^ (LO * b'"' as u64);
        let quote = q.wrapping_sub(LO) & !q & HI;
        let b = x ^ (LO * b'\\' as u64);
        let slash = b.wrapping_sub(LO) & !b & HI;
        if ctrl | quote | slash != 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && ESCAPE[bytes[i] as usize] == 0 {
        i += 1;
    }
    i
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` (valid UTF-8) as a JSON string with only the escapes RFC 8785 requires.
#[inline]
pub fn write_str<S: Sink>(sink: &mut S, bytes: &[u8]) {
    sink.push(b'"');
    let mut start = 0;
    let mut i = find_escape(bytes, 0);
    while i < bytes.len() {
        if start < i {
            sink.write(&bytes[start..i]);
        }
        let b = bytes[i];
        match ESCAPE[b as usize] {
            b'u' => sink.write(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
            e => sink.write(&[b'\\', e]),
        }
        start = i + 1;
        i = find_escape(bytes, start);
    }
    if start < bytes.len() {
        sink.write(&bytes[start..]);
    }
    sink.push(b'"');
}

/// Lowercase hex of a digest.
pub fn hex32(digest: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    out
}

/// Compares two UTF-8 strings by their UTF-16 code units, as RFC 8785 §3.2.3 sorts keys.
///
/// UTF-8 byte order is code-point order, and that equals UTF-16 order except where a
/// supplementary character (4-byte UTF-8, lead byte F0..F4, a surrogate pair in UTF-16)
/// meets a character in U+E000..U+FFFF (lead byte EE or EF): in UTF-16 the surrogate
/// (D800..DFFF) sorts first. Only the first differing byte matters: if it is inside a
/// character both characters share a lead byte and so a length, and code-point order holds.
#[inline]
pub fn utf16_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    match a[..n].iter().zip(&b[..n]).position(|(x, y)| x != y) {
        None => a.len().cmp(&b.len()),
        Some(i) => {
            let (x, y) = (a[i], b[i]);
            if x >= 0xF0 && (y == 0xEE || y == 0xEF) {
                Ordering::Less
            } else if y >= 0xF0 && (x == 0xEE || x == 0xEF) {
                Ordering::Greater
            } else {
                x.cmp(&y)
            }
        }
    }
}

/// ECMAScript Number::toString layout for a decimal value `0.d1d2...dk × 10^n`
/// (digits without leading or trailing zeros, at least one digit).
pub fn es_layout(out: &mut Vec<u8>, negative: bool, digits: &[u8], n: i64) {
    let k = digits.len() as i64;
    if negative {
        out.push(b'-');
    }
    if k <= n && n <= 21 {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat(b'0').take((n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.extend_from_slice(&digits[..n as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat(b'0').take((-n) as usize));
        out.extend_from_slice(digits);
    } else {
        let e = n - 1;
        out.push(digits[0]);
        if k > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if e >= 0 { b'+' } else { b'-' });
        out.extend_from_slice(itoa::Buffer::new().format(e.unsigned_abs()).as_bytes());
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecimalError {
    NotFinite,
    Malformed,
}

/// The canonical text of a `decimal.Decimal` given its `str()`: the normalised value in the
/// JCS number layout (`1.10` → `1.1`, `1E+30` → `1e+30`, `-0.00` → `0`). Exact: no rounding
/// to a context precision, so distinct values never share a text.
pub fn decimal_text(s: &str) -> Result<Vec<u8>, DecimalError> {
    let bytes = s.as_bytes();
    let (negative, rest) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        Some(b'+') => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    if rest.first().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(DecimalError::NotFinite); // NaN, sNaN, Infinity
    }
    let (mantissa, exponent) = match rest.iter().position(|&c| c == b'E' || c == b'e') {
        Some(i) => {
            let e = std::str::from_utf8(&rest[i + 1..])
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or(DecimalError::Malformed)?;
            (&rest[..i], e)
        }
        None => (rest, 0),
    };
    let mut digits: Vec<u8> = Vec::with_capacity(mantissa.len());
    let mut frac: i64 = 0;
    let mut seen_point = false;
    for &c in mantissa {
        match c {
            b'0'..=b'9' => {
                digits.push(c);
                if seen_point {
                    frac += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(DecimalError::Malformed),
        }
    }
    if digits.is_empty() {
        return Err(DecimalError::Malformed);
    }
    let lead = digits.iter().position(|&c| c != b'0');
    let Some(lead) = lead else {
        return Ok(b"0".to_vec());
    };
    let mut exp10 = exponent.checked_sub(frac).ok_or(DecimalError::Malformed)?;
    let mut end = digits.len();
    while digits[end - 1] == b'0' {
        end -= 1;
        exp10 += 1;
    }
    let significant = &digits[lead..end];
    let n = exp10 + significant.len() as i64;
    let mut out = Vec::with_capacity(significant.len() + 8);
    es_layout(&mut out, negative, significant, n);
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
pub enum IsoError {
    OffsetWithSeconds,
}

/// Canonical text of an `isoformat()` of a datetime (`time_start` = 11) or time
/// (`time_start` = 0): a UTC offset of zero becomes `Z`, other offsets stay `±HH:MM`, an offset
/// with seconds is refused, a naive value keeps no suffix.
pub fn iso_text(iso: &str, time_start: usize) -> Result<String, IsoError> {
    // HH:MM:SS is 8 bytes; the offset, if any, starts with the first + or - after it.
    let search_from = (time_start + 8).min(iso.len());
    match iso[search_from..].find(['+', '-']) {
        None => Ok(iso.to_owned()),
        Some(rel) => {
            let at = search_from + rel;
            let offset = &iso[at..];
            if offset.len() != 6 {
                return Err(IsoError::OffsetWithSeconds);
            }
            if offset == "+00:00" || offset == "-00:00" {
                Ok(format!("{}Z", &iso[..at]))
            } else {
                Ok(iso.to_owned())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: &[u8]) -> String {
        let mut v = Vec::new();
        write_str(&mut v, bytes);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_only_what_rfc8785_requires() {
        assert_eq!(s(b"plain"), "\"plain\"");
        assert_eq!(s(b"a\"b\\c/d"), "\"a\\\"b\\\\c/d\"");
        assert_eq!(s(b"\x08\t\n\x0c\r"), "\"\\b\\t\\n\\f\\r\"");
        assert_eq!(s(b"\x00\x0f\x1f\x7f"), "\"\\u0000\\u000f\\u001f\x7f\"");
        assert_eq!(s("€\u{2028}😀</script>".as_bytes()), "\"€\u{2028}😀</script>\"");
    }

    #[test]
    fn swar_scan_finds_every_position() {
        for len in 0..40 {
            for pos in 0..len {
                for special in [b'"', b'\\', 0u8, 0x1f] {
                    let mut v = vec![b'x'; len];
                    v[pos] = special;
                    assert_eq!(find_escape(&v, 0), pos, "len {len} pos {pos} byte {special}");
                }
            }
            let high = vec![0xC3u8; len];
            assert_eq!(find_escape(&high, 0), len);
            let edge: Vec<u8> = (0..len).map(|i| [0x20u8, 0x21, 0x7f, 0x80, 0xff][i % 5]).collect();
            assert_eq!(find_escape(&edge, 0), len);
            for from in 0..len {
                let mut v = vec![b'x'; len];
                v[len - 1] = b'"';
                assert_eq!(find_escape(&v, from), len - 1);
            }
        }
    }

    #[test]
    fn utf16_order_matches_rfc_example() {
        // RFC 8785 §3.2.3: "\r" < "1" < "\u0080" < "ö" < "€" < "😀" < "דּ" (U+FB33)
        let keys = ["\r", "1", "\u{80}", "ö", "€", "😀", "\u{fb33}"];
        for w in keys.windows(2) {
            assert_eq!(utf16_cmp(w[0].as_bytes(), w[1].as_bytes()), Ordering::Less, "{w:?}");
            assert_eq!(utf16_cmp(w[1].as_bytes(), w[0].as_bytes()), Ordering::Greater);
        }
        assert_eq!(utf16_cmp(b"ab", b"abc"), Ordering::Less);
        assert_eq!(utf16_cmp(b"", b""), Ordering::Equal);
    }

    #[test]
    fn utf16_order_agrees_with_encode_utf16_everywhere() {
        let samples = [
            "", "a", "z", "\u{7f}", "\u{80}", "\u{7ff}", "\u{800}", "\u{d7ff}", "\u{e000}",
            "\u{ffff}", "\u{10000}", "\u{10ffff}", "a\u{e000}", "a\u{10000}", "\u{fb33}x",
        ];
        for a in samples {
            for b in samples {
                let expected = a.encode_utf16().cmp(b.encode_utf16());
                assert_eq!(utf16_cmp(a.as_bytes(), b.as_bytes()), expected, "{a:?} {b:?}");
            }
        }
    }

    fn dec(s: &str) -> String {
        String::from_utf8(decimal_text(s).unwrap()).unwrap()
    }

    #[test]
    fn decimal_normalises_into_jcs_layout() {
        assert_eq!(dec("1.10"), "1.1");
        assert_eq!(dec("1.0"), "1");
        assert_eq!(dec("-0.00"), "0");
        assert_eq!(dec("0E-10"), "0");
        assert_eq!(dec("1E+30"), "1e+30");
        assert_eq!(dec("100"), "100");
        assert_eq!(dec("1E+2"), "100");
        assert_eq!(dec("0.000001"), "0.000001");
        assert_eq!(dec("1E-7"), "1e-7");
        assert_eq!(dec("-12.3400"), "-12.34");
        assert_eq!(dec("123456789012345678901234567890.5"), "1.234567890123456789012345678905e+29");
        assert_eq!(dec("1E+21"), "1e+21");
        assert_eq!(dec("1E+20"), "100000000000000000000");
        assert_eq!(decimal_text("NaN"), Err(DecimalError::NotFinite));
        assert_eq!(decimal_text("-Infinity"), Err(DecimalError::NotFinite));
        assert_eq!(decimal_text("sNaN"), Err(DecimalError::NotFinite));
    }

    #[test]
    fn iso_offsets() {
        assert_eq!(iso_text("2024-01-02T03:04:05+00:00", 11).unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(iso_text("2024-01-02T03:04:05.000001-05:30", 11).unwrap(), "2024-01-02T03:04:05.000001-05:30");
        assert_eq!(iso_text("2024-01-02T03:04:05", 11).unwrap(), "2024-01-02T03:04:05");
        assert_eq!(iso_text("03:04:05+00:00", 0).unwrap(), "03:04:05Z");
        assert_eq!(iso_text("2024-01-02", 11).unwrap(), "2024-01-02");
        assert_eq!(iso_text("03:04:05+01:00:30", 0), Err(IsoError::OffsetWithSeconds));
    }

    #[test]
    fn hex_is_lowercase() {
        let mut d = [0u8; 32];
        d[0] = 0xAB;
        d[31] = 0x0F;
        let h = hex32(&d);
        assert!(h.starts_with(b"ab00"));
        assert!(h.ends_with(b"0f"));
    }
}
