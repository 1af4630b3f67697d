//! One walk over a Python object tree, writing RFC 8785 bytes into a [`Sink`].
//!
//! The exact common types (str, int, dict, list, bool, None, float, tuple) are dispatched by
//! type pointer first; everything else goes to one `#[inline(never)]` function. Errors carry
//! their path as they unwind, so the happy path pays nothing to know where it is.
//!
//! What each in-place read and borrowed pointer assumes, and why it holds: `rust/SAFETY.md`.

use std::cell::UnsafeCell;
use std::os::raw::c_char;
use std::ptr::addr_of_mut;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering as AtomicOrdering};

use pyo3::exceptions::{PyAttributeError, PyUnicodeEncodeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyString, PyTuple};
use smallvec::SmallVec;

use crate::errors::{EncodeError, ErrorKind, Seg};
use crate::text::{
    decimal_text, iso_text, put_float, put_int, put_str, utf16_cmp, write_float_text, write_i64,
    write_str, DecimalError, IsoError, Sink, Window, MEDIUM_MAX, PAGE,
};

/// Deeper nesting raises instead of risking the native stack (orjson stops at 255 too).
pub const MAX_DEPTH: u32 = 255;

/// Native stack a container needs below it to be entered safely. Threads may have small
/// stacks (musl's default is 128 KiB): the level count alone does not protect them.
const STACK_RESERVE: usize = 48 * 1024;

/// 2^53: integers beyond it are not exact IEEE-754 doubles.
const MAX_SAFE: u64 = 1 << 53;

pub type Result<T = ()> = std::result::Result<T, Box<EncodeError>>;

/// Counts the moments at which other Python code may have run: a call into user code (a rare
/// type's method, a non-str key, big-int formatting, which runs `_pylong` on 3.12+, any
/// allocation that may start the garbage collector and its finalizers) or a release of the
/// GIL (hashing a long write). Any of them may let another thread, or the code itself,
/// replace the items of a container and free them. A borrowed pointer read while this
/// count had one value may be used only while it still has it (see
/// `Encoder::encode_with_shape`). Bumped with the GIL held; atomic only so that the static
/// is `Sync` (a relaxed load is a plain load).
static PYTHON_RAN: AtomicU64 = AtomicU64::new(0);

/// Marks that Python code may run (or the GIL be released) from now on.
#[inline(always)]
pub(crate) fn python_may_run() {
    PYTHON_RAN.fetch_add(1, AtomicOrdering::Relaxed);
}

#[inline(always)]
fn python_ran_count() -> u64 {
    PYTHON_RAN.load(AtomicOrdering::Relaxed)
}

/// Encoders running now, on any thread (a nested one means user code re-entered). Changed
/// only with the GIL held, so plain loads and stores suffice: an atomic read-modify-write
/// (a locked instruction) twice per call cost 3 % of a small fingerprint.
static ACTIVE: GilCounter = GilCounter(UnsafeCell::new(0));

struct GilCounter(UnsafeCell<usize>);

// SAFETY: touched only by `Encoder::new` and `Drop`, which hold the GIL (they take or hold a
// `Python` token): every access is serialised.
unsafe impl Sync for GilCounter {}

impl GilCounter {
    /// Adds `delta` (wrapping) and returns the value before.
    #[inline(always)]
    fn add(&self, _py: Python<'_>, delta: usize) -> usize {
        // SAFETY: the GIL, witnessed by `_py`, serialises every access.
        unsafe {
            let before = *self.0.get();
            *self.0.get() = before.wrapping_add(delta);
            before
        }
    }
}

/// True when the running CPython is older than 3.12: its reference count is a plain
/// integer that may be changed in place. From 3.12 on (immortal objects) the stable-ABI
/// functions are called instead.
static PLAIN_REFCOUNT: AtomicBool = AtomicBool::new(false);

/// How the common objects are read: through stable-ABI calls ([`LAYOUT_API`]), or in place
/// on the CPython versions whose object layouts are known ([`LAYOUT_310`]: 3.10 and 3.11,
/// [`LAYOUT_312`]: 3.12 and 3.13). Each call costs 3 to 10 ns per element, more than the
/// element's own encoding; orjson reads these structs too. On both layouts (GIL builds, the
/// only ones that load abi3 modules) a float keeps its value at offset 16, a list its size
/// at 16 and item array at 24, an int its sign and digit count at 16 and 30-bit digits from
/// 24, a str its length at 16 and state bits at 32, and a dict its size at 16; they differ
/// in the int's header and where a str's characters and cached UTF-8 are.
static LAYOUT: AtomicU8 = AtomicU8::new(LAYOUT_API);
const LAYOUT_API: u8 = 0;
const LAYOUT_310: u8 = 1;
const LAYOUT_312: u8 = 2;

pub fn init_runtime(py: Python<'_>) {
    let version = py.version_info();
    let minor = (version.major, version.minor);
    PLAIN_REFCOUNT.store(minor < (3, 12), AtomicOrdering::Relaxed);
    let layout = match minor {
        (3, 10..=11) => LAYOUT_310,
        (3, 12..=13) => LAYOUT_312,
        _ => LAYOUT_API,
    };
    LAYOUT.store(layout, AtomicOrdering::Relaxed);
    DICT_IN_PLACE.store(matches!(minor, (3, 11..=13)), AtomicOrdering::Relaxed);
}

#[inline(always)]
fn layout() -> u8 {
    LAYOUT.load(AtomicOrdering::Relaxed)
}

/// The field of type `T` at byte `offset` of an object.
#[inline(always)]
unsafe fn field<T: Copy>(obj: *mut ffi::PyObject, offset: usize) -> T {
    std::ptr::read((obj as *const u8).add(offset) as *const T)
}

/// An exact int of at most two 30-bit digits, read in place; `None`: ask the API.
#[inline(always)]
unsafe fn small_int(obj: *mut ffi::PyObject) -> Option<i64> {
    let (negative, ndigits) = match layout() {
        LAYOUT_310 => {
            // ob_size: the digit count, negative for negative values.
            let size: isize = field(obj, 16);
            (size < 0, size.unsigned_abs())
        }
        LAYOUT_312 => {
            // lv_tag: digit count << 3 | sign (0 positive, 1 zero, 2 negative).
            let tag: usize = field(obj, 16);
            (tag & 3 == 2, tag >> 3)
        }
        _ => return None,
    };
    let digit = |k: usize| i64::from(field::<u32>(obj, 24 + 4 * k));
    let magnitude = match ndigits {
        0 => 0,
        1 => digit(0),
        2 => digit(0) | (digit(1) << 30),
        _ => return None,
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// A str's UTF-8 read in place: a compact ASCII str's characters, or a compact str's cached
/// UTF-8. `None`: ask the API (which builds and caches the UTF-8, or finds a lone surrogate).
#[inline(always)]
unsafe fn utf8_in_place(obj: *mut ffi::PyObject) -> Option<(*const u8, usize)> {
    // sizeof(PyASCIIObject), and where PyCompactUnicodeObject keeps utf8_length and utf8.
    let (ascii_data, utf8_length) = match layout() {
        LAYOUT_310 => (48, 48),
        LAYOUT_312 => (40, 40),
        _ => return None,
    };
    // state: interned:2, kind:3, compact:1, ascii:1, ...
    let state: u32 = field(obj, 32);
    if state & (1 << 5) == 0 {
        return None;
    }
    if state & (1 << 6) != 0 {
        let data = (obj as *const u8).add(ascii_data);
        return Some((data, field::<isize>(obj, 16) as usize));
    }
    let utf8: *const u8 = field(obj, utf8_length + 8);
    if utf8.is_null() {
        return None;
    }
    Some((utf8, field::<isize>(obj, utf8_length) as usize))
}

/// True on CPython 3.11 to 3.13, whose dict keys share one layout (GIL builds): `ma_keys` at
/// offset 32 and `ma_values` (null for a combined table) at 40 of the dict; in the keys,
/// `dk_log2_index_bytes` at 9, `dk_kind` at 10 (0: general entries of hash, key, value;
/// otherwise str-keyed entries of key, value), `dk_nentries` at 24, and the index table
/// from 32, followed by the entries.
static DICT_IN_PLACE: AtomicBool = AtomicBool::new(false);

/// A combined entry table read in place: a pointer to the first entry's key (its value
/// follows), the entry size in pointers, and the entry count (deleted entries included).
/// `None` for a split table or where the layout is not known.
#[inline(always)]
unsafe fn entry_table(
    obj: *mut ffi::PyObject,
) -> Option<(*const *mut ffi::PyObject, usize, usize)> {
    if !DICT_IN_PLACE.load(AtomicOrdering::Relaxed) || !field::<*mut u8>(obj, 40).is_null() {
        return None;
    }
    let keys: *const u8 = field(obj, 32);
    let nentries = *(keys.add(24) as *const usize);
    let entries = keys.add(32 + (1usize << *keys.add(9)));
    Some(if *keys.add(10) != 0 {
        (entries as *const *mut ffi::PyObject, 2, nentries)
    } else {
        (entries.add(8) as *const *mut ffi::PyObject, 3, nentries)
    })
}

/// `PyDict_Next` (same `pos` meaning), reading a combined table in place where its layout
/// is known: iteration was a third of a record's encoding, one call per member.
#[inline(always)]
unsafe fn dict_next(
    obj: *mut ffi::PyObject,
    pos: &mut ffi::Py_ssize_t,
    key: &mut *mut ffi::PyObject,
    value: &mut *mut ffi::PyObject,
) -> bool {
    let Some((entries, stride, nentries)) = entry_table(obj) else {
        return ffi::PyDict_Next(obj, pos, key, value) != 0;
    };
    let mut i = *pos as usize;
    while i < nentries {
        let entry = entries.add(i * stride);
        i += 1;
        // A deleted entry has no value.
        let v = *entry.add(1);
        if !v.is_null() {
            *key = *entry;
            *value = v;
            *pos = i as ffi::Py_ssize_t;
            return true;
        }
    }
    *pos = i as ffi::Py_ssize_t;
    false
}

/// A dict's items in order, its entry table located once (in place where [`entry_table`]
/// can, else by `PyDict_Next`): for a walk during which no Python code runs, so that the
/// table stays where it was found.
struct DictItems {
    obj: *mut ffi::PyObject,
    table: Option<(*const *mut ffi::PyObject, usize, usize)>,
    pos: ffi::Py_ssize_t,
}

impl DictItems {
    /// # Safety
    /// `obj` is a dict or dict subclass, held by the caller, and no Python code runs (nor
    /// is the GIL released) while the items are read.
    #[inline(always)]
    unsafe fn new(obj: *mut ffi::PyObject) -> Self {
        DictItems {
            obj,
            table: entry_table(obj),
            pos: 0,
        }
    }
}

impl Iterator for DictItems {
    type Item = (*mut ffi::PyObject, *mut ffi::PyObject);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        // SAFETY: as `new` requires; the table's entries are read below its entry count.
        unsafe {
            let Some((entries, stride, nentries)) = self.table else {
                let (mut k, mut v) = (std::ptr::null_mut(), std::ptr::null_mut());
                return (ffi::PyDict_Next(self.obj, &mut self.pos, &mut k, &mut v) != 0)
                    .then_some((k, v));
            };
            while (self.pos as usize) < nentries {
                let entry = entries.add(self.pos as usize * stride);
                self.pos += 1;
                // A deleted entry has no value.
                let v = *entry.add(1);
                if !v.is_null() {
                    return Some((*entry, v));
                }
            }
            None
        }
    }
}

/// The [`entry_table`] of a dict of `len` items that has no deleted entries: entry j is
/// then its j-th item.
#[inline(always)]
unsafe fn dense_entries(
    obj: *mut ffi::PyObject,
    len: usize,
) -> Option<(*const *mut ffi::PyObject, usize)> {
    match entry_table(obj) {
        Some((entries, stride, nentries)) if nentries == len => Some((entries, stride)),
        _ => None,
    }
}

/// A dict's size.
#[inline(always)]
unsafe fn dict_len(obj: *mut ffi::PyObject) -> usize {
    if layout() == LAYOUT_API {
        ffi::PyDict_Size(obj) as usize
    } else {
        field::<isize>(obj, 16) as usize
    }
}

/// A dict's first item and the position after it, for [`dict_next`] (a non-empty dict).
#[inline(always)]
unsafe fn dict_first(
    obj: *mut ffi::PyObject,
) -> (ffi::Py_ssize_t, *mut ffi::PyObject, *mut ffi::PyObject) {
    let (mut pos, mut k, mut v) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    dict_next(obj, &mut pos, &mut k, &mut v);
    (pos, k, v)
}

/// Where a dict's items are read from: its entry table in place when that holds exactly
/// the items ([`dense_entries`]), else one [`dict_next`] step after another from the first.
#[derive(Clone, Copy)]
enum Items {
    Dense(*const *mut ffi::PyObject, usize),
    Steps((ffi::Py_ssize_t, *mut ffi::PyObject, *mut ffi::PyObject)),
}

impl Items {
    /// The items of `obj`, a non-empty dict of `len` items.
    #[inline(always)]
    unsafe fn of(obj: *mut ffi::PyObject, len: usize) -> Self {
        match dense_entries(obj, len) {
            Some((entries, stride)) => Items::Dense(entries, stride),
            None => Items::Steps(dict_first(obj)),
        }
    }

    #[inline(always)]
    unsafe fn first_key(self) -> *mut ffi::PyObject {
        match self {
            Items::Dense(entries, _) => *entries,
            Items::Steps((_, k, _)) => k,
        }
    }
}

/// Reads the items of a dict of `shape.keys.len()` items into `values` in insertion order;
/// false if its keys are not the shape's. Exactly that many steps: no final PyDict_Next
/// call to learn that there are no more.
#[inline(always)]
unsafe fn read_values(
    obj: *mut ffi::PyObject,
    shape: &Shape,
    items: Items,
    values: &mut [*mut ffi::PyObject; SHAPE_MAX_KEYS],
) -> bool {
    let n = shape.keys.len();
    let (mut pos, mut k, mut v) = match items {
        Items::Dense(entries, stride) => {
            // No deleted entries: entry j is the j-th item.
            for (j, key) in shape.keys.iter().enumerate() {
                let entry = entries.add(j * stride);
                if *entry != key.0 {
                    return false;
                }
                values[j] = *entry.add(1);
            }
            return true;
        }
        Items::Steps(first) => first,
    };
    for (j, key) in shape.keys.iter().enumerate() {
        if key.0 != k {
            return false;
        }
        values[j] = v;
        if j + 1 < n {
            dict_next(obj, &mut pos, &mut k, &mut v);
        }
    }
    true
}

/// Reads the values of `obj` (held by the caller) again after Python code may have run:
/// those read before may have been replaced and freed. An error if its keys changed. Returns
/// the [`PYTHON_RAN`] count the new values are valid under.
#[cold]
#[inline(never)]
unsafe fn reread_values(
    obj: *mut ffi::PyObject,
    shape: &Shape,
    values: &mut [*mut ffi::PyObject; SHAPE_MAX_KEYS],
) -> Result<u64> {
    let n = shape.keys.len();
    if dict_len(obj) == n && read_values(obj, shape, Items::of(obj, n), values) {
        return Ok(python_ran_count());
    }
    let mut e = EncodeError::new(ErrorKind::Mutated);
    e.containers.push(obj as usize);
    Err(e)
}

/// A list's size and item array: in place, or (null array) through the API.
#[inline(always)]
unsafe fn list_parts(obj: *mut ffi::PyObject) -> (isize, *mut *mut ffi::PyObject) {
    if layout() == LAYOUT_API {
        (ffi::PyList_Size(obj), std::ptr::null_mut())
    } else {
        (field(obj, 16), field(obj, 24))
    }
}

/// A strong reference held while an object is encoded. Only other Python code (run by a
/// rare type, big-int formatting or the garbage collector, or by another thread while the
/// GIL is released) can change containers under the encoder, so: every container and rare
/// object holds itself while it is written (its parent may drop it); a list's items are
/// read afresh for each index and written at once; a dict's values, read before they are
/// written in key order, are read again whenever [`PYTHON_RAN`] moved in between. Common
/// values are never held: their reference counts, shared by every `None`, `True` or
/// repeated string, made one dependent memory update after another.
struct Ref(*mut ffi::PyObject);

impl Ref {
    #[inline(always)]
    unsafe fn new(obj: *mut ffi::PyObject) -> Self {
        if PLAIN_REFCOUNT.load(AtomicOrdering::Relaxed) {
            // The GIL is held, and before 3.12 Py_INCREF is exactly this.
            (*obj).ob_refcnt += 1;
        } else {
            ffi::Py_IncRef(obj);
        }
        Ref(obj)
    }
}

impl Drop for Ref {
    #[inline(always)]
    fn drop(&mut self) {
        unsafe {
            // Never the last reference: the container we borrowed from holds one too,
            // unless user code removed it meanwhile, and then the slow call frees it.
            if PLAIN_REFCOUNT.load(AtomicOrdering::Relaxed) && (*self.0).ob_refcnt > 1 {
                (*self.0).ob_refcnt -= 1;
            } else {
                ffi::Py_DecRef(self.0);
            }
        }
    }
}

/// A key's canonical UTF-8: borrowed from the str object's UTF-8 cache, or built.
enum KeyText {
    Borrowed(*const u8, usize),
    Owned(Vec<u8>),
}

impl KeyText {
    #[inline(always)]
    fn as_bytes(&self) -> &[u8] {
        match self {
            KeyText::Borrowed(p, n) => unsafe { std::slice::from_raw_parts(*p, *n) },
            KeyText::Owned(v) => v,
        }
    }
}

struct Member {
    text: KeyText,
    key: Ref,
    value: Ref,
    index: u32,
}

/// A member of a wide dict written by [`Encoder::encode_wide`]: every pointer borrowed.
#[derive(Clone, Copy)]
struct Wide {
    key: *mut ffi::PyObject,
    value: *mut ffi::PyObject,
    /// The key's UTF-8, valid while the key lives.
    text: *const u8,
    len: usize,
}

impl Wide {
    #[inline(always)]
    unsafe fn bytes(&self) -> &[u8] {
        std::slice::from_raw_parts(self.text, self.len)
    }

    /// The key's bytes after the first `shared` (the stem every key of the dict has).
    #[inline(always)]
    unsafe fn after(&self, shared: usize) -> &[u8] {
        self.bytes().get(shared..).unwrap_or_default()
    }
}

/// The working memory of [`Encoder::encode_wide`], kept between calls: fresh, its vectors
/// (48 bytes a member for 10,000 keys) came from `mmap` or a trimmed heap each time, and
/// their page faults were a tenth of the call.
#[derive(Default)]
struct WideBufs {
    members: Vec<Wide>,
    /// (8 bytes after the shared ones as a number, index into `members`): what is sorted.
    order: Vec<(u64, u32)>,
    /// Empty until a value may run code; then every key and value, to the end.
    held: Vec<Ref>,
}

/// Vectors for up to this many members are kept (3 MiB in all).
const WIDE_KEEP: usize = 1 << 16;

static WIDE_BUFS: GilSlot<WideBufs> = GilSlot::new();

/// [`WideBufs`] taken for one wide dict (a nested one, or a re-entrant call, finds the slot
/// empty and allocates its own), emptied and put back when it ends, however it ends.
struct WideLease<'py> {
    py: Python<'py>,
    bufs: WideBufs,
}

impl<'py> WideLease<'py> {
    fn take(py: Python<'py>) -> Self {
        WideLease {
            py,
            bufs: WIDE_BUFS.take(py).unwrap_or_default(),
        }
    }
}

impl Drop for WideLease<'_> {
    fn drop(&mut self) {
        let bufs = &mut self.bufs;
        // Dropping the references may free objects, whose finalizers may run Python code:
        // nothing borrowed is used after this.
        bufs.held.clear();
        bufs.members.clear();
        bufs.order.clear();
        if bufs.members.capacity() <= WIDE_KEEP && bufs.held.capacity() <= 2 * WIDE_KEEP {
            WIDE_BUFS.put(self.py, std::mem::take(bufs));
        }
    }
}

/// How many of the first `limit` bytes `a` and `b` share, 8 at a time.
#[inline]
fn common_prefix(a: &[u8], b: &[u8], limit: usize) -> usize {
    let n = limit.min(a.len()).min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let word = |c: &[u8]| c.first_chunk::<8>().map_or(0, |w| u64::from_le_bytes(*w));
        let diff = word(x) ^ word(y);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + a[i..]
        .iter()
        .zip(&b[i..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// How many members ahead [`Encoder::encode_wide`] fetches what it will read, from
/// [`PREFETCH_MIN`] members on.
const PREFETCH: usize = 8;
const PREFETCH_MIN: usize = 4096;

/// Asks for the cache line at `p` to be loaded (a hint: `p` is never dereferenced, and may
/// be any address).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// From this many members a dict's keys are sorted through [`sort_by_bytes`]: below it the
/// members themselves are sorted, which is as fast.
const BYTE_SORT_MIN: usize = 32;

/// True when `key` holds a byte at which UTF-8 order and UTF-16 order can part: the lead
/// byte of a character in U+E000..U+FFFF (EE, EF) or of a supplementary one (F0..F4). Keys
/// without any such byte sort by their bytes exactly as RFC 8785 sorts them (see
/// [`utf16_cmp`]).
#[inline]
fn utf16_differs(key: &[u8]) -> bool {
    key.iter().any(|&b| b >= 0xEE)
}

/// The first 8 bytes of a key as a big-endian number, zero-padded: if one key's number is
/// less than another's, the key is less (the first differing byte is within the 8, or one
/// key ends there and is a prefix of the other); equal numbers fall back to the bytes.
#[inline]
fn key_prefix(key: &[u8]) -> u64 {
    // One load where there are 8 bytes (a copy of a variable length was a memcpy call).
    if let Some(head) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    let n = key.len();
    let p = key.as_ptr();
    if n != 0 && (p as usize) & (PAGE - 1) <= PAGE - 8 {
        // SAFETY: the 8 bytes from the key's first lie in its page (an empty slice may
        // point nowhere), which cannot fault; the bytes past the key are masked off.
        let word = u64::from_be_bytes(unsafe { std::ptr::read_unaligned(p as *const [u8; 8]) });
        return word & !(u64::MAX >> (8 * n));
    }
    key.iter()
        .enumerate()
        .fold(0, |v, (i, &b)| v | u64::from(b) << (56 - 8 * i))
}

/// Sorts members by their keys' bytes (the callers checked that this is UTF-16 order):
/// (prefix, index) pairs of 16 bytes are sorted, most comparisons settled by one integer
/// comparison, and the members then moved once into that order, in place. (Sorting the
/// members themselves compared keys byte by byte and moved 48-byte members at each step:
/// two thirds of a 10,000-key dict's time.)
fn sort_by_bytes(members: &mut [Member]) {
    // Keys already in order (a dict built from sorted data, or parsed from canonical
    // JSON) are checked in one pass and left as they are.
    if members
        .windows(2)
        .all(|w| w[0].text.as_bytes() < w[1].text.as_bytes())
    {
        return;
    }
    let mut order: Vec<(u64, u32)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (key_prefix(m.text.as_bytes()), i as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (x, y) = (&members[a.1 as usize], &members[b.1 as usize]);
            x.text.as_bytes().cmp(y.text.as_bytes())
        })
    });
    // Slot j takes the member that was at order[j]: each cycle of the permutation is
    // closed by swaps, every member moved once.
    let mut source: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
    for start in 0..source.len() {
        let mut at = start;
        while source[at] as usize != start {
            let next = source[at] as usize;
            members.swap(at, next);
            source[at] = at as u32;
            at = next;
        }
        source[at] = at as u32;
    }
}

/// The room a scalar leaf ([`Encoder::write_leaf`]) needs at its position: a quoted str of up to
/// [`MEDIUM_MAX`] bytes (a float's text and the slack of word-sized stores take less).
const SCALAR_MAX: usize = MEDIUM_MAX + 2;
/// Lists of at most this many scalars are leaves too (pairs, coordinates, a record's tags).
const SMALL_LIST: usize = 4;
/// The room [`Encoder::write_leaf`] needs at its position: a scalar, or a small list of them.
const LEAF_MAX: usize = 2 + SMALL_LIST * (1 + SCALAR_MAX);
/// Room the item and member loops keep ahead of their position: a separator or a short
/// key prefix (16 bytes stored), a leaf, and the closing bracket.
const LEAF_ROOM: usize = 16 + LEAF_MAX + 8;

/// Room the wide dict loop keeps ahead of its position: a separator, a key of up to
/// [`MEDIUM_MAX`] bytes quoted ([`put_str`]), a colon and a leaf.
const WIDE_ROOM: usize = 1 + MEDIUM_MAX + 2 + 1 + LEAF_MAX + 8;

/// Dicts with at most this many keys may have their layout cached.
const SHAPE_MAX_KEYS: usize = 32;
const SHAPE_BITS: u32 = 7;
const SHAPE_SLOTS: usize = 1 << SHAPE_BITS;

/// The layout of a dict seen before: its key objects in insertion order, the sorted order,
/// and each member's `{"key":` or `,"key":` already escaped. The records of a list usually
/// share key objects, and so do the arguments of repeated calls of one tool (literals and
/// parameter names are interned; orjson.loads caches key strings), so such dicts skip UTF-8
/// lookup, sorting and escaping of their keys. The strong references keep pointer identity
/// meaningful: a cached key object can be neither freed nor replaced at its address.
struct Shape {
    /// [`shape_tag`] of the layout.
    tag: usize,
    keys: Box<[Ref]>,
    /// The members in key order.
    slots: Box<[Slot]>,
    /// Prefixes longer than 16 bytes, at their slots' `start`.
    long: Box<[u8]>,
}

/// One member of a cached layout, everything its writing needs in one place (its prefix
/// length was a load behind two others, and every later write position waits on it).
/// 32 bytes, aligned: the 16-byte copy of its head never spans two cache lines.
#[repr(C, align(32))]
struct Slot {
    /// The prefix, padded with zeros: copied whole, of which `len` bytes count.
    head: [u8; 16],
    /// The prefix's length; past 16 it is written from `long[start..start + len]`.
    len: u32,
    start: u32,
    /// Insertion index of the member.
    index: u32,
}

/// Dict layouts, two-way set-associative by [`shape_tag`] (a dict and a nested one, or two
/// siblings, may share a set): a layout is cached the second time it is seen, so a one-off
/// dict costs nothing but its tag. Shapes are shared (`Rc`, under the GIL) so that a dict
/// being written keeps its layout while nested dicts replace cache entries.
struct ShapeCache {
    /// Tags of layouts seen once, per slot.
    seen: [usize; SHAPE_SLOTS],
    slots: [Option<Rc<Shape>>; SHAPE_SLOTS],
    /// Per set (slots 2k and 2k + 1): the way hit or filled last, replaced last.
    recent: [u8; SHAPE_SLOTS / 2],
}

impl Default for ShapeCache {
    fn default() -> Self {
        ShapeCache {
            seen: [0; SHAPE_SLOTS],
            slots: std::array::from_fn(|_| None),
            recent: [0; SHAPE_SLOTS / 2],
        }
    }
}

impl ShapeCache {
    /// The cached layout of this tag and its slot, looking in both ways of the set.
    #[inline(always)]
    fn find(&mut self, index: usize, tag: usize) -> Option<Rc<Shape>> {
        for way in [index, index ^ 1] {
            if let Some(shape) = &self.slots[way] {
                if shape.tag == tag {
                    self.recent[index / 2] = (way & 1) as u8;
                    return Some(Rc::clone(shape));
                }
            }
        }
        None
    }

    /// Caches `shape` in its set: over a layout of the same tag, else in an empty way, else
    /// over the way used less recently.
    fn insert(&mut self, index: usize, shape: Shape) {
        let ways = [index, index ^ 1];
        let same = ways
            .into_iter()
            .find(|&w| self.slots[w].as_ref().is_some_and(|s| s.tag == shape.tag));
        let empty = ways.into_iter().find(|&w| self.slots[w].is_none());
        let way = same
            .or(empty)
            .unwrap_or((index & !1) | (1 - self.recent[index / 2] as usize));
        self.recent[index / 2] = (way & 1) as u8;
        self.slots[way] = Some(Rc::new(shape));
    }
}

/// A value kept between calls, touched only with the GIL held (abi3 modules load only in
/// GIL builds, and every access takes a `Python` token). A call takes the value and puts it
/// back when done, so a re-entrant call (user code run mid-encode) or a thread running while
/// the GIL is released for a long hash finds the slot empty and uses a value of its own.
/// Cheaper than a thread-local, which in a shared library costs a `__tls_get_addr` call.
pub(crate) struct GilSlot<T>(UnsafeCell<Option<T>>);

// SAFETY: the value is only reached through `take` and `put`, which need the GIL: every
// access is serialised, and whichever thread holds the GIL may use Python references.
unsafe impl<T> Sync for GilSlot<T> {}

impl<T> GilSlot<T> {
    pub(crate) const fn new() -> Self {
        GilSlot(UnsafeCell::new(None))
    }

    pub(crate) fn take(&self, _py: Python<'_>) -> Option<T> {
        // SAFETY: the GIL (witnessed by `_py`) serialises every access.
        unsafe { (*self.0.get()).take() }
    }

    /// Keeps `value` for the next call; a value put back meanwhile by a nested call is
    /// dropped, with the GIL held (Python references may need it).
    pub(crate) fn put(&self, _py: Python<'_>, value: T) {
        // SAFETY: as in `take`.
        unsafe { *self.0.get() = Some(value) }
    }
}

/// The dict layouts kept between calls.
static SHARED_SHAPES: GilSlot<Box<ShapeCache>> = GilSlot::new();

#[inline(always)]
fn shape_tag(first_key: *mut ffi::PyObject, len: usize) -> usize {
    // Fibonacci hashing: the slot is the top bits of the product, which mix every input bit.
    ((first_key as usize) ^ len).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) | 1
}

/// Standard-library types of the rare path, imported on first use.
struct Types {
    enum_: Py<PyAny>,
    datetime: Py<PyAny>,
    date: Py<PyAny>,
    time: Py<PyAny>,
    decimal: Py<PyAny>,
    uuid: Py<PyAny>,
    dataclass_fields: Py<PyAny>,
}

static TYPES: GILOnceCell<Types> = GILOnceCell::new();

fn types(py: Python<'_>) -> PyResult<&'static Types> {
    TYPES.get_or_try_init(py, || {
        // An import cut short (a KeyboardInterrupt on 3.10 could leave a half-initialised
        // module in sys.modules) fails here without caching anything, so the next call
        // tries again; a module found without its attribute is dropped from sys.modules
        // and imported once more.
        let get = |module: &str, name: &str| -> PyResult<Py<PyAny>> {
            match py.import(module)?.getattr(name) {
                Ok(found) => Ok(found.unbind()),
                Err(missing) if missing.is_instance_of::<PyAttributeError>(py) => {
                    py.import("sys")?
                        .getattr("modules")?
                        .del_item(module)
                        .or_else(|_| Ok::<(), PyErr>(()))?;
                    Ok(py.import(module)?.getattr(name)?.unbind())
                }
                Err(other) => Err(other),
            }
        };
        Ok(Types {
            enum_: get("enum", "Enum")?,
            datetime: get("datetime", "datetime")?,
            date: get("datetime", "date")?,
            time: get("datetime", "time")?,
            decimal: get("decimal", "Decimal")?,
            uuid: get("uuid", "UUID")?,
            dataclass_fields: get("dataclasses", "fields")?,
        })
    })
}

pub struct Encoder<'py, S: Sink> {
    pub py: Python<'py>,
    pub sink: Window<S>,
    strict: bool,
    depth: u32,
    /// The shared dict layouts while this encoder runs; `None` until a dict needs it.
    shapes: Option<Box<ShapeCache>>,
    /// Levels entered without a stack check: [`SHALLOW`], or 0 in an encoder started while
    /// another runs (user code re-entered: its levels add to the outer ones' stack).
    unchecked_levels: u32,
    /// Entering a container with the stack below this address raises: [`STACK_RESERVE`]
    /// above the thread's stack limit. Looked up once per encoder, and only past
    /// [`SHALLOW`] levels (the lookup, a thread-local in a shared library, costs as much as
    /// a small dict's encoding).
    stack_floor: Option<usize>,
}

/// Nesting levels entered without a stack check: their frames take a few KiB at most, far
/// within [`STACK_RESERVE`], like any C call the interpreter makes.
const SHALLOW: u32 = 8;

/// An address in the current stack frame.
#[inline(always)]
fn stack_address() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// The lowest stack address an encoder may enter a container at (stacks grow down).
fn stack_floor() -> usize {
    match stacker::remaining_stack() {
        Some(left) => (stack_address() + STACK_RESERVE).saturating_sub(left),
        None => 0,
    }
}

impl<S: Sink> Drop for Encoder<'_, S> {
    fn drop(&mut self) {
        ACTIVE.add(self.py, usize::MAX); // minus one
        if let Some(cache) = self.shapes.take() {
            SHARED_SHAPES.put(self.py, cache);
        }
    }
}

#[inline(always)]
fn py_err(err: PyErr) -> Box<EncodeError> {
    EncodeError::new(ErrorKind::Python(err))
}

impl<'py, S: Sink> Encoder<'py, S> {
    pub fn new(py: Python<'py>, sink: S, strict: bool) -> Self {
        let nested = ACTIVE.add(py, 1) > 0;
        Encoder {
            py,
            sink: Window::new(sink),
            strict,
            depth: 0,
            shapes: SHARED_SHAPES.take(py),
            unchecked_levels: if nested { 0 } else { SHALLOW },
            stack_floor: None,
        }
    }

    /// Encodes `obj` (a borrowed reference kept alive by the caller), the root of a call:
    /// an encoder started while another runs (user code calling back into retrysafe) first
    /// checks that the thread's stack has room, since each such level nests native frames.
    pub fn encode_root(&mut self, obj: *mut ffi::PyObject) -> Result {
        if self.unchecked_levels == 0
            && stack_address() < *self.stack_floor.get_or_insert_with(stack_floor)
        {
            return Err(EncodeError::new(ErrorKind::StackExhausted));
        }
        self.encode(obj)
    }

    /// Encodes `obj` (a borrowed reference kept alive by the caller).
    #[inline(always)]
    pub fn encode(&mut self, obj: *mut ffi::PyObject) -> Result {
        unsafe {
            let ty = ffi::Py_TYPE(obj);
            if ty == addr_of_mut!(ffi::PyUnicode_Type) {
                self.encode_str(obj)
            } else if ty == addr_of_mut!(ffi::PyLong_Type) {
                self.encode_int(obj)
            } else if ty == addr_of_mut!(ffi::PyDict_Type) {
                self.encode_dict(obj)
            } else if ty == addr_of_mut!(ffi::PyList_Type) {
                self.encode_list(obj)
            } else if obj == ffi::Py_True() {
                self.sink.write(b"true");
                Ok(())
            } else if obj == ffi::Py_False() {
                self.sink.write(b"false");
                Ok(())
            } else if obj == ffi::Py_None() {
                self.sink.write(b"null");
                Ok(())
            } else if ty == addr_of_mut!(ffi::PyFloat_Type) {
                self.encode_float(obj)
            } else if ty == addr_of_mut!(ffi::PyTuple_Type) {
                self.encode_tuple(obj)
            } else {
                self.encode_other(obj)
            }
        }
    }

    /// Writes `obj` at `out` if it is a common leaf that takes no call, cannot fail and
    /// needs at most [`LEAF_MAX`] bytes, and returns the position after it: a scalar (a str
    /// of up to 64 bytes without escapes, an int of up to two 30-bit digits, a literal, a
    /// float that [`put_float`] writes; [`SCALAR_MAX`] bytes), or an exact list of at most
    /// [`SMALL_LIST`] scalars, its items read in place and written at once (nothing is
    /// called, held or checked for room on the way, and no Python code runs in between).
    /// `None`: nothing of it counts (bytes may have been stored at `out`, to be written
    /// over); use [`Encoder::encode`]. The loops over list items and dict members keep their
    /// position in a register through these.
    ///
    /// # Safety
    /// `out` has room for [`LEAF_MAX`] bytes.
    #[inline(always)]
    unsafe fn write_leaf(&self, obj: *mut ffi::PyObject, out: *mut u8) -> Option<*mut u8> {
        self.write_leaf_of::<true>(obj, out)
    }

    /// [`Encoder::write_leaf`] with small lists (`LISTS`) or scalars only (the items of one).
    #[inline(always)]
    unsafe fn write_leaf_of<const LISTS: bool>(
        &self,
        obj: *mut ffi::PyObject,
        out: *mut u8,
    ) -> Option<*mut u8> {
        let ty = ffi::Py_TYPE(obj);
        if ty == addr_of_mut!(ffi::PyUnicode_Type) {
            let (p, n) = utf8_in_place(obj)?;
            let written = put_str(out, std::slice::from_raw_parts(p, n))?;
            return Some(out.add(written));
        }
        if ty == addr_of_mut!(ffi::PyLong_Type) {
            let v = small_int(obj)?;
            if self.strict && v.unsigned_abs() > MAX_SAFE {
                return None;
            }
            return Some(out.add(put_int(out, v)));
        }
        let literal = |text: &[u8; 8], n: usize| {
            std::ptr::write_unaligned(out as *mut [u8; 8], *text);
            Some(out.add(n))
        };
        if obj == ffi::Py_None() {
            return literal(b"null\0\0\0\0", 4);
        }
        if obj == ffi::Py_True() {
            return literal(b"true\0\0\0\0", 4);
        }
        if obj == ffi::Py_False() {
            return literal(b"false\0\0\0", 5);
        }
        if ty == addr_of_mut!(ffi::PyFloat_Type) && layout() != LAYOUT_API {
            // NaN and infinities give None too, and get their error from encode.
            let v = field::<f64>(obj, 16);
            return put_float(v, out).map(|n| out.add(n));
        }
        if !LISTS || ty != addr_of_mut!(ffi::PyList_Type) {
            return None;
        }
        let (n, items) = list_parts(obj);
        // The list is a level of its own: past MAX_DEPTH `encode` raises TooDeep for it.
        if n as usize > SMALL_LIST || items.is_null() || self.depth >= MAX_DEPTH {
            return None;
        }
        *out = b'[';
        let mut at = out.add(1);
        for i in 0..n {
            // The comma is stored either way and counted after the first item.
            *at = b',';
            at = at.add((i > 0) as usize);
            at = self.write_leaf_of::<false>(*items.offset(i), at)?;
        }
        *at = b']';
        Some(at.add(1))
    }

    #[inline(always)]
    fn enter(&mut self, obj: *mut ffi::PyObject) -> Result {
        self.depth += 1;
        let kind = if self.depth > MAX_DEPTH {
            ErrorKind::TooDeep
        } else if self.depth > self.unchecked_levels
            && stack_address() < *self.stack_floor.get_or_insert_with(stack_floor)
        {
            ErrorKind::StackExhausted
        } else {
            return Ok(());
        };
        let mut e = EncodeError::new(kind);
        e.containers.push(obj as usize);
        Err(e)
    }

    #[inline(always)]
    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// The UTF-8 of an exact str (the caller checked its type): in place where it can be.
    #[inline(always)]
    unsafe fn str_bytes(&self, obj: *mut ffi::PyObject) -> Result<(*const u8, usize)> {
        match utf8_in_place(obj) {
            Some(text) => Ok(text),
            None => self.str_bytes_api(obj),
        }
    }

    /// The UTF-8 of a str or str subclass through the API, which builds and caches it; valid
    /// while `obj` lives.
    #[inline(never)]
    unsafe fn str_bytes_api(&self, obj: *mut ffi::PyObject) -> Result<(*const u8, usize)> {
        let mut size: ffi::Py_ssize_t = 0;
        let p = ffi::PyUnicode_AsUTF8AndSize(obj, &mut size);
        if p.is_null() {
            // The exception object was allocated: the collector may have run.
            python_may_run();
            let err = PyErr::fetch(self.py);
            return Err(if err.is_instance_of::<PyUnicodeEncodeError>(self.py) {
                EncodeError::new(ErrorKind::LoneSurrogate)
            } else {
                py_err(err)
            });
        }
        Ok((p as *const u8, size as usize))
    }

    #[inline(always)]
    unsafe fn encode_str(&mut self, obj: *mut ffi::PyObject) -> Result {
        let (p, n) = self.str_bytes(obj)?;
        write_str(&mut self.sink, std::slice::from_raw_parts(p, n));
        Ok(())
    }

    #[inline(always)]
    unsafe fn encode_int(&mut self, obj: *mut ffi::PyObject) -> Result {
        let v = match small_int(obj) {
            Some(v) => v,
            None => {
                let mut overflow: std::os::raw::c_int = 0;
                let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
                if overflow != 0 {
                    return self.encode_big_int(obj);
                }
                if v == -1 && !ffi::PyErr_Occurred().is_null() {
                    return Err(py_err(PyErr::fetch(self.py)));
                }
                v
            }
        };
        if self.strict && v.unsigned_abs() > MAX_SAFE {
            return Err(EncodeError::new(ErrorKind::IntOutOfRange));
        }
        self.write_i64(v);
        Ok(())
    }

    #[inline(always)]
    fn write_i64(&mut self, v: i64) {
        let out = self.sink.reserve_raw(20);
        // SAFETY: 20 bytes reserved; write_i64 writes at most that many and says how many.
        unsafe {
            let n = write_i64(out, v);
            self.sink.commit(n);
        }
    }

    /// Beyond 64 bits: exact decimal digits (JCS would round them onto a double, and two
    /// distinct amounts would share one key).
    #[inline(never)]
    unsafe fn encode_big_int(&mut self, obj: *mut ffi::PyObject) -> Result {
        if self.strict {
            return Err(EncodeError::new(ErrorKind::IntOutOfRange));
        }
        // Formatting runs Python code on 3.12+ (`_pylong`), and the digits of a huge int are
        // hashed with the GIL released: hold the int, and let callers know.
        python_may_run();
        let _hold = Ref::new(obj);
        let digits = int_digits(self.py, obj)?;
        self.sink.write(digits.as_bytes());
        Ok(())
    }

    #[inline]
    unsafe fn encode_float(&mut self, obj: *mut ffi::PyObject) -> Result {
        let v = if layout() == LAYOUT_API {
            ffi::PyFloat_AsDouble(obj)
        } else {
            field::<f64>(obj, 16)
        };
        if !v.is_finite() {
            if v == -1.0 && !ffi::PyErr_Occurred().is_null() {
                return Err(py_err(PyErr::fetch(self.py)));
            }
            return Err(EncodeError::new(ErrorKind::NonFinite(v)));
        }
        write_float_text(&mut self.sink, v);
        Ok(())
    }

    unsafe fn encode_list(&mut self, obj: *mut ffi::PyObject) -> Result {
        if list_parts(obj).0 == 0 {
            self.sink.write(b"[]");
            return Ok(());
        }
        self.enter(obj)?;
        let _hold = Ref::new(obj);
        let (mut out, mut end) = self.sink.cursor(LEAF_ROOM);
        *out = b'[';
        out = out.add(1);
        let mut i: ffi::Py_ssize_t = 0;
        let mut hint = None;
        loop {
            // Size and items are read again each time: user code in a rare element type may
            // resize the list (and move its item array).
            let (n, items) = list_parts(obj);
            if i >= n {
                break;
            }
            let item = if items.is_null() {
                ffi::PyList_GetItem(obj, i)
            } else {
                *items.offset(i)
            };
            (out, end) = self.sink.room(out, end, LEAF_ROOM);
            // The comma is stored either way and counted after the first item.
            *out = b',';
            out = out.add((i > 0) as usize);
            match self.write_leaf(item, out) {
                Some(next) => out = next,
                None => {
                    self.sink.set_out(out);
                    if ffi::Py_TYPE(item) == addr_of_mut!(ffi::PyDict_Type) {
                        self.encode_dict_hinted(item, &mut hint)
                    } else {
                        self.encode(item)
                    }
                    .map_err(|e| e.at(Seg::Index(i as usize), obj))?;
                    (out, end) = self.sink.cursor(LEAF_ROOM);
                }
            }
            i += 1;
        }
        // The room left after a leaf holds the bracket.
        *out = b']';
        self.sink.set_out(out.add(1));
        self.leave();
        Ok(())
    }

    unsafe fn encode_tuple(&mut self, obj: *mut ffi::PyObject) -> Result {
        let n = ffi::PyTuple_Size(obj);
        if n == 0 {
            self.sink.write(b"[]");
            return Ok(());
        }
        self.enter(obj)?;
        let _hold = Ref::new(obj);
        self.sink.push(b'[');
        for i in 0..n {
            if i > 0 {
                self.sink.push(b',');
            }
            let item = ffi::PyTuple_GetItem(obj, i);
            self.encode(item)
                .map_err(|e| e.at(Seg::Index(i as usize), obj))?;
        }
        self.sink.push(b']');
        self.leave();
        Ok(())
    }

    #[inline(always)]
    unsafe fn encode_dict(&mut self, obj: *mut ffi::PyObject) -> Result {
        self.encode_dict_hinted(obj, &mut None)
    }

    /// Writes a dict, trying the layout in `hint` first and leaving there the cached layout
    /// it was written with. The items of a list pass the layout of one to the next: records
    /// usually share theirs, and a layout known before the dict is read puts its keys' lengths
    /// (on which every later write position waits) off the chain of loads that finds it.
    unsafe fn encode_dict_hinted(
        &mut self,
        obj: *mut ffi::PyObject,
        hint: &mut Option<Rc<Shape>>,
    ) -> Result {
        let len = dict_len(obj);
        if len == 0 {
            self.sink.write(b"{}");
            return Ok(());
        }
        self.enter(obj)?;
        let _hold = Ref::new(obj);
        let mut slot = None;
        if len <= SHAPE_MAX_KEYS {
            let items = Items::of(obj, len);
            // The layout lives in this frame while the dict is written, whatever nested dicts
            // do to the cache; it goes back to `hint` if it fit.
            if let Some(shape) = hint.take() {
                if self.encode_with_shape(obj, &shape, len, items)? {
                    *hint = Some(shape);
                    self.leave();
                    return Ok(());
                }
            }
            let tag = shape_tag(items.first_key(), len);
            let index = tag >> (usize::BITS - SHAPE_BITS);
            let cache = self.shapes.get_or_insert_with(Default::default);
            if let Some(shape) = cache.find(index, tag) {
                if self.encode_with_shape(obj, &shape, len, items)? {
                    *hint = Some(shape);
                    self.leave();
                    return Ok(());
                }
            }
            // Not cached, or cached for other keys of the same tag: a layout seen twice in a
            // row at this slot is cached (and must then be seen twice again to be replaced).
            let cache = self.shapes.get_or_insert_with(Default::default);
            if cache.seen[index] == tag {
                cache.seen[index] = 0;
                slot = Some((index, tag));
            } else {
                cache.seen[index] = tag;
            }
        }
        self.encode_dict_members(obj, len, slot)
    }

    /// Writes a dict without a cached layout (caching it if `slot` says so): its members
    /// collected, keys made text and sorted. The caller has entered and holds the dict.
    #[inline(never)]
    unsafe fn encode_dict_members(
        &mut self,
        obj: *mut ffi::PyObject,
        len: usize,
        slot: Option<(usize, usize)>,
    ) -> Result {
        if slot.is_none() && len > SHAPE_MAX_KEYS && self.encode_wide(obj, len)? {
            return Ok(());
        }
        // Every item held first, with no Python code run while the dict is walked; only then
        // the keys' texts, which for a non-str key runs user code (that may change the dict).
        let mut items: SmallVec<[(Ref, Ref); 8]> = SmallVec::with_capacity(len);
        let mut pos: ffi::Py_ssize_t = 0;
        let mut k: *mut ffi::PyObject = std::ptr::null_mut();
        let mut v: *mut ffi::PyObject = std::ptr::null_mut();
        while dict_next(obj, &mut pos, &mut k, &mut v) {
            items.push((Ref::new(k), Ref::new(v)));
        }
        let mut members: SmallVec<[Member; 8]> = SmallVec::with_capacity(items.len());
        let mut converted = false;
        for (key, value) in items {
            let k = key.0;
            // A str key's UTF-8 stays valid while `key` holds it (str objects are immutable).
            let text = if ffi::Py_TYPE(k) == addr_of_mut!(ffi::PyUnicode_Type) {
                let (p, n) = self.str_bytes(k).map_err(|e| e.at_key(self.py, k, obj))?;
                KeyText::Borrowed(p, n)
            } else {
                converted = true;
                self.key_text(k).map_err(|e| e.at_key(self.py, k, obj))?
            };
            let index = members.len() as u32;
            members.push(Member {
                text,
                key,
                value,
                index,
            });
        }
        self.sort_members(obj, &mut members, converted)?;
        if let (Some((index, tag)), false) = (slot, converted) {
            let shape = Self::make_shape(&members, tag);
            self.shapes
                .get_or_insert_with(Default::default)
                .insert(index, shape);
        }
        self.write_members(obj, &members)
    }

    /// Writes a dict of more than [`SHAPE_MAX_KEYS`] items whose keys are all exact strs;
    /// `Ok(false)` (nothing written, nothing run) at the first key that is not one. Its keys,
    /// values and the keys' UTF-8 are borrowed, not held: a reference count taken and dropped
    /// for each key and value was a fifth of a wide dict's time (more from 3.12 on, where
    /// each is a call), and reading a key's text and sorting run no Python code. Writing a
    /// member runs none either while its value is a common leaf; before the first value
    /// that is not (a container, a rare type, a big int: anything of rule 2 of
    /// `rust/SAFETY.md` may happen while it is written) every key and value is held, so that
    /// from then on nothing borrowed is left in use.
    #[inline(never)]
    unsafe fn encode_wide(&mut self, obj: *mut ffi::PyObject, len: usize) -> Result<bool> {
        let epoch = python_ran_count();
        let mut lease = WideLease::take(self.py);
        let WideBufs {
            members,
            order,
            held,
        } = &mut lease.bufs;
        members.reserve(len);
        let in_place = layout() != LAYOUT_API;
        let mut utf16 = false;
        // The bytes every key starts with so far, as (first key's text, their count).
        let mut first: &[u8] = &[];
        let mut shared = usize::MAX;
        for (k, v) in DictItems::new(obj) {
            if ffi::Py_TYPE(k) != addr_of_mut!(ffi::PyUnicode_Type) {
                return Ok(false);
            }
            let (text, n) = match utf8_in_place(k) {
                Some(text) => text,
                None => {
                    // The API makes the str's UTF-8 cache: an allocation that starts no
                    // collection; on failure (a lone surrogate) it counts as rule 2, and the
                    // key is held for the error's path.
                    let _hold = Ref::new(k);
                    self.str_bytes_api(k)
                        .map_err(|e| e.at_key(self.py, k, obj))?
                }
            };
            let bytes = std::slice::from_raw_parts(text, n);
            if members.is_empty() {
                first = bytes;
            }
            // A str with as many UTF-8 bytes as characters is ASCII: its byte order is its
            // UTF-16 order without looking.
            if !in_place || field::<isize>(k, 16) as usize != n {
                utf16 |= utf16_differs(bytes);
            }
            if shared != 0 {
                shared = common_prefix(first, bytes, shared);
            }
            members.push(Wide {
                key: k,
                value: v,
                text,
                len: n,
            });
        }
        if python_ran_count() != epoch || members.len() != len {
            // Not expected (nothing above runs code): the general path holds as it reads.
            return Ok(false);
        }
        // Keys sort by what follows the bytes they all share (ids with a common stem, URLs,
        // timestamps of one day): sorted by their first 8 bytes, most such keys tied and
        // were compared byte by byte, a memcmp call each.
        let shared = shared.min(first.len());
        let text = |i: u32| members.get(i as usize).map_or(&[][..], |m| m.after(shared));
        order.extend(
            members
                .iter()
                .enumerate()
                .map(|(i, m)| (key_prefix(m.after(shared)), i as u32)),
        );
        if utf16 {
            order.sort_unstable_by(|a, b| utf16_cmp(text(a.1), text(b.1)));
        } else {
            let by_bytes = |a: &(u64, u32), b: &(u64, u32)| {
                a.0.cmp(&b.0).then_with(|| text(a.1).cmp(text(b.1)))
            };
            // Keys already in order (a dict built from sorted data, or parsed from canonical
            // JSON) are checked in one pass and left as they are.
            if !order.windows(2).all(|w| by_bytes(&w[0], &w[1]).is_lt()) {
                // By the prefixes alone (a plain integer sort), then each run of equal
                // prefixes by the bytes after them: rare, but keys may share more than
                // their stem.
                order.sort_unstable_by_key(|&(prefix, _)| prefix);
                for run in order.chunk_by_mut(|a, b| a.0 == b.0) {
                    if run.len() > 1 {
                        run.sort_unstable_by(by_bytes);
                    }
                }
            }
        }
        // The layout of the last dict value, tried first for the next (records by id).
        let mut hint = None;
        // Below this many members they stay in the caches: fetching ahead costs, not saves.
        let prefetching = members.len() >= PREFETCH_MIN;
        let (mut out, mut end) = self.sink.cursor(WIDE_ROOM);
        let mut separator = b'{';
        for (j, &(_, i)) in order.iter().enumerate() {
            let Some(&m) = members.get(i as usize) else {
                continue;
            };
            // Sorted members are read in no particular memory order: past what the caches
            // hold (100,000 keys) each key and value was a miss the loop waited for. The
            // member PREFETCH * 2 ahead is fetched, and the key and value of the one
            // PREFETCH ahead (its member fetched by then).
            if prefetching {
                if let Some(&(_, far)) = order.get(j + 2 * PREFETCH) {
                    prefetch(members.as_ptr().wrapping_add(far as usize));
                }
                if let Some(ahead) = order
                    .get(j + PREFETCH)
                    .and_then(|o| members.get(o.1 as usize))
                {
                    prefetch(ahead.text);
                    prefetch(ahead.value);
                }
            }
            // Room: a separator, a key of up to MEDIUM_MAX bytes quoted, a colon and a leaf.
            (out, end) = self.sink.room(out, end, WIDE_ROOM);
            *out = separator;
            separator = b',';
            out = out.add(1);
            match put_str(out, m.bytes()) {
                Some(n) => out = out.add(n),
                None => {
                    // Reserves and commits only: no hashing with the GIL released, no code.
                    self.sink.set_out(out);
                    write_str(&mut self.sink, m.bytes());
                    (out, end) = self.sink.cursor(WIDE_ROOM);
                }
            }
            *out = b':';
            out = out.add(1);
            match self.write_leaf(m.value, out) {
                Some(next) => out = next,
                None => {
                    if held.is_empty() {
                        if python_ran_count() != epoch {
                            let mut e = EncodeError::new(ErrorKind::Mutated);
                            e.containers.push(obj as usize);
                            return Err(e);
                        }
                        held.reserve_exact(2 * members.len());
                        for m in members.iter() {
                            held.push(Ref::new(m.key));
                            held.push(Ref::new(m.value));
                        }
                    }
                    self.sink.set_out(out);
                    if ffi::Py_TYPE(m.value) == addr_of_mut!(ffi::PyDict_Type) {
                        self.encode_dict_hinted(m.value, &mut hint)
                    } else {
                        self.encode(m.value)
                    }
                    .map_err(|e| e.at_key(self.py, m.key, obj))?;
                    (out, end) = self.sink.cursor(WIDE_ROOM);
                }
            }
        }
        *out = b'}';
        self.sink.set_out(out.add(1));
        self.leave();
        Ok(true)
    }

    /// Writes `obj` through a cached layout. `Ok(false)`: the keys differ, nothing written.
    /// `len` is the dict's size and `items` where to read them, both found by the caller.
    #[inline]
    unsafe fn encode_with_shape(
        &mut self,
        obj: *mut ffi::PyObject,
        shape: &Shape,
        len: usize,
        items: Items,
    ) -> Result<bool> {
        let mut values = [std::ptr::null_mut(); SHAPE_MAX_KEYS];
        if len != shape.keys.len() || !read_values(obj, shape, items, &mut values) {
            return Ok(false);
        }
        // The values are borrowed: valid while no Python code runs and the GIL stays held.
        let mut epoch = python_ran_count();
        let (mut out, mut end) = self.sink.cursor(LEAF_ROOM);
        for slot in shape.slots.iter() {
            let len = slot.len as usize;
            if len <= 16 {
                (out, end) = self.sink.room(out, end, LEAF_ROOM);
                std::ptr::copy_nonoverlapping(slot.head.as_ptr(), out, 16);
                out = out.add(len);
            } else {
                let start = slot.start as usize;
                self.sink.set_out(out);
                self.sink
                    .write(shape.long.get(start..start + len).unwrap_or_default());
                (out, end) = self.sink.cursor(LEAF_ROOM);
            }
            if python_ran_count() != epoch {
                // The last value's encoding, or a long prefix hashed with the GIL released,
                // may have let Python code run: the values read before may be gone.
                epoch = reread_values(obj, shape, &mut values)?;
            }
            let index = slot.index as usize;
            let value = values[index];
            // Room: LEAF_ROOM less at most 16 for the prefix.
            match self.write_leaf(value, out) {
                Some(next) => out = next,
                None => {
                    self.sink.set_out(out);
                    self.encode(value)
                        .map_err(|e| e.at_key(self.py, shape.keys[index].0, obj))?;
                    (out, end) = self.sink.cursor(LEAF_ROOM);
                }
            }
        }
        *out = b'}';
        self.sink.set_out(out.add(1));
        Ok(true)
    }

    unsafe fn make_shape(members: &[Member], tag: usize) -> Shape {
        let mut by_insertion: SmallVec<[*mut ffi::PyObject; 8]> =
            smallvec::smallvec![std::ptr::null_mut(); members.len()];
        let mut slots = Vec::with_capacity(members.len());
        let mut long = Vec::new();
        let mut prefix = Vec::new();
        for (j, m) in members.iter().enumerate() {
            by_insertion[m.index as usize] = m.key.0;
            prefix.clear();
            prefix.push(if j == 0 { b'{' } else { b',' });
            write_str(&mut prefix, m.text.as_bytes());
            prefix.push(b':');
            let mut head = [0u8; 16];
            let n = prefix.len().min(16);
            head[..n].copy_from_slice(&prefix[..n]);
            slots.push(Slot {
                head,
                len: prefix.len() as u32,
                start: long.len() as u32,
                index: m.index,
            });
            if prefix.len() > 16 {
                long.extend_from_slice(&prefix);
            }
        }
        Shape {
            tag,
            keys: by_insertion.into_iter().map(|k| Ref::new(k)).collect(),
            slots: slots.into_boxed_slice(),
            long: long.into_boxed_slice(),
        }
    }

    /// Sorts members by UTF-16 key order; converted keys may collide.
    unsafe fn sort_members(
        &mut self,
        obj: *mut ffi::PyObject,
        members: &mut [Member],
        check_duplicates: bool,
    ) -> Result {
        if members.len() >= BYTE_SORT_MIN
            && !members.iter().any(|m| utf16_differs(m.text.as_bytes()))
        {
            sort_by_bytes(members);
        } else if members.len() > 1 {
            members.sort_unstable_by(|a, b| utf16_cmp(a.text.as_bytes(), b.text.as_bytes()));
        }
        if check_duplicates {
            for pair in members.windows(2) {
                if pair[0].text.as_bytes() == pair[1].text.as_bytes() {
                    let text = String::from_utf8_lossy(pair[0].text.as_bytes()).into_owned();
                    let mut e = EncodeError::new(ErrorKind::DuplicateKey(text));
                    e.containers.push(obj as usize);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Writes sorted members as an object; the caller has entered.
    unsafe fn write_members(&mut self, obj: *mut ffi::PyObject, members: &[Member]) -> Result {
        self.sink.push(b'{');
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                self.sink.push(b',');
            }
            write_str(&mut self.sink, m.text.as_bytes());
            self.sink.push(b':');
            self.encode(m.value.0)
                .map_err(|e| e.at_key(self.py, m.key.0, obj))?;
        }
        self.sink.push(b'}');
        self.leave();
        Ok(())
    }

    /// The canonical string of a non-str key: int (not bool) as decimal digits, Enum through
    /// its value, a str subclass as its text. Anything else is refused.
    #[inline(never)]
    unsafe fn key_text(&mut self, k: *mut ffi::PyObject) -> Result<KeyText> {
        python_may_run();
        let py = self.py;
        let key = Bound::from_borrowed_ptr(py, k);
        let t = types(py).map_err(py_err)?;
        let target = if key.is_instance(t.enum_.bind(py)).map_err(py_err)? {
            key.getattr(intern!(py, "value")).map_err(py_err)?
        } else {
            key.clone()
        };
        let p = target.as_ptr();
        if ffi::PyUnicode_Check(p) != 0 {
            let (ptr, n) = self.str_bytes_api(p)?;
            return Ok(KeyText::Owned(std::slice::from_raw_parts(ptr, n).to_vec()));
        }
        if ffi::PyLong_Check(p) != 0 && ffi::PyBool_Check(p) == 0 {
            // An int subclass's key is its value, whatever its __str__ says.
            let exact = exact_int(py, p)?;
            return Ok(KeyText::Owned(int_digits(py, exact.as_ptr())?.into_bytes()));
        }
        Err(EncodeError::new(ErrorKind::BadKey(type_repr(&key))))
    }

    /// Every type that is not an exact common one.
    #[inline(never)]
    unsafe fn encode_other(&mut self, obj: *mut ffi::PyObject) -> Result {
        python_may_run();
        let _hold = Ref::new(obj);
        let py = self.py;
        let any = Bound::from_borrowed_ptr(py, obj);
        let t = types(py).map_err(py_err)?;
        // Enum first: IntEnum and StrEnum members are also ints and strs.
        if any.is_instance(t.enum_.bind(py)).map_err(py_err)? {
            self.enter(obj)?;
            let value = any.getattr(intern!(py, "value")).map_err(py_err)?;
            self.encode(value.as_ptr())
                .map_err(|e| e.at(Seg::Attr("value".into()), obj))?;
            self.leave();
            return Ok(());
        }
        if ffi::PyUnicode_Check(obj) != 0 {
            // A str subclass: its text through the API, never read in place.
            let (p, n) = self.str_bytes_api(obj)?;
            write_str(&mut self.sink, std::slice::from_raw_parts(p, n));
            return Ok(());
        }
        if ffi::PyLong_Check(obj) != 0 {
            // Its value, not what an overridden __int__ or __index__ returns.
            let exact = exact_int(py, obj)?;
            return self.encode_int(exact.as_ptr());
        }
        if ffi::PyFloat_Check(obj) != 0 {
            // A subclass keeps the float's layout (ob_fval at 16); PyFloat_AsDouble reads
            // the same field without calling __float__.
            return self.encode_float(obj);
        }
        if ffi::PyDict_Check(obj) != 0 {
            return self.encode_dict(obj);
        }
        if ffi::PyList_Check(obj) != 0 {
            return self.encode_list(obj);
        }
        if ffi::PyTuple_Check(obj) != 0 {
            return self.encode_tuple(obj);
        }
        if ffi::PyAnySet_Check(obj) != 0 {
            return self.encode_set(obj);
        }
        if ffi::PyBytes_Check(obj) != 0
            || ffi::PyByteArray_Check(obj) != 0
            || ffi::PyMemoryView_Check(obj) != 0
        {
            return self.encode_bytes(&any);
        }
        if any.is_instance(t.datetime.bind(py)).map_err(py_err)? {
            return self.encode_iso(&any, t.datetime.bind(py), Some(11));
        }
        if any.is_instance(t.date.bind(py)).map_err(py_err)? {
            return self.encode_iso(&any, t.date.bind(py), None);
        }
        if any.is_instance(t.time.bind(py)).map_err(py_err)? {
            return self.encode_iso(&any, t.time.bind(py), Some(0));
        }
        if any.is_instance(t.decimal.bind(py)).map_err(py_err)? {
            let text = base_str(&any, t.decimal.bind(py))?;
            return match decimal_text(&text) {
                Ok(canonical) => {
                    write_str(&mut self.sink, &canonical);
                    Ok(())
                }
                Err(DecimalError::NotFinite) => Err(EncodeError::new(ErrorKind::NonFiniteDecimal)),
                Err(DecimalError::Malformed) => {
                    Err(EncodeError::new(ErrorKind::Unsupported(type_repr(&any))))
                }
            };
        }
        if any.is_instance(t.uuid.bind(py)).map_err(py_err)? {
            let lower = base_str(&any, t.uuid.bind(py))?.to_ascii_lowercase();
            write_str(&mut self.sink, lower.as_bytes());
            return Ok(());
        }
        let ty = any.get_type();
        let is_class = ffi::PyType_Check(obj) != 0;
        if !is_class
            && ty
                .hasattr(intern!(py, "__dataclass_fields__"))
                .map_err(py_err)?
        {
            return self.encode_dataclass(&any, t);
        }
        if !is_class
            && ty
                .hasattr(intern!(py, "__pydantic_fields__"))
                .map_err(py_err)?
        {
            let kwargs = PyDict::new(py);
            kwargs
                .set_item(intern!(py, "by_alias"), true)
                .map_err(py_err)?;
            let dumped = any
                .call_method(intern!(py, "model_dump"), (), Some(&kwargs))
                .map_err(py_err)?;
            self.enter(obj)?;
            self.encode(dumped.as_ptr())?;
            self.leave();
            return Ok(());
        }
        Err(EncodeError::new(ErrorKind::Unsupported(type_repr(&any))))
    }

    /// A date, time or datetime (`time_start`: where its time of day starts, `None` for a
    /// date) as ISO 8601 text from `base.isoformat`, the standard type's own method: the
    /// canonical form of a subclass is its value, whatever an override (or a test double
    /// that only claims the type) returns.
    unsafe fn encode_iso(
        &mut self,
        any: &Bound<'py, PyAny>,
        base: &Bound<'py, PyAny>,
        time_start: Option<usize>,
    ) -> Result {
        let iso = call_base(any, base, intern!(self.py, "isoformat"))?;
        let Ok(iso) = iso.downcast_exact::<PyString>() else {
            return Err(EncodeError::new(ErrorKind::NotIso(type_repr(any))));
        };
        let iso = iso.to_cow().map_err(py_err)?;
        let text = match time_start {
            None if iso.is_ascii() => Ok(iso.into_owned()),
            None => Err(IsoError::NotIso),
            Some(start) => iso_text(&iso, start),
        };
        match text {
            Ok(text) => {
                write_str(&mut self.sink, text.as_bytes());
                Ok(())
            }
            Err(IsoError::OffsetWithSeconds) => Err(EncodeError::new(ErrorKind::OffsetSeconds)),
            Err(IsoError::NotIso) => Err(EncodeError::new(ErrorKind::NotIso(type_repr(any)))),
        }
    }

    unsafe fn encode_bytes(&mut self, any: &Bound<'py, PyAny>) -> Result {
        use base64::Engine;
        // bytes(x) copies a bytearray or memoryview (of any layout) into one buffer.
        let raw = ffi::PyBytes_FromObject(any.as_ptr());
        if raw.is_null() {
            return Err(py_err(PyErr::fetch(self.py)));
        }
        let raw = Bound::from_owned_ptr(self.py, raw);
        let mut p: *mut c_char = std::ptr::null_mut();
        let mut n: ffi::Py_ssize_t = 0;
        if ffi::PyBytes_AsStringAndSize(raw.as_ptr(), &mut p, &mut n) != 0 {
            return Err(py_err(PyErr::fetch(self.py)));
        }
        let data = std::slice::from_raw_parts(p as *const u8, n as usize);
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        write_str(&mut self.sink, text.as_bytes());
        Ok(())
    }

    /// A set's iteration order follows str hashes, which change between processes: its
    /// elements are written in the order of their own canonical bytes.
    unsafe fn encode_set(&mut self, obj: *mut ffi::PyObject) -> Result {
        let py = self.py;
        let any = Bound::from_borrowed_ptr(py, obj);
        let items: Vec<Bound<'py, PyAny>> = any
            .try_iter()
            .map_err(py_err)?
            .collect::<PyResult<_>>()
            .map_err(py_err)?;
        if items.is_empty() {
            self.sink.write(b"[]");
            return Ok(());
        }
        self.enter(obj)?;
        let mut parts: Vec<Vec<u8>> = Vec::with_capacity(items.len());
        for item in &items {
            let mut sub = Encoder::new(py, Vec::new(), self.strict);
            sub.depth = self.depth;
            sub.encode(item.as_ptr())
                .map_err(|e| e.at(Seg::SetItem, obj))?;
            parts.push(std::mem::take(sub.sink.inner()));
        }
        parts.sort_unstable();
        self.sink.push(b'[');
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                self.sink.push(b',');
            }
            self.sink.write(part);
        }
        self.sink.push(b']');
        self.leave();
        Ok(())
    }

    /// Fields from `dataclasses.fields()` (no ClassVar or InitVar), keys sorted like a dict;
    /// no `asdict()`, which deep-copies.
    unsafe fn encode_dataclass(&mut self, any: &Bound<'py, PyAny>, t: &Types) -> Result {
        let py = self.py;
        let obj = any.as_ptr();
        let fields = t.dataclass_fields.bind(py).call1((any,)).map_err(py_err)?;
        let fields = fields
            .downcast_into::<PyTuple>()
            .map_err(|e| py_err(e.into()))?;
        self.enter(obj)?;
        let mut members: SmallVec<[Member; 8]> = SmallVec::with_capacity(fields.len());
        for field in fields.iter() {
            let name = field.getattr(intern!(py, "name")).map_err(py_err)?;
            let value = any
                .getattr(name.downcast::<PyString>().map_err(|e| py_err(e.into()))?)
                .map_err(py_err)?;
            let (p, n) = self.str_bytes_api(name.as_ptr())?;
            let index = members.len() as u32;
            members.push(Member {
                text: KeyText::Owned(std::slice::from_raw_parts(p, n).to_vec()),
                key: Ref::new(name.as_ptr()),
                value: Ref::new(value.as_ptr()),
                index,
            });
        }
        self.sort_members(obj, &mut members, false)?;
        self.write_members(obj, &members)
    }
}

/// The exact int equal to `obj`, an int subclass instance: `int`'s own conversion slot
/// (a copy of the digits), never an override of `__int__` or `__index__`.
unsafe fn exact_int<'py>(py: Python<'py>, obj: *mut ffi::PyObject) -> Result<Bound<'py, PyAny>> {
    // PyType_GetSlot accepts static types from 3.10, the oldest version this module loads on.
    let slot = ffi::PyType_GetSlot(addr_of_mut!(ffi::PyLong_Type), ffi::Py_nb_int);
    let exact = if slot.is_null() {
        ffi::PyNumber_Long(obj)
    } else {
        // SAFETY: the nb_int slot of `int` is a unaryfunc, and `obj` is an int instance.
        let nb_int: ffi::unaryfunc = std::mem::transmute(slot);
        nb_int(obj)
    };
    if exact.is_null() {
        return Err(py_err(PyErr::fetch(py)));
    }
    Ok(Bound::from_owned_ptr(py, exact))
}

/// `base.<method>(any)`: the standard type's own method called on `any`, never an override
/// of its subclass (nor of a test double that only claims the type).
fn call_base<'py>(
    any: &Bound<'py, PyAny>,
    base: &Bound<'py, PyAny>,
    method: &Bound<'py, PyString>,
) -> Result<Bound<'py, PyAny>> {
    base.getattr(method)
        .and_then(|m| m.call1((any,)))
        .map_err(py_err)
}

/// `str()` of `any` through `base.__str__` (the standard type's own method), so that a
/// subclass is written by its value.
fn base_str(any: &Bound<'_, PyAny>, base: &Bound<'_, PyAny>) -> Result<String> {
    let text = call_base(any, base, intern!(any.py(), "__str__"))?;
    let text = text
        .downcast_into::<PyString>()
        .map_err(|e| py_err(e.into()))?;
    Ok(text.to_cow().map_err(py_err)?.into_owned())
}

/// Exact decimal digits of an exact int of any size (within the interpreter's limit on
/// int-to-str conversions, which exists because the conversion is quadratic).
unsafe fn int_digits(py: Python<'_>, obj: *mut ffi::PyObject) -> Result<String> {
    debug_assert!(ffi::PyLong_CheckExact(obj) != 0);
    let s = ffi::PyObject_Str(obj);
    if s.is_null() {
        let err = PyErr::fetch(py);
        // The only ValueError str() of an exact int raises is its digit limit.
        return Err(if err.is_instance_of::<PyValueError>(py) {
            EncodeError::new(ErrorKind::IntTooLong(err))
        } else {
            py_err(err)
        });
    }
    let s = Bound::from_owned_ptr(py, s);
    let s = s
        .downcast_into::<PyString>()
        .map_err(|e| py_err(e.into()))?;
    Ok(s.to_cow().map_err(py_err)?.into_owned())
}

pub(crate) fn type_repr(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .repr()
        .and_then(|r| r.to_cow().map(|c| c.into_owned()))
        .unwrap_or_else(|_| "<unknown type>".to_owned())
}

#[cfg(test)]
mod tests {
    use super::{common_prefix, key_prefix};

    fn slow_prefix(key: &[u8]) -> u64 {
        let mut head = [0u8; 8];
        for (h, b) in head.iter_mut().zip(key) {
            *h = *b;
        }
        u64::from_be_bytes(head)
    }

    #[test]
    fn key_prefix_is_the_first_8_bytes_zero_padded_wherever_the_key_lies() {
        // Keys ending at every offset of a page's last 16 bytes, and inside it: the word
        // load is taken only within the page, and bytes past the key never count.
        let buf: Vec<u8> = (0..3 * 4096).map(|i| (i * 7 + 1) as u8 | 0x80).collect();
        let page_end = 4096 - (buf.as_ptr() as usize) % 4096 + 4096;
        for n in 0..12 {
            for end in (page_end - 16..=page_end).chain([100, 2000]) {
                let key = &buf[end - n..end];
                assert_eq!(key_prefix(key), slow_prefix(key), "n {n} end {end}");
            }
        }
        assert_eq!(key_prefix(&[]), 0);
    }

    #[test]
    fn common_prefix_counts_the_shared_bytes_up_to_the_limit() {
        let words: [&[u8]; 8] = [
            b"",
            b"a",
            b"user_",
            b"user_1",
            b"user_10",
            b"user_2",
            b"2026-12-04T10:00:00.000001Z",
            b"2026-12-04T10:00:00.000002Z",
        ];
        for a in words {
            for b in words {
                let naive = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                for limit in [0, 3, 8, 9, 100, usize::MAX] {
                    assert_eq!(common_prefix(a, b, limit), naive.min(limit), "{a:?} {b:?}");
                }
            }
        }
    }
}
