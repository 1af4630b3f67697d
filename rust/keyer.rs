//! `CallKeyer`: the cache key of a call in one native call — bind positional and keyword
//! arguments to the parameter names fixed at decoration time, apply defaults, and hash
//! `head || canonical_json({name: value, ...})` without building the dict in Python.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::encoder::Encoder;
use crate::text::{hex32, utf16_cmp, write_str, Sink};
use crate::{HashSink, ROOT};

/// Binds calls of one function and fingerprints them. Built once per decorated function.
#[pyclass(frozen, module = "retrysafe._native")]
pub struct CallKeyer {
    head: Vec<u8>,
    /// Prepended to the hex digest in the returned key (the cache's namespace).
    prefix: String,
    /// When > 0, a call whose `prefix + canonical JSON` fits in this many bytes is keyed by
    /// those bytes themselves (exact, and cheaper than SHA-256 for an in-process dict).
    raw_limit: usize,
    secret: Option<Vec<u8>>,
    names: Vec<Py<PyString>>,
    /// The default of each parameter, `None` where it has none.
    defaults: Vec<Option<Py<PyAny>>>,
    /// How many parameters may be given positionally (the rest are keyword-only).
    positional: usize,
    /// Leading positional arguments left out of the key (`self`, `cls`).
    skip: usize,
    /// Parameter indexes in canonical (UTF-16 sorted) key order, with each member's
    /// `,"name":` prefix already escaped (the first without its comma).
    order: Vec<(usize, Vec<u8>)>,
}

#[pymethods]
impl CallKeyer {
    #[new]
    #[pyo3(signature = (head, names, defaults, positional, skip, /, *, prefix = None, raw_limit = 0, secret = None, hidden = None, empty))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        head: &[u8],
        names: Vec<Bound<'_, PyString>>,
        defaults: Vec<Bound<'_, PyAny>>,
        positional: usize,
        skip: usize,
        prefix: Option<String>,
        raw_limit: usize,
        secret: Option<Vec<u8>>,
        hidden: Option<Vec<String>>,
        empty: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        if names.len() != defaults.len() || positional > names.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "CallKeyer: names and defaults differ in length, or positional is too large",
            ));
        }
        let texts: Vec<String> = names
            .iter()
            .map(|n| n.to_cow().map(|c| c.into_owned()))
            .collect::<PyResult<_>>()?;
        let hidden = hidden.unwrap_or_default();
        // Hidden parameters bind like the others but stay out of the key.
        let mut indexes: Vec<usize> = (0..names.len())
            .filter(|&i| !hidden.contains(&texts[i]))
            .collect();
        indexes.sort_by(|&a, &b| utf16_cmp(texts[a].as_bytes(), texts[b].as_bytes()));
        let order = indexes
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                let mut prefix = Vec::new();
                if pos > 0 {
                    prefix.push(b',');
                }
                write_str(&mut prefix, texts[i].as_bytes());
                prefix.push(b':');
                (i, prefix)
            })
            .collect();
        Ok(CallKeyer {
            head: head.to_vec(),
            prefix: prefix.unwrap_or_default(),
            raw_limit,
            secret,
            names: names.into_iter().map(Bound::unbind).collect(),
            defaults: defaults
                .into_iter()
                .map(|d| if d.is(&empty) { None } else { Some(d.unbind()) })
                .collect(),
            positional,
            skip,
            order,
        })
    }

    /// The 64-hex key of a call, or `None` when the arguments do not bind simply (too many
    /// positionals, an unknown or repeated keyword, a missing argument): the caller then
    /// binds with `inspect.signature`, for the same digest or the proper TypeError.
    #[pyo3(signature = (args, kwargs, /))]
    fn key<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        crate::guarded(|| self.key_of(py, args, kwargs))
    }

    /// The head bytes hashed before the arguments.
    #[getter]
    fn head<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.head)
    }
}

impl CallKeyer {
    fn key_of<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let n = self.names.len();
        let given = args.len();
        if given < self.skip || given - self.skip > self.positional {
            return Ok(None);
        }
        let mut values: smallvec::SmallVec<[*mut ffi::PyObject; 8]> =
            smallvec::smallvec![std::ptr::null_mut(); n];
        for (i, slot) in values.iter_mut().enumerate().take(given - self.skip) {
            // SAFETY: the index is within the tuple; the tuple keeps the item alive.
            *slot =
                unsafe { ffi::PyTuple_GetItem(args.as_ptr(), (i + self.skip) as ffi::Py_ssize_t) };
        }
        // The keyword items held first: matching a name may run a str subclass's __eq__,
        // which may change `kwargs` (and free its values) while it is looked at.
        let keywords: smallvec::SmallVec<[(Bound<'py, PyAny>, Bound<'py, PyAny>); 8]> = match kwargs
        {
            Some(kwargs) => dict_items(kwargs),
            None => smallvec::SmallVec::new(),
        };
        for (k, v) in &keywords {
            let Some(i) = self.index_of(py, k)? else {
                return Ok(None);
            };
            if !values[i].is_null() {
                return Ok(None); // given twice: let inspect raise the TypeError
            }
            values[i] = v.as_ptr();
        }
        for (i, slot) in values.iter_mut().enumerate() {
            if slot.is_null() {
                match &self.defaults[i] {
                    Some(d) => *slot = d.as_ptr(),
                    None => return Ok(None),
                }
            }
        }
        // `args`, `keywords` and `self.defaults` hold every value for the rest of this call.
        if self.raw_limit > 0 {
            let mut buf = Vec::with_capacity(self.prefix.len() + 160);
            buf.extend_from_slice(self.prefix.as_bytes());
            let start = buf.len();
            self.write_call(py, &mut buf, &values)?;
            if buf.len() <= self.raw_limit {
                return Ok(Some(PyBytes::new(py, &buf).into_any()));
            }
            let mut sink = HashSink::new(py, self.secret.as_deref());
            sink.write(&self.head);
            sink.write(&buf[start..]);
            return Ok(Some(self.hex_key(py, &sink.finish()).into_any()));
        }
        let mut sink = HashSink::new(py, self.secret.as_deref());
        sink.write(&self.head);
        self.write_call(py, &mut sink, &values)?;
        Ok(Some(self.hex_key(py, &sink.finish()).into_any()))
    }

    /// Writes the bound call as canonical JSON: `{"name":value,...}` in key order.
    fn write_call<S: Sink>(
        &self,
        py: Python<'_>,
        sink: &mut S,
        values: &[*mut ffi::PyObject],
    ) -> PyResult<()> {
        let mut encoder = Encoder::new(py, sink, false);
        encoder.sink.push(b'{');
        for (i, prefix) in &self.order {
            encoder.sink.write(prefix);
            encoder.encode_root(values[*i]).map_err(|e| {
                e.at_key(py, self.names[*i].as_ptr(), std::ptr::null_mut())
                    .into_pyerr(py, ROOT)
            })?;
        }
        encoder.sink.push(b'}');
        Ok(())
    }

    fn hex_key<'py>(&self, py: Python<'py>, digest: &[u8; 32]) -> Bound<'py, PyString> {
        let hex = hex32(digest);
        let mut key = String::with_capacity(self.prefix.len() + 64);
        key.push_str(&self.prefix);
        key.push_str(std::str::from_utf8(&hex).unwrap_or_default());
        PyString::new(py, &key)
    }

    fn index_of(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
        // Keyword names are usually the interned parameter names: pointer equality first.
        if let Some(i) = self.names.iter().position(|n| n.as_ptr() == key.as_ptr()) {
            return Ok(Some(i));
        }
        for (i, name) in self.names.iter().enumerate() {
            if name.bind(py).as_any().eq(key)? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

/// digest_with_head(head, obj, /, *, secret=None) -> str: SHA-256 (or HMAC) of
/// `head || canonical_json(obj)`; the slow path of `CallKeyer.key` gives the same digest.
#[pyfunction]
#[pyo3(signature = (head, obj, /, *, secret = None))]
pub fn digest_with_head<'py>(
    py: Python<'py>,
    head: &[u8],
    obj: &Bound<'py, PyAny>,
    secret: Option<&[u8]>,
) -> PyResult<Bound<'py, PyString>> {
    crate::guarded(|| {
        let mut sink = HashSink::new(py, secret);
        sink.write(head);
        Encoder::new(py, &mut sink, false)
            .encode_root(obj.as_ptr())
            .map_err(|e| e.into_pyerr(py, ROOT))?;
        Ok(crate::hex_pystring(py, &sink.finish()))
    })
}

/// A dict's items as strong references, taken with no Python code run meanwhile.
fn dict_items<'py>(
    dict: &Bound<'py, PyDict>,
) -> smallvec::SmallVec<[(Bound<'py, PyAny>, Bound<'py, PyAny>); 8]> {
    let py = dict.py();
    let mut items = smallvec::SmallVec::new();
    let (mut pos, mut k, mut v) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: PyDict_Next hands out borrowed references, made strong at once; nothing
    // between two steps runs Python code, so the dict cannot change during the walk.
    unsafe {
        while ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut k, &mut v) != 0 {
            items.push((
                Bound::from_borrowed_ptr(py, k),
                Bound::from_borrowed_ptr(py, v),
            ));
        }
    }
    items
}
