//! `retrysafe._native`: RFC 8785 canonical JSON and SHA-256 / HMAC-SHA256 fingerprints.
//!
//! One call walks a whole argument tree; policy lives in Python.

mod encoder;
mod errors;
mod hasher;
mod keyer;
pub mod text;

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use encoder::{Encoder, GilSlot};
use errors::{EncodeError, ErrorKind};
use hasher::Hasher;
use text::{hex32, Sink, PASS_THROUGH};

/// The root name in error paths: tool-call arguments.
pub(crate) const ROOT: &str = "args";

/// Domain separation for idempotency keys; bump it if the derivation ever changes.
const KEY_TAG: &[u8] = b"retrysafe/idempotency-key/v1\0";

/// Canonical bytes wait in the hashing buffer up to this much before they are hashed (with
/// the GIL held: the encoder may hold borrowed pointers); what is left is hashed when the
/// document ends, with the GIL released from [`RELEASE_GIL`] on. So a document up to 4 MiB
/// is encoded by one thread while another hashes: 2 threads fingerprinting large payloads
/// get the second core (with the GIL held throughout, two threads got 0.99x of one thread's
/// throughput here).
const DEFER: usize = 4 << 20;
/// Hashing this much takes ~0.15 ms: worth letting other threads run meanwhile.
const RELEASE_GIL: usize = 256 * 1024;

/// The hashing buffers, reused between calls: two, for the thread hashing with the GIL
/// released and the one encoding meanwhile. One grown past [`DEFER`] is not kept.
static HASH_BUF: GilSlot<Vec<u8>> = GilSlot::new();
static HASH_BUF_2: GilSlot<Vec<u8>> = GilSlot::new();

/// Hashes canonical bytes as they are written: they wait in a buffer (the encoder's write
/// windows land in it) and are hashed in one pass when the document ends, or every 4 MiB.
pub(crate) struct HashSink<'py> {
    py: Python<'py>,
    buf: Vec<u8>,
    hasher: Hasher,
}

impl<'py> HashSink<'py> {
    pub(crate) fn new(py: Python<'py>, secret: Option<&[u8]>) -> Self {
        let mut buf = HASH_BUF
            .take(py)
            .or_else(|| HASH_BUF_2.take(py))
            .unwrap_or_default();
        buf.clear();
        // Room for small documents and one reserved string block (6 x 4 KiB + slack); a
        // larger document grows it.
        buf.reserve(8192 + 32 * 1024);
        HashSink {
            py,
            buf,
            hasher: Hasher::new(secret),
        }
    }

    /// Hashes what the buffer holds (a partial block may stay).
    #[inline(never)]
    fn flush(&mut self) {
        self.hasher.absorb(&mut self.buf, &[]);
    }

    /// The digest of everything written; the sink starts over (unkeyed). Called once the
    /// document is written: no pointer borrowed from a Python object is in use any more, so
    /// a long remainder is hashed with the GIL released (the buffer and the hasher are this
    /// sink's own memory, which no other thread can reach).
    pub(crate) fn finish(&mut self) -> [u8; 32] {
        if self.buf.len() >= RELEASE_GIL {
            let (hasher, buf) = (&mut self.hasher, &mut self.buf);
            return self.py.allow_threads(|| hasher.finish(buf));
        }
        self.hasher.finish(&mut self.buf)
    }

    #[inline(never)]
    fn write_slow(&mut self, bytes: &[u8]) {
        if bytes.len() >= RELEASE_GIL {
            // Every write this long is of bytes the encoder owns (a cached layout's key
            // prefixes, an int's digits, base64 text, a sorted set's parts, the call keyer's
            // buffer): nothing another thread does can change or free them. Pointers the
            // encoder borrowed from containers may be invalid afterwards: say so.
            encoder::python_may_run();
            let (hasher, buf) = (&mut self.hasher, &mut self.buf);
            self.py.allow_threads(|| hasher.absorb(buf, bytes));
        } else if bytes.len() >= PASS_THROUGH {
            self.hasher.absorb(&mut self.buf, bytes);
        } else {
            self.flush();
            self.buf.write(bytes);
        }
    }
}

impl Drop for HashSink<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() > DEFER + 64 * 1024 {
            return; // a large document's buffer is not kept
        }
        match HASH_BUF.take(self.py) {
            None => HASH_BUF.put(self.py, buf),
            Some(first) => {
                HASH_BUF.put(self.py, first);
                HASH_BUF_2.put(self.py, buf);
            }
        }
    }
}

impl Sink for HashSink<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() <= DEFER {
            self.buf.write(bytes);
        } else {
            self.write_slow(bytes);
        }
    }

    #[inline(always)]
    fn push(&mut self, byte: u8) {
        if self.buf.len() >= DEFER {
            self.flush();
        }
        Sink::push(&mut self.buf, byte);
    }

    #[inline(always)]
    fn reserve_raw(&mut self, n: usize) -> *mut u8 {
        if self.buf.len() + n > DEFER {
            self.flush();
        }
        self.buf.reserve_raw(n)
    }

    #[inline(always)]
    unsafe fn commit(&mut self, n: usize) {
        self.buf.commit(n);
    }
}

/// A digest as the 64-char lowercase hex Python str every fingerprint function returns.
pub(crate) fn hex_pystring<'py>(py: Python<'py>, digest: &[u8; 32]) -> Bound<'py, PyString> {
    let hex = hex32(digest);
    // SAFETY: hex32 writes ASCII only.
    PyString::new(py, unsafe { std::str::from_utf8_unchecked(&hex) })
}

/// Runs `f`, turning a Rust panic (a bug: the code has no panicking path it knows of) into a
/// Python RuntimeError rather than letting it unwind into the interpreter.
pub(crate) fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(_) => Err(PyRuntimeError::new_err(
            "retrysafe._native: internal error while canonicalizing (please report it)",
        )),
    }
}

/// Output buffers up to this size are kept for the next call.
const KEEP_BUFFER: usize = 4 << 20;

/// Reused by `canonical_json`: a fresh large Vec costs page faults on every call.
static OUT: GilSlot<Vec<u8>> = GilSlot::new();

/// canonical_json(obj, /, *, strict=False) -> bytes
#[pyfunction]
#[pyo3(signature = (obj, /, *, strict = false))]
fn canonical_json<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    strict: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    guarded(|| {
        let mut buf = OUT.take(py).unwrap_or_default();
        buf.clear();
        let mut encoder = Encoder::new(py, buf, strict);
        let result = encoder.encode_root(obj.as_ptr());
        let out = result.map(|()| PyBytes::new(py, encoder.sink.inner()));
        let mut buf = std::mem::take(encoder.sink.inner());
        drop(encoder);
        if buf.capacity() <= KEEP_BUFFER {
            buf.clear();
            OUT.put(py, buf);
        }
        out.map_err(|e| e.into_pyerr(py, ROOT))
    })
}

/// fingerprint(obj, /, *, secret=None, strict=False) -> str
#[pyfunction]
#[pyo3(signature = (obj, /, *, secret = None, strict = false))]
fn fingerprint<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    secret: Option<&[u8]>,
    strict: bool,
) -> PyResult<Bound<'py, PyString>> {
    guarded(|| {
        // The 8 KiB sink stays in this frame; the encoder borrows it (no moves, no memcpy).
        let mut sink = HashSink::new(py, secret);
        Encoder::new(py, &mut sink, strict)
            .encode_root(obj.as_ptr())
            .map_err(|e| e.into_pyerr(py, ROOT))?;
        Ok(crate::hex_pystring(py, &sink.finish()))
    })
}

/// idempotency_digest(scope, args, /, *, secret=None) -> str
#[pyfunction]
#[pyo3(signature = (scope, args, /, *, secret = None))]
fn idempotency_digest<'py>(
    py: Python<'py>,
    scope: &Bound<'py, PyString>,
    args: &Bound<'py, PyAny>,
    secret: Option<&[u8]>,
) -> PyResult<Bound<'py, PyString>> {
    guarded(|| {
        // A lone surrogate has no UTF-8: the same FingerprintValueError as in the arguments.
        let Ok(scope) = scope.to_str() else {
            return Err(EncodeError::new(ErrorKind::LoneSurrogate).into_pyerr(py, "scope"));
        };
        let mut sink = HashSink::new(py, secret);
        sink.write(KEY_TAG);
        // Length-prefixed: ("a", "b\0c") and ("a\0b", "c") never meet.
        sink.write(&(scope.len() as u64).to_be_bytes());
        sink.write(scope.as_bytes());
        Encoder::new(py, &mut sink, false)
            .encode_root(args.as_ptr())
            .map_err(|e| e.into_pyerr(py, ROOT))?;
        Ok(crate::hex_pystring(py, &sink.finish()))
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    encoder::init_runtime(m.py());
    m.add_function(wrap_pyfunction!(canonical_json, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(idempotency_digest, m)?)?;
    m.add_function(wrap_pyfunction!(keyer::digest_with_head, m)?)?;
    m.add_class::<keyer::CallKeyer>()?;
    m.add("MAX_DEPTH", encoder::MAX_DEPTH)?;
    Ok(())
}
