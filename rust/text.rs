//! Pure byte-level pieces of the canonical form. Nothing here touches Python, so all of it
//! is unit-tested by `cargo test`.

use std::cmp::Ordering;

/// Where canonical bytes go: a `Vec<u8>` for `canonical_json`, a hashing sink for
/// `fingerprint`.
pub trait Sink {
    fn write(&mut self, bytes: &[u8]);
    fn push(&mut self, byte: u8);
    /// A pointer to at least `n` writable bytes after the current end.
    fn reserve_raw(&mut self, n: usize) -> *mut u8;
    /// Marks `n` bytes written through the pointer of the last `reserve_raw` as filled.
    ///
    /// # Safety
    /// Those `n` bytes were reserved and written.
    unsafe fn commit(&mut self, n: usize);
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
    #[inline(always)]
    fn reserve_raw(&mut self, n: usize) -> *mut u8 {
        (**self).reserve_raw(n)
    }
    #[inline(always)]
    unsafe fn commit(&mut self, n: usize) {
        (**self).commit(n);
    }
}

/// Copies `bytes` to `dst`. Most writes are short (a key, a number): for those a byte loop
/// beats a memcpy call.
///
/// # Safety
/// `dst` has room for `bytes.len()` bytes, not overlapping `bytes`.
#[inline(always)]
unsafe fn copy_bytes(dst: *mut u8, bytes: &[u8]) {
    if bytes.len() <= 16 {
        for (i, &b) in bytes.iter().enumerate() {
            *dst.add(i) = b;
        }
    } else {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
    }
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        let dst = self.reserve_raw(bytes.len());
        // SAFETY: bytes.len() bytes are reserved at dst.
        unsafe {
            copy_bytes(dst, bytes);
            self.commit(bytes.len());
        }
    }
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
    #[inline(always)]
    fn reserve_raw(&mut self, n: usize) -> *mut u8 {
        self.reserve(n);
        // SAFETY: `n` bytes are reserved past `len`.
        unsafe { self.as_mut_ptr().add(self.len()) }
    }
    #[inline(always)]
    unsafe fn commit(&mut self, n: usize) {
        self.set_len(self.len() + n);
    }
}

/// A write window over another sink: the encoder writes through two pointers of its own
/// (next byte, end of window) and reserves from the sink a few KiB at a time. Writing
/// straight into a `Vec` or the hashing buffer went through the sink's length field, a
/// load and a store per token, and for the hashing sink one more pointer hop.
pub struct Window<S: Sink> {
    inner: S,
    base: *mut u8,
    out: *mut u8,
    end: *mut u8,
}

/// Bytes reserved from the inner sink at a time (more when one write needs more).
const WINDOW: usize = 4096;
/// Writes at least this long go to the inner sink as they are (a hashing sink hashes them
/// without a copy).
pub const PASS_THROUGH: usize = 2048;

impl<S: Sink> Window<S> {
    pub fn new(inner: S) -> Self {
        Window {
            inner,
            base: std::ptr::null_mut(),
            out: std::ptr::null_mut(),
            end: std::ptr::null_mut(),
        }
    }

    /// The inner sink, with everything written so far committed to it.
    pub fn inner(&mut self) -> &mut S {
        self.close();
        &mut self.inner
    }

    fn close(&mut self) {
        if !self.base.is_null() {
            // SAFETY: out - base bytes of the reservation were written.
            unsafe { self.inner.commit(self.out.offset_from(self.base) as usize) };
            self.base = std::ptr::null_mut();
            self.out = std::ptr::null_mut();
            self.end = std::ptr::null_mut();
        }
    }

    #[inline(never)]
    fn refill(&mut self, n: usize) -> *mut u8 {
        self.close();
        let size = n.max(WINDOW);
        self.base = self.inner.reserve_raw(size);
        self.out = self.base;
        // SAFETY: `size` bytes were reserved at base.
        self.end = unsafe { self.base.add(size) };
        self.out
    }

    /// The next byte and the window's end, with at least `n` bytes between them: for a
    /// writer that keeps its position in a register across many tokens (through `self`,
    /// each token's position was a load and a store, one dependent on the last). Hand the
    /// position back with [`Window::set_out`] before any other write.
    #[inline(always)]
    pub fn cursor(&mut self, n: usize) -> (*mut u8, *mut u8) {
        let out = self.reserve_raw(n);
        (out, self.end)
    }

    /// A position from [`Window::cursor`] with at least `n` bytes to `end`: itself, or
    /// handed back and given again from a refilled window.
    ///
    /// # Safety
    /// As for [`Window::set_out`].
    #[inline(always)]
    pub unsafe fn room(&mut self, out: *mut u8, end: *mut u8, n: usize) -> (*mut u8, *mut u8) {
        if (end as usize) - (out as usize) >= n {
            return (out, end);
        }
        self.set_out(out);
        self.cursor(n)
    }

    /// Takes back the position of a writer that had it from [`Window::cursor`].
    ///
    /// # Safety
    /// `out` is within the window (between the position given and the end), and every
    /// byte before it was written.
    #[inline(always)]
    pub unsafe fn set_out(&mut self, out: *mut u8) {
        self.out = out;
    }
}

impl<S: Sink> Drop for Window<S> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<S: Sink> Sink for Window<S> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if n >= PASS_THROUGH {
            self.close();
            self.inner.write(bytes);
            return;
        }
        let out = self.reserve_raw(n);
        // SAFETY: n bytes reserved at out.
        unsafe {
            copy_bytes(out, bytes);
            self.commit(n);
        }
    }

    #[inline(always)]
    fn push(&mut self, byte: u8) {
        let out = self.reserve_raw(1);
        // SAFETY: one byte reserved at out.
        unsafe {
            *out = byte;
            self.commit(1);
        }
    }

    #[inline(always)]
    fn reserve_raw(&mut self, n: usize) -> *mut u8 {
        if (self.end as usize).wrapping_sub(self.out as usize) < n {
            return self.refill(n);
        }
        self.out
    }

    #[inline(always)]
    unsafe fn commit(&mut self, n: usize) {
        self.out = self.out.add(n);
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

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Input bytes handled per reservation: the output needs at most 6 bytes per input byte.
const BLOCK: usize = 4096;
/// Slack for the 16-byte stores past the last byte written.
const SLACK: usize = 16;

/// Each byte's escape sequence as 8 little-endian bytes (only the first 2 or 6 count), and
/// that length; zero for bytes written raw.
static ESCAPE_SEQ: ([u64; 256], [u8; 256]) = {
    let mut seq = [0u64; 256];
    let mut len = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let e = ESCAPE[b];
        if e == b'u' {
            let bytes = [b'\\', b'u', b'0', b'0', HEX[b >> 4], HEX[b & 0xf], 0, 0];
            seq[b] = u64::from_le_bytes(bytes);
            len[b] = 6;
        } else if e != 0 {
            seq[b] = u64::from_le_bytes([b'\\', e, 0, 0, 0, 0, 0, 0]);
            len[b] = 2;
        }
        b += 1;
    }
    (seq, len)
};

/// Writes the escape of `b` at `out` (8 bytes stored, 2 or 6 counted); returns the count.
///
/// # Safety
/// `out` has room for 8 bytes.
#[inline(always)]
unsafe fn put_escape(out: *mut u8, b: u8) -> usize {
    std::ptr::write_unaligned(out as *mut u64, ESCAPE_SEQ.0[b as usize]);
    ESCAPE_SEQ.1[b as usize] as usize
}

/// Escapes `bytes[i..end]` into `out`; returns the new output pointer.
///
/// # Safety
/// `out` has room for `6 * (end - i) + SLACK` bytes.
#[inline(always)]
unsafe fn escape_block(bytes: &[u8], mut i: usize, end: usize, mut out: *mut u8) -> *mut u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let src = bytes.as_ptr();
        let first = i;
        // 64 bytes at a time (twice as fast on prose with a newline every line as 16 at a
        // time); the block's reads end before i + 128 <= end.
        while i + 128 <= end {
            let block = src.add(i);
            out = escape_masked64(block, special_mask64(block), out, |dst, from| unsafe {
                copy64(dst, from)
            });
            i += 64;
        }
        while i + 16 <= end {
            let x = _mm_loadu_si128(src.add(i) as *const __m128i);
            // Copy all 16 bytes first; an escape found below overwrites from its position.
            _mm_storeu_si128(out as *mut __m128i, x);
            let mask = special_mask16(x);
            if mask == 0 {
                i += 16;
                out = out.add(16);
            } else {
                let pos = mask.trailing_zeros() as usize;
                out = out.add(pos);
                out = out.add(put_escape(out, bytes[i + pos]));
                i += pos + 1;
            }
        }
        // The last 1 to 15 bytes: the 16 ending there, if none needs an escape, are copied
        // over the output of the ones before them, which is then those same bytes. Only
        // when those 16 are all this call's, so the overlap is in this call's output.
        if i < end && end - first >= 16 {
            let x = _mm_loadu_si128(src.add(end - 16) as *const __m128i);
            if special_mask16(x) == 0 {
                let rest = end - i;
                _mm_storeu_si128(out.sub(16 - rest) as *mut __m128i, x);
                return out.add(rest);
            }
        }
    }
    while i < end {
        let b = bytes[i];
        if ESCAPE[b as usize] == 0 {
            *out = b;
            out = out.add(1);
        } else {
            out = out.add(put_escape(out, b));
        }
        i += 1;
    }
    out
}

/// Escapes the 64 bytes at `block`, whose bytes to escape are the bits of `mask`, into
/// `out`; returns the new output pointer. Each run between escapes is copied with one
/// 64-byte `copy64` that may overrun it (later stores overwrite the excess), so an escape
/// costs a few adds, not a reload, and a branch mispredicts about once per block rather
/// than once per escape.
///
/// # Safety
/// 128 bytes are readable at `block`; `out` has room for 6 x 64 + 64 bytes.
#[inline(always)]
unsafe fn escape_masked64(
    block: *const u8,
    mut mask: u64,
    mut out: *mut u8,
    copy64: impl Fn(*mut u8, *const u8),
) -> *mut u8 {
    let mut start = 0;
    while mask != 0 {
        let pos = mask.trailing_zeros() as usize;
        copy64(out, block.add(start));
        out = out.add(pos - start);
        out = out.add(put_escape(out, *block.add(pos)));
        start = pos + 1;
        mask &= mask - 1;
    }
    copy64(out, block.add(start));
    out.add(64 - start)
}

/// [`escape_block`], through [`escape_block_avx512`] where the CPU has AVX-512BW, or
/// [`escape_block_avx2`] where it has AVX2.
///
/// # Safety
/// As for [`escape_block`].
#[inline(always)]
unsafe fn escape_any(bytes: &[u8], i: usize, end: usize, out: *mut u8) -> *mut u8 {
    #[cfg(target_arch = "x86_64")]
    if end - i >= 128 {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            return escape_block_avx512(bytes, i, end, out);
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return escape_block_avx2(bytes, i, end, out);
        }
    }
    escape_block(bytes, i, end, out)
}

/// The 64-byte loop of [`escape_block`] with two AVX2 loads, masks and stores per step
/// instead of four SSE2 ones, for CPUs without AVX-512 (AMD before Zen 4, many cloud
/// machines): a 1 MB string of prose, whose escaping was a fifth of its fingerprint's time
/// (SHA-256 the rest), fingerprints 6 % faster. The last bytes go through [`escape_block`].
///
/// # Safety
/// As for [`escape_block`], and the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn escape_block_avx2(bytes: &[u8], mut i: usize, end: usize, mut out: *mut u8) -> *mut u8 {
    use std::arch::x86_64::*;
    let src = bytes.as_ptr();
    let quote = _mm256_set1_epi8(b'"' as i8);
    let slash = _mm256_set1_epi8(b'\\' as i8);
    let ctrl_max = _mm256_set1_epi8(0x1f);
    // Bit k set when byte k of the 32 at `p` must be escaped (as in `special_mask16`).
    let mask32 = |p: *const u8| unsafe {
        let x = _mm256_loadu_si256(p as *const __m256i);
        let ctrl = _mm256_cmpeq_epi8(_mm256_min_epu8(x, ctrl_max), x);
        let special = _mm256_or_si256(
            ctrl,
            _mm256_or_si256(_mm256_cmpeq_epi8(x, quote), _mm256_cmpeq_epi8(x, slash)),
        );
        _mm256_movemask_epi8(special) as u32 as u64
    };
    let copy64 = |dst: *mut u8, from: *const u8| unsafe {
        let lo = _mm256_loadu_si256(from as *const __m256i);
        let hi = _mm256_loadu_si256(from.add(32) as *const __m256i);
        _mm256_storeu_si256(dst as *mut __m256i, lo);
        _mm256_storeu_si256(dst.add(32) as *mut __m256i, hi);
    };
    while i + 128 <= end {
        let block = src.add(i);
        let mask = mask32(block) | (mask32(block.add(32)) << 32);
        out = escape_masked64(block, mask, out, copy64);
        i += 64;
    }
    escape_block(bytes, i, end, out)
}

/// The 64-byte loop of [`escape_block`] with one AVX-512 load, mask and store per step
/// instead of four SSE2 ones: a third faster on prose, twice as fast on text without
/// escapes. The last bytes go through [`escape_block`].
///
/// # Safety
/// As for [`escape_block`], and the CPU has AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn escape_block_avx512(bytes: &[u8], mut i: usize, end: usize, mut out: *mut u8) -> *mut u8 {
    use std::arch::x86_64::*;
    let src = bytes.as_ptr();
    let quote = _mm512_set1_epi8(b'"' as i8);
    let slash = _mm512_set1_epi8(b'\\' as i8);
    let ctrl_max = _mm512_set1_epi8(0x1f);
    let copy64 = |dst: *mut u8, from: *const u8| unsafe {
        _mm512_storeu_si512(dst as *mut _, _mm512_loadu_si512(from as *const _));
    };
    while i + 128 <= end {
        let block = src.add(i);
        let x = _mm512_loadu_si512(block as *const _);
        let mask = _mm512_cmple_epu8_mask(x, ctrl_max)
            | _mm512_cmpeq_epi8_mask(x, quote)
            | _mm512_cmpeq_epi8_mask(x, slash);
        out = escape_masked64(block, mask, out, copy64);
        i += 64;
    }
    escape_block(bytes, i, end, out)
}

/// Bit k set when byte k of `x` must be escaped: `"`, `\`, or a control character.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn special_mask16(x: std::arch::x86_64::__m128i) -> u32 {
    use std::arch::x86_64::*;
    // min(x, 0x1f) == x exactly when x <= 0x1f (unsigned).
    let ctrl = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
    let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
    let slash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
    _mm_movemask_epi8(_mm_or_si128(ctrl, _mm_or_si128(quote, slash))) as u32
}

/// [`special_mask16`] of the 64 bytes at `p`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn special_mask64(p: *const u8) -> u64 {
    use std::arch::x86_64::*;
    let m = |k: usize| special_mask16(_mm_loadu_si128(p.add(16 * k) as *const __m128i)) as u64;
    m(0) | (m(1) << 16) | (m(2) << 32) | (m(3) << 48)
}

/// Copies 64 bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn copy64(dst: *mut u8, src: *const u8) {
    use std::arch::x86_64::*;
    for k in 0..4 {
        let x = _mm_loadu_si128(src.add(16 * k) as *const __m128i);
        _mm_storeu_si128(dst.add(16 * k) as *mut __m128i, x);
    }
}

/// Writes `bytes` (valid UTF-8) as a JSON string with only the escapes RFC 8785 requires.
#[inline(always)]
pub fn write_str<S: Sink>(sink: &mut S, bytes: &[u8]) {
    if bytes.len() <= MEDIUM_MAX {
        // SAFETY: put_str writes at most MEDIUM_MAX + 2 bytes.
        unsafe {
            let out = sink.reserve_raw(MEDIUM_MAX + 2);
            if let Some(n) = put_str(out, bytes) {
                sink.commit(n);
                return;
            }
        }
    }
    write_str_blocks(sink, bytes);
}

/// Writes `bytes` quoted at `out` if they are at most [`MEDIUM_MAX`] long and none needs
/// an escape ([`put_short_str`] below 16 bytes, [`put_medium_str`] from 16), and says how
/// many bytes that took; `None` otherwise (the bytes at `out` undefined).
///
/// # Safety
/// `out` has room for [`MEDIUM_MAX`] + 2 bytes.
#[inline(always)]
pub unsafe fn put_str(out: *mut u8, bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 16 {
        put_short_str(out, bytes)
    } else {
        put_medium_str(out, bytes)
    }
}

/// Writes `bytes` (shorter than 16) quoted at `out` if none of them needs an escape, and
/// says how many bytes that took; `None` (the bytes at `out` undefined) otherwise. Keys and
/// most values: one 16-byte check and one or two stores. Where the 16 bytes from the first
/// stay in its page they are loaded at once (`put_short_str_wide`); else the bytes are
/// read as two overlapping words, never through a padded copy on the stack (a 16-byte load
/// of bytes just stored by memcpy stalls on store forwarding).
///
/// # Safety
/// `out` has room for 18 bytes.
#[inline(always)]
pub unsafe fn put_short_str(out: *mut u8, bytes: &[u8]) -> Option<usize> {
    debug_assert!(bytes.len() < 16);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let n = bytes.len();
        if n != 0 && (bytes.as_ptr() as usize) & (PAGE - 1) <= PAGE - 16 {
            // The 16 bytes from the first lie in its page (an empty slice may point nowhere).
            return put_short_str_wide(out, bytes.as_ptr(), n);
        }
        let (lo, hi) = short_words(bytes);
        if special_mask16(_mm_set_epi64x(hi as i64, lo as i64)) != 0 {
            return None;
        }
        *out = b'"';
        put_short(out.add(1), bytes, lo, hi);
        *out.add(1 + n) = b'"';
        Some(n + 2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (out, bytes);
        None
    }
}

/// Writes `bytes` (16 to 64 of them: ids, UUIDs, URLs, timestamps) quoted at `out` if none
/// needs an escape, and says how many bytes that took; `None` (the bytes at `out`
/// undefined) otherwise, or for another length. 16-byte loads, checks and stores, the last
/// one ending at the string's end (overlapping the one before), all within the string,
/// where the block writer reserved, looped and counted.
///
/// # Safety
/// `out` has room for [`MEDIUM_MAX`] + 2 bytes.
#[inline(always)]
pub unsafe fn put_medium_str(out: *mut u8, bytes: &[u8]) -> Option<usize> {
    let n = bytes.len();
    if !(16..=MEDIUM_MAX).contains(&n) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let p = bytes.as_ptr();
        let load = |at: usize| _mm_loadu_si128(p.add(at) as *const __m128i);
        let tail = load(n - 16);
        let mut mask = special_mask16(tail);
        let mut at = 16;
        while at < n {
            mask |= special_mask16(load(at - 16));
            at += 16;
        }
        if mask != 0 {
            return None;
        }
        *out = b'"';
        let mut at = 16;
        while at < n {
            _mm_storeu_si128(out.add(at - 15) as *mut __m128i, load(at - 16));
            at += 16;
        }
        _mm_storeu_si128(out.add(n - 15) as *mut __m128i, tail);
        *out.add(1 + n) = b'"';
        Some(n + 2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = out;
        None
    }
}

/// The longest string [`put_medium_str`] writes.
pub const MEDIUM_MAX: usize = 64;

/// The smallest page size of the platforms built for: a read that stays within one page
/// of a readable byte cannot fault.
pub const PAGE: usize = 4096;

/// [`put_short_str`] for `n` (< 16) bytes at `p` of which 16 may be read: one load, one
/// check and one store whatever `n` is, where the length-dependent reads and stores of
/// `put_short_str` mispredict on values of mixed lengths. Bytes past `n` are masked out of
/// the check, and the store's bytes past `n` are overwritten or lie past the count.
///
/// # Safety
/// `out` has room for 18 bytes; the 16 bytes at `p` can be read (the caller checks that
/// they lie in one page with the string, which then cannot fault).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn put_short_str_wide(out: *mut u8, p: *const u8, n: usize) -> Option<usize> {
    use std::arch::x86_64::*;
    debug_assert!(n < 16);
    let x = _mm_loadu_si128(p as *const __m128i);
    if special_mask16(x) & ((1u32 << n) - 1) != 0 {
        return None;
    }
    *out = b'"';
    _mm_storeu_si128(out.add(1) as *mut __m128i, x);
    *out.add(1 + n) = b'"';
    Some(n + 2)
}

/// Bytes of `bytes` (shorter than 16) as two words that together cover every byte: the
/// first and last 8 (or 4) bytes, overlapping; 1 to 3 bytes spread over `lo`. Lanes not
/// taken from `bytes` hold `a`, which needs no escape.
#[inline(always)]
fn short_words(bytes: &[u8]) -> (u64, u64) {
    const PAD: u64 = 0x6161_6161_6161_6161;
    let n = bytes.len();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            bytes[at..at + 4].try_into().unwrap_or_default(),
        ))
    };
    match n {
        8.. => (word(0), word(n - 8)),
        4..=7 => (half(0) | (half(n - 4) << 32), PAD),
        1..=3 => {
            let b = |i: usize| u64::from(bytes[i]);
            (b(0) | (b(n / 2) << 8) | (b(n - 1) << 16) | (PAD << 24), PAD)
        }
        0 => (PAD, PAD),
    }
}

/// Stores `bytes` (shorter than 16) at `out` from the words of [`short_words`].
///
/// # Safety
/// `out` has room for 16 bytes.
#[inline(always)]
unsafe fn put_short(out: *mut u8, bytes: &[u8], lo: u64, hi: u64) {
    let n = bytes.len();
    match n {
        8.. => {
            std::ptr::write_unaligned(out as *mut u64, lo);
            std::ptr::write_unaligned(out.add(n - 8) as *mut u64, hi);
        }
        4..=7 => {
            std::ptr::write_unaligned(out as *mut u32, lo as u32);
            std::ptr::write_unaligned(out.add(n - 4) as *mut u32, (lo >> 32) as u32);
        }
        1..=3 => {
            *out = bytes[0];
            *out.add(n / 2) = bytes[n / 2];
            *out.add(n - 1) = bytes[n - 1];
        }
        0 => {}
    }
}

#[inline(never)]
fn write_str_blocks<S: Sink>(sink: &mut S, bytes: &[u8]) {
    let n = bytes.len();
    let mut i = 0;
    // SAFETY: each block reserves 6 bytes per input byte, both quotes and the slack.
    unsafe {
        loop {
            let end = n.min(i + BLOCK);
            let base = sink.reserve_raw(6 * (end - i) + 2 + SLACK);
            let mut out = base;
            if i == 0 {
                *out = b'"';
                out = out.add(1);
            }
            out = escape_any(bytes, i, end, out);
            if end == n {
                *out = b'"';
                out = out.add(1);
                sink.commit(out.offset_from(base) as usize);
                return;
            }
            sink.commit(out.offset_from(base) as usize);
            i = end;
        }
    }
}

/// "00" to "99".
static PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// The 4 decimal digits of `u` (< 10^4, zero-padded) as a little-endian word, first digit
/// in the low byte: its two pairs from the table.
#[inline(always)]
fn digits4(u: u64) -> u64 {
    debug_assert!(u < 10_000);
    let pair = |k: u64| u64::from(u16::from_le_bytes(PAIRS[k as usize]));
    pair(u / 100) | pair(u % 100) << 16
}

/// The 8 decimal digits of `u` (< 10^8, zero-padded) as a little-endian word, first digit
/// in the low byte: both halves, then their pairs, at once, not a chain of divisions.
/// (Splitting the lanes in one register without the table measured slower here.)
#[inline(always)]
fn digits8(u: u64) -> u64 {
    debug_assert!(u < 100_000_000);
    digits4(u / 10_000) | digits4(u % 10_000) << 32
}

/// How many decimal digits `u` (< 10^8) has; 1 for 0. Seven comparisons, independent of
/// each other: a few cycles from `u` to the count.
#[inline(always)]
fn digits_below_1e8(u: u64) -> usize {
    debug_assert!(u < 100_000_000);
    1 + [10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000]
        .iter()
        .map(|&p| (u >= p) as usize)
        .sum::<usize>()
}

/// Writes the decimal digits of `v` (with `-` if negative) at `out`; returns the count.
/// Straight into the output: digits formatted into a stack buffer and then copied are
/// read back before their stores retire, and that store-forwarding stall cost more than
/// the formatting.
///
/// # Safety
/// `out` has room for 20 bytes (8 are stored for short numbers, whatever their length).
#[inline(always)]
pub unsafe fn write_i64(out: *mut u8, v: i64) -> usize {
    let negative = v < 0;
    *out = b'-';
    let start = out.add(negative as usize);
    let mut u = v.unsigned_abs();
    if u < 100_000_000 {
        // The length comes from `u`, not from the digits: the next token's position waits on
        // the length, and counting the digit word's zeros put the whole conversion on that
        // path.
        if u < 10_000 {
            // Ids, counts, years: two pairs, half the conversion below.
            let len = digits_below_1e8(u);
            let word = digits4(u) as u32;
            std::ptr::write_unaligned(start as *mut u32, word >> (8 * (4 - len)));
            return negative as usize + len;
        }
        // Up to 8 digits as one word, whose leading zeros are shifted out.
        let len = digits_below_1e8(u);
        std::ptr::write_unaligned(start as *mut u64, digits8(u) >> (8 * (8 - len)));
        return negative as usize + len;
    }
    let len = u.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut end = start.add(len);
    // Four digits per step: the two pairs of a step do not wait on each other, and the
    // chain of divisions is half as long as with one pair per step.
    while u >= 10_000 {
        let rest = (u % 10_000) as usize;
        u /= 10_000;
        end = end.sub(4);
        std::ptr::copy_nonoverlapping(PAIRS[rest / 100].as_ptr(), end, 2);
        std::ptr::copy_nonoverlapping(PAIRS[rest % 100].as_ptr(), end.add(2), 2);
    }
    if u >= 100 {
        end = end.sub(2);
        std::ptr::copy_nonoverlapping(PAIRS[(u % 100) as usize].as_ptr(), end, 2);
        u /= 100;
    }
    if u >= 10 {
        std::ptr::copy_nonoverlapping(PAIRS[u as usize].as_ptr(), start, 2);
    } else {
        *start = b'0' + u as u8;
    }
    negative as usize + len
}

/// [`write_i64`] with a shortcut for 0 to 99 (counts, quantities, flags): their pair from
/// the table, without its leading zero below 10, in place of an eight-digit conversion.
/// A list of ints 0-99 fingerprints 1.7 times as fast, one of 0-4 1.85 times
/// (`scripts/ab-native.py`). Kept apart from `write_i64`, which the float path also inlines:
/// inside it, the shortcut slowed other members' code by 2-4 %.
///
/// # Safety
/// As for [`write_i64`].
#[inline(always)]
pub unsafe fn put_int(out: *mut u8, v: i64) -> usize {
    let u = v.unsigned_abs();
    if u < 100 {
        *out = b'-';
        let negative = (v < 0) as usize;
        let one = (u < 10) as usize;
        let pair = u16::from_le_bytes(PAIRS[u as usize]) >> (8 * one);
        std::ptr::write_unaligned(out.add(negative) as *mut u16, pair);
        return negative + 2 - one;
    }
    write_i64(out, v)
}

/// Lowercase hex of a digest.
pub fn hex32(digest: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86_64; 2 x 16 bytes read, 4 x 16 bytes written.
    unsafe {
        use std::arch::x86_64::*;
        let low_nibble = _mm_set1_epi8(0x0f);
        let nine = _mm_set1_epi8(9);
        let zero = _mm_set1_epi8(b'0' as i8);
        let to_letter = _mm_set1_epi8((b'a' - b'0' - 10) as i8);
        for half in 0..2 {
            let x = _mm_loadu_si128(digest.as_ptr().add(16 * half) as *const __m128i);
            let hi = _mm_and_si128(_mm_srli_epi16(x, 4), low_nibble);
            let lo = _mm_and_si128(x, low_nibble);
            for (k, n) in [_mm_unpacklo_epi8(hi, lo), _mm_unpackhi_epi8(hi, lo)]
                .into_iter()
                .enumerate()
            {
                let letters = _mm_and_si128(_mm_cmpgt_epi8(n, nine), to_letter);
                let ascii = _mm_add_epi8(_mm_add_epi8(n, zero), letters);
                let at = out.as_mut_ptr().add(32 * half + 16 * k);
                _mm_storeu_si128(at as *mut __m128i, ascii);
            }
        }
        return out;
    }
    #[allow(unreachable_code)]
    {
        for (i, b) in digest.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        out
    }
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
///
/// `n` is an i128: a Decimal's exponent reaches ±10^18 and a subclass's text any i64, and
/// every step here stays exact in 128 bits.
pub fn es_layout(out: &mut Vec<u8>, negative: bool, digits: &[u8], n: i128) {
    let k = digits.len() as i128;
    if negative {
        out.push(b'-');
    }
    if k <= n && n <= 21 {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.extend_from_slice(&digits[..n as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-n) as usize));
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

/// 2^53.
const MAX_SAFE_F64: f64 = 9_007_199_254_740_992.0;

/// Writes at `out` the ECMAScript text of a double and says how long it is, for every
/// finite double but those ECMAScript writes with an exponent and those from 1e-6 to 1e-5
/// that need more than six places; `None` (nothing written) for those and for NaN and the
/// infinities, which the caller gives to ryu_js or rejects. At most 24 bytes: `-0.0000` and
/// 17 digits. Straight into the output, so that the item and member loops keep their
/// position in a register.
///
/// One decision per kind, cheapest first:
/// - a short decimal (at most six places, 1e-6 <= |v| < 1e9: prices, scores, and the
///   integers in that range) by `put_decimal`. Exact: with m = round(|v| x 1e6),
///   `reads_back` says in integers whether the text `m e-6` parses back to v. If some
///   k-place decimal d (k <= 6) parses to v, then |v| x 1e6 is within 0.25 of
///   d x 10^(6-k) in this range, so m is exactly that and stripping m's trailing zeros
///   finds the fewest places. And here 10^-6 exceeds two ulps of v, so no other decimal of
///   that many places also parses to v: the shortest round-trip text is unique, as
///   ECMAScript requires. A double of that range that is not a short decimal is not an
///   integer either (an integer's m reads back), so it goes straight to zmij from 1e-5 up;
/// - other integers below 2^53 (and -0, written `0`) by [`write_i64`];
/// - the other non-integral values from 1e-5 up to 2^53 (sums of prices such as
///   `16.990000000000002`, most computed values: up to 17 digits) by zmij (Schubfach), which
///   finds the same shortest round-trip digits as ryu, 2.6 times faster here (16 against
///   43 ns), and for these values, whose decimal exponent is -5 to 15, writes the fixed
///   layout (`0.00001234`, `12.34`) as ECMAScript does.
///
/// # Safety
/// `out` has room for 24 bytes.
#[inline(always)]
pub unsafe fn put_float(v: f64, out: *mut u8) -> Option<usize> {
    let a = v.abs();
    if (1e-6..1e9).contains(&a) {
        // a * 1e6 < 1e15 and positive: adding 0.5 and truncating rounds it. Through i64:
        // one instruction each way (u64 conversions take several without AVX-512). Should
        // the sum round to the next integer, m misses, reads_back says no and zmij writes
        // the same text, slower.
        let m = (a * 1e6 + 0.5).to_int_unchecked::<i64>() as u64;
        if reads_back(m, a) {
            return Some(put_decimal(v < 0.0, m, out));
        }
        return if a >= 1e-5 {
            Some(put_zmij(v, out))
        } else {
            None
        };
    }
    if a < MAX_SAFE_F64 && a as i64 as f64 == a {
        // Integral test by a round trip through i64 (saturating), not a libm call.
        return Some(write_i64(out, v as i64));
    }
    if (1e-5..MAX_SAFE_F64).contains(&a) {
        return Some(put_zmij(v, out));
    }
    None
}

/// The text of a short decimal, for [`put_float`]'s tests: `None` unless `v` is one.
///
/// # Safety
/// `out` has room for 24 bytes.
#[cfg(test)]
unsafe fn short_decimal(v: f64, out: *mut u8) -> Option<usize> {
    let a = v.abs();
    if !(1e-6..1e9).contains(&a) {
        return None;
    }
    let m = (a * 1e6 + 0.5).to_int_unchecked::<i64>() as u64;
    reads_back(m, a).then(|| put_decimal(v < 0.0, m, out))
}

/// Writes m x 10^-6 (m < 10^15), negated if `negative`, with no trailing zeros.
///
/// # Safety
/// `out` has room for 24 bytes.
#[inline(always)]
unsafe fn put_decimal(negative: bool, m: u64, out: *mut u8) -> usize {
    *out = b'-';
    let mut n = negative as usize;
    // The six places as the top of "00dddddd" (or of the whole number's eight digits below
    // 100, most prices and scores: one conversion, not two), then shifted down.
    let places_word = if m < 100_000_000 {
        let word = digits8(m);
        // One integer digit, or two from 10 up: two bytes of the word stored from the first
        // of them (below 10 the second is the first place, which the point overwrites).
        let two = (m >= 10_000_000) as usize;
        std::ptr::write_unaligned(out.add(n) as *mut u16, (word >> (8 - 8 * two)) as u16);
        n += 1 + two;
        word >> 16
    } else {
        n += write_i64(out.add(n), (m / 1_000_000) as i64);
        digits8(m % 1_000_000) >> 16
    };
    // The places' trailing zeros (the word's top bytes that are '0') not counted: no
    // division per place.
    let zeros = (places_word ^ 0x3030_3030_3030).leading_zeros() as usize / 8 - 2;
    let places = 6 - zeros;
    *out.add(n) = b'.';
    std::ptr::write_unaligned(out.add(n + 1) as *mut u64, places_word);
    n + (places > 0) as usize + places
}

/// Whether the decimal m x 10^-6 rounds to the double `a` (1e-6 <= a < 1e9, m < 2^50), in
/// integer arithmetic. A float division (`m as f64 / 1e6 == a`) answers the same, but its
/// latency sat on the path of every value that is not a short decimal: with it, a list of
/// computed totals took 21.5 ns per number, without it 16.7.
///
/// With a = M x 2^(e - 1075) (M the 53-bit significand, e the biased exponent) and
/// 1e6 = 15625 x 2^6, take s = 1069 - e (17 to 66 in this range) and
/// d = m x 2^s - 15625 x M, an exact integer (|m x 2^s| < 2^116, 15625 x M < 2^67). Then
/// m x 10^-6 - a = d x 2^-s / 1e6, and half of a's ulp, 2^(e - 1076), is 7812.5 x 2^-s / 1e6.
/// m x 10^-6 rounds to a iff it lies within half an ulp of a; never exactly half, as that
/// point has 54 significant bits and m x 10^-6 is either not a binary fraction or one of at
/// most 36 bits. So the test is |d| <= 7812. Below a power of two (M = 2^52) the next
/// double down is only half an ulp away (a quarter of the bound), but there d is a multiple of
/// 2^min(s, 52) >= 2^17, so |d| <= 7812 means d = 0 and the one bound serves.
#[inline(always)]
fn reads_back(m: u64, a: f64) -> bool {
    let bits = a.to_bits();
    let significand = bits & ((1 << 52) - 1) | 1 << 52;
    let s = 1069 - (bits >> 52) as u32;
    debug_assert!(
        (17..=66).contains(&s),
        "{a:e} outside the short-decimal range"
    );
    let d = ((m as u128) << s).wrapping_sub(15625 * significand as u128) as i128;
    // d in [-7812, 7812], as one unsigned comparison.
    (d + 7812) as u128 <= 2 * 7812
}

/// zmij's text of a finite double (at most 24 bytes for the values [`put_float`] gives it)
/// copied to `out`; its length.
///
/// # Safety
/// `out` has room for 24 bytes.
#[inline]
unsafe fn put_zmij(v: f64, out: *mut u8) -> usize {
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(v).as_bytes();
    let (src, n) = (text.as_ptr(), text.len().min(24));
    // Two overlapping fixed-size copies (a memcpy call of a variable length was 3 % of an
    // order's fingerprint): every read is within `text`, every write within `out[..n]`.
    if n >= 16 {
        // n <= 24: bytes 0..16 and n - 8..n cover them all.
        let head = std::ptr::read_unaligned(src as *const [u8; 16]);
        let tail = std::ptr::read_unaligned(src.add(n - 8) as *const [u8; 8]);
        std::ptr::write_unaligned(out as *mut [u8; 16], head);
        std::ptr::write_unaligned(out.add(n - 8) as *mut [u8; 8], tail);
    } else if n >= 8 {
        let head = std::ptr::read_unaligned(src as *const [u8; 8]);
        let tail = std::ptr::read_unaligned(src.add(n - 8) as *const [u8; 8]);
        std::ptr::write_unaligned(out as *mut [u8; 8], head);
        std::ptr::write_unaligned(out.add(n - 8) as *mut [u8; 8], tail);
    } else {
        for i in 0..n {
            *out.add(i) = *src.add(i);
        }
    }
    n
}

/// Writes the ECMAScript text of a finite double: [`put_float`], or ryu_js for the rest
/// (exponent layouts, and `1e-6` to `1e-5` where ECMAScript is still fixed and zmij is not).
#[inline]
pub fn write_float_text<S: Sink>(sink: &mut S, v: f64) {
    let out = sink.reserve_raw(24);
    // SAFETY: 24 bytes reserved; put_float writes at most that many and says how many.
    unsafe {
        match put_float(v, out) {
            Some(n) => sink.commit(n),
            None => sink.write(ryu_js::Buffer::new().format_finite(v).as_bytes()),
        }
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
    // Exponents are parsed as i64 and all arithmetic on them is done in i128: no step can
    // overflow (Decimal's own exponents stay within ±10^18).
    let (mantissa, exponent) = match rest.iter().position(|&c| c == b'E' || c == b'e') {
        Some(i) => {
            let e = std::str::from_utf8(&rest[i + 1..])
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or(DecimalError::Malformed)?;
            (&rest[..i], i128::from(e))
        }
        None => (rest, 0),
    };
    let mut digits: Vec<u8> = Vec::with_capacity(mantissa.len());
    let mut frac: i128 = 0;
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
    let mut exp10 = exponent - frac;
    let mut end = digits.len();
    while digits[end - 1] == b'0' {
        end -= 1;
        exp10 += 1;
    }
    let significant = &digits[lead..end];
    let n = exp10 + significant.len() as i128;
    let mut out = Vec::with_capacity(significant.len() + 8);
    es_layout(&mut out, negative, significant, n);
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
pub enum IsoError {
    OffsetWithSeconds,
    /// Not ISO 8601 text (not even ASCII).
    NotIso,
}

/// Canonical text of an `isoformat()` of a datetime (`time_start` = 11) or time
/// (`time_start` = 0): a UTC offset of zero becomes `Z`, other offsets stay `±HH:MM`, an offset
/// with seconds is refused, a naive value keeps no suffix.
pub fn iso_text(iso: &str, time_start: usize) -> Result<String, IsoError> {
    // ASCII: every byte index below is a char boundary.
    if !iso.is_ascii() {
        return Err(IsoError::NotIso);
    }
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
        assert_eq!(
            s("€\u{2028}😀</script>".as_bytes()),
            "\"€\u{2028}😀</script>\""
        );
    }

    fn slow_escape(bytes: &[u8]) -> String {
        let mut out = String::from("\"");
        for ch in std::str::from_utf8(bytes).unwrap().chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{8}' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\u{c}' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn block_writer_matches_a_plain_escaper_at_every_position() {
        for len in 0..70 {
            for pos in 0..len {
                for special in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
                    let mut v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    v[pos] = special;
                    if pos + 1 < len {
                        v[len - 1] = b'"';
                    }
                    assert_eq!(s(&v), slow_escape(&v), "len {len} pos {pos} byte {special}");
                }
            }
        }
        // The 64-byte path: escapes at every position of blocks, at their edges, in runs.
        for len in [127, 128, 129, 191, 192, 193, 255, 256, 300] {
            for pos in 0..len {
                for special in [b'"', 0x1f, b'\n'] {
                    let mut v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    v[pos] = special;
                    v[(pos * 7 + 3) % len] = b'\\';
                    assert_eq!(s(&v), slow_escape(&v), "len {len} pos {pos} byte {special}");
                }
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..700 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    b"ab\"\\\n\t\x01x"[(state % 8) as usize]
                })
                .collect();
            assert_eq!(s(&v), slow_escape(&v), "dense, len {len}");
        }
        let big: Vec<u8> = (0..3 * BLOCK + 7)
            .map(|i| if i % 61 == 0 { b'\n' } else { b'x' })
            .collect();
        assert_eq!(s(&big), slow_escape(&big));
        let all: Vec<u8> = (0u8..0x80).cycle().take(1000).collect();
        assert_eq!(s(&all), slow_escape(&all));
        let wide = "é€😀\u{7f}\u{80}\u{2028}".repeat(40);
        assert_eq!(s(wide.as_bytes()), slow_escape(wide.as_bytes()));
    }

    #[test]
    fn window_writes_what_the_sink_would() {
        let mut direct = Vec::new();
        let mut window = Window::new(Vec::new());
        let mut state = 7u64;
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = [0, 1, 5, 16, 17, 300, 2047, 2048, 5000][(state >> 60) as usize % 9];
            let bytes: Vec<u8> = (0..len).map(|i| (i as u64 ^ state) as u8).collect();
            match (state >> 56) % 4 {
                0 => {
                    direct.push(bytes.first().copied().unwrap_or(b'x'));
                    window.push(bytes.first().copied().unwrap_or(b'x'));
                }
                1 => {
                    write_str(&mut direct, b"a\"b");
                    write_str(&mut window, b"a\"b");
                }
                _ => {
                    direct.extend_from_slice(&bytes);
                    window.write(&bytes);
                }
            }
        }
        assert_eq!(window.inner().as_slice(), direct.as_slice());
    }

    /// Both 64-byte loops, called directly (write_str picks one by CPU).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn wide_short_str_checks_only_its_own_bytes() {
        for n in 0..16 {
            // Whatever follows the string in its 16 bytes (quotes, backslashes, controls)
            // neither blocks the fast path nor reaches the output.
            for junk in [b'"', b'\\', 0u8, b'\n', b'a'] {
                let mut src = [junk; 16];
                for (i, b) in src.iter_mut().take(n).enumerate() {
                    *b = b'a' + i as u8;
                }
                let mut out = [0u8; 18];
                let written = unsafe { put_short_str_wide(out.as_mut_ptr(), src.as_ptr(), n) };
                assert_eq!(written, Some(n + 2), "n {n} junk {junk}");
                assert_eq!(s(&src[..n]).as_bytes(), &out[..n + 2], "n {n} junk {junk}");
            }
            // A byte of its own that needs an escape sends it to the general writer.
            for pos in 0..n {
                for special in [b'"', b'\\', 0u8, 0x1f] {
                    let mut src = [b'a'; 16];
                    src[pos] = special;
                    let mut out = [0u8; 18];
                    let written = unsafe { put_short_str_wide(out.as_mut_ptr(), src.as_ptr(), n) };
                    assert_eq!(written, None, "n {n} pos {pos} byte {special}");
                }
            }
        }
    }

    #[test]
    fn sse2_avx2_and_avx512_loops_agree_with_the_plain_escaper() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for len in (0..1200).step_by(7) {
            for density in [2u64, 16, 64, 1000] {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        if state.is_multiple_of(density) {
                            b"\"\\\n\t\x01"[(state >> 32) as usize % 5]
                        } else {
                            b'a' + (state >> 40) as u8 % 26
                        }
                    })
                    .collect();
                let expected = slow_escape(&v);
                let expected = &expected.as_bytes()[1..expected.len() - 1];
                let mut out = vec![0u8; 6 * len + SLACK];
                let base = out.as_mut_ptr();
                let n = unsafe { escape_block(&v, 0, len, base).offset_from(base) } as usize;
                assert_eq!(&out[..n], expected, "sse2, len {len}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512bw") {
                    let n =
                        unsafe { escape_block_avx512(&v, 0, len, base).offset_from(base) } as usize;
                    assert_eq!(&out[..n], expected, "avx512, len {len}");
                }
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let n =
                        unsafe { escape_block_avx2(&v, 0, len, base).offset_from(base) } as usize;
                    assert_eq!(&out[..n], expected, "avx2, len {len}");
                }
            }
        }
    }

    #[test]
    fn utf16_order_matches_rfc_example() {
        // RFC 8785 §3.2.3: "\r" < "1" < "\u0080" < "ö" < "€" < "😀" < "דּ" (U+FB33)
        let keys = ["\r", "1", "\u{80}", "ö", "€", "😀", "\u{fb33}"];
        for w in keys.windows(2) {
            assert_eq!(
                utf16_cmp(w[0].as_bytes(), w[1].as_bytes()),
                Ordering::Less,
                "{w:?}"
            );
            assert_eq!(
                utf16_cmp(w[1].as_bytes(), w[0].as_bytes()),
                Ordering::Greater
            );
        }
        assert_eq!(utf16_cmp(b"ab", b"abc"), Ordering::Less);
        assert_eq!(utf16_cmp(b"", b""), Ordering::Equal);
    }

    #[test]
    fn utf16_order_agrees_with_encode_utf16_everywhere() {
        let samples = [
            "",
            "a",
            "z",
            "\u{7f}",
            "\u{80}",
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{ffff}",
            "\u{10000}",
            "\u{10ffff}",
            "a\u{e000}",
            "a\u{10000}",
            "\u{fb33}x",
        ];
        for a in samples {
            for b in samples {
                let expected = a.encode_utf16().cmp(b.encode_utf16());
                assert_eq!(
                    utf16_cmp(a.as_bytes(), b.as_bytes()),
                    expected,
                    "{a:?} {b:?}"
                );
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
        assert_eq!(
            dec("123456789012345678901234567890.5"),
            "1.234567890123456789012345678905e+29"
        );
        assert_eq!(dec("1E+21"), "1e+21");
        assert_eq!(dec("1E+20"), "100000000000000000000");
        assert_eq!(decimal_text("NaN"), Err(DecimalError::NotFinite));
        assert_eq!(decimal_text("-Infinity"), Err(DecimalError::NotFinite));
        assert_eq!(decimal_text("sNaN"), Err(DecimalError::NotFinite));
    }

    #[test]
    fn decimal_exponents_at_the_ends_of_i64_stay_exact() {
        assert_eq!(dec("1E9223372036854775807"), "1e+9223372036854775807");
        assert_eq!(dec("1E-9223372036854775808"), "1e-9223372036854775808");
        assert_eq!(dec("1.5E-9223372036854775808"), "1.5e-9223372036854775808");
        assert_eq!(dec("100E9223372036854775807"), "1e+9223372036854775809");
        assert_eq!(dec("0.01E-9223372036854775808"), "1e-9223372036854775810");
        assert_eq!(
            decimal_text("1E9223372036854775808"),
            Err(DecimalError::Malformed)
        );
    }

    #[test]
    fn iso_text_refuses_what_is_not_ascii() {
        assert_eq!(iso_text(&"é".repeat(12), 11), Err(IsoError::NotIso));
        assert_eq!(iso_text(&"é".repeat(12), 0), Err(IsoError::NotIso));
        assert_eq!(iso_text("2024-01-02T03:04:05é", 11), Err(IsoError::NotIso));
    }

    #[test]
    fn iso_offsets() {
        assert_eq!(
            iso_text("2024-01-02T03:04:05+00:00", 11).unwrap(),
            "2024-01-02T03:04:05Z"
        );
        assert_eq!(
            iso_text("2024-01-02T03:04:05.000001-05:30", 11).unwrap(),
            "2024-01-02T03:04:05.000001-05:30"
        );
        assert_eq!(
            iso_text("2024-01-02T03:04:05", 11).unwrap(),
            "2024-01-02T03:04:05"
        );
        assert_eq!(iso_text("03:04:05+00:00", 0).unwrap(), "03:04:05Z");
        assert_eq!(iso_text("2024-01-02", 11).unwrap(), "2024-01-02");
        assert_eq!(
            iso_text("03:04:05+01:00:30", 0),
            Err(IsoError::OffsetWithSeconds)
        );
    }

    #[test]
    fn float_text_matches_ryu_js_everywhere() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut values = vec![
            1e-5,
            1e-5 - f64::EPSILON * 1e-5,
            9.999999999999999e-6,
            1.5e-6,
            0.1 + 0.2,
            16.990000000000002,
            4503599627370495.5,
            9007199254740991.0,
            9007199254740992.0,
            9007199254740994.0,
            1e16,
            1e21,
            1e-7,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
        ];
        for _ in 0..300_000 {
            let bits = next();
            // Random bit patterns, and computed prices (a two-place amount times a factor).
            values.push(f64::from_bits(bits));
            let cents = (bits % 1_000_000) as f64 / 100.0;
            values.push(cents * [1.1, 3.0, 0.07, 1.0 / 3.0][(bits >> 60) as usize % 4]);
            values.push(cents / 1e7);
        }
        for v in values {
            for v in [v, -v] {
                if !v.is_finite() {
                    continue;
                }
                let mut got = Vec::new();
                write_float_text(&mut got, v);
                let expected = ryu_js::Buffer::new().format_finite(v).to_owned();
                assert_eq!(expected.as_bytes(), &got[..], "{v:e}");
                let mut leaf = [0u8; 24];
                // SAFETY: 24 bytes of room.
                if let Some(n) = unsafe { put_float(v, leaf.as_mut_ptr()) } {
                    assert_eq!(expected.as_bytes(), &leaf[..n], "{v:e}");
                }
            }
        }
    }

    #[test]
    fn reads_back_agrees_with_a_float_division() {
        // The oracle: IEEE division is correctly rounded, so m / 1e6 is the double nearest
        // m x 10^-6 (m < 2^53 and 1e6 are exact doubles).
        let check = |m: u64, a: f64| {
            if (1e-6..1e9).contains(&a) && m < 1 << 50 {
                assert_eq!(reads_back(m, a), m as f64 / 1e6 == a, "m={m} a={a:e}");
            }
        };
        let mut state: u64 = 0x1234_5678_9ABC_DEF1;
        let mut agreed = 0;
        for i in 0..400_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Short decimals of every magnitude and their neighbours one and two ulps away,
            // each against m and m +- 1.
            let m = state % 10u64.pow((i % 16) as u32 + 1) + 1;
            let v = m as f64 / 1e6;
            for a in [
                v,
                f64::from_bits(v.to_bits() + 1),
                f64::from_bits(v.to_bits() - 1),
                f64::from_bits(v.to_bits() + 2),
                f64::from_bits(v.to_bits() - 2),
            ] {
                let nearest = (a * 1e6 + 0.5) as u64;
                for m in [nearest, nearest + 1, nearest.saturating_sub(1)] {
                    check(m, a);
                }
                agreed += 1;
            }
        }
        // Powers of two, where the next double down is half as far, and their neighbours.
        for e in -20..30 {
            let p = 2f64.powi(e);
            for a in [
                p,
                f64::from_bits(p.to_bits() - 1),
                f64::from_bits(p.to_bits() + 1),
            ] {
                let nearest = (a * 1e6 + 0.5) as u64;
                for m in nearest.saturating_sub(2)..nearest + 3 {
                    check(m, a);
                }
            }
        }
        assert!(agreed > 1_000_000);
    }

    #[test]
    fn short_decimals_match_ryu_js() {
        let mut buf = [0u8; 24];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut checked = 0;
        for i in 0..200_000u64 {
            // xorshift: magnitudes across the fast range, 0 to 8 places.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let places = (i % 9) as i32;
            let scale = 10f64.powi((state % 12) as i32 - 4);
            let v = ((state >> 11) as f64 / (1u64 << 53) as f64 * scale * 10f64.powi(places))
                .round()
                / 10f64.powi(places)
                * if i % 2 == 0 { 1.0 } else { -1.0 };
            if v.fract() == 0.0 {
                continue;
            }
            let expected = ryu_js::Buffer::new().format_finite(v).to_owned();
            if let Some(n) = unsafe { short_decimal(v, buf.as_mut_ptr()) } {
                assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), expected, "{v:e}");
                checked += 1;
            }
        }
        assert!(checked > 50_000, "fast path taken only {checked} times");
        for v in [
            0.1,
            0.2,
            2.5,
            12.3456,
            0.000001,
            0.0000015,
            999999999.5,
            -0.5,
            0.1 + 0.2,
        ] {
            if let Some(n) = unsafe { short_decimal(v, buf.as_mut_ptr()) } {
                assert_eq!(
                    std::str::from_utf8(&buf[..n]).unwrap(),
                    ryu_js::Buffer::new().format_finite(v)
                );
            }
        }
    }

    #[test]
    fn integers_match_std_formatting() {
        let mut cases = vec![
            0,
            1,
            -1,
            9,
            10,
            99,
            100,
            -100,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        // Every int of up to four digits (two pairs), and a stride through eight.
        cases.extend(-20_000..20_000);
        cases.extend((0..100_000_000).step_by(997));
        let mut x = 1i64;
        for _ in 0..18 {
            cases.extend([x - 1, x, x + 1, -x, 7 * x + 3]);
            x *= 10;
        }
        for v in cases {
            let mut buf = [0u8; 20];
            let n = unsafe { write_i64(buf.as_mut_ptr(), v) };
            assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), v.to_string());
            let n = unsafe { put_int(buf.as_mut_ptr(), v) };
            assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), v.to_string());
        }
    }

    #[test]
    fn digits8_matches_format() {
        let mut check = |u: u64| {
            let word = digits8(u).to_le_bytes();
            assert_eq!(
                std::str::from_utf8(&word).unwrap(),
                format!("{u:08}"),
                "{u}"
            );
        };
        // Every lane boundary (each group of four and each pair) and a stride through all.
        for k in 0..10_000u64 {
            for u in [
                k,
                k * 10_000,
                k * 10_000 + 9_999,
                k * 10_001,
                99_999_999 - k,
            ] {
                check(u);
            }
        }
        (0..100_000_000).step_by(97).for_each(&mut check);
    }

    #[test]
    fn hex_matches_format() {
        let digest: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        let expected: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(std::str::from_utf8(&hex32(&digest)).unwrap(), expected);
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
