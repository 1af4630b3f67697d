//! Every message of the encoder in one enum, and one conversion at the boundary into
//! `retrysafe.FingerprintError` (a `TypeError` or `ValueError` subclass, with `.path`).

use pyo3::exceptions::{
    PyAttributeError, PyException, PyImportError, PyMemoryError, PyTypeError, PyValueError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyString, PyType};

use crate::encoder::MAX_DEPTH;

pub enum ErrorKind {
    Unsupported(String),
    BadKey(String),
    DuplicateKey(String),
    NonFinite(f64),
    NonFiniteDecimal,
    LoneSurrogate,
    IntOutOfRange,
    OffsetSeconds,
    /// `isoformat()` of a date, time or datetime (named) gave no ISO 8601 text.
    NotIso(String),
    /// An int with more digits than `sys.get_int_max_str_digits()` allows (its ValueError).
    IntTooLong(PyErr),
    TooDeep,
    StackExhausted,
    /// Python code run by a rare type removed or replaced keys of a dict being written.
    Mutated,
    /// Python code run by a rare type (a property, `model_dump`, `__str__`) raised. An
    /// exception that is not an `Exception` (KeyboardInterrupt, SystemExit) or a
    /// MemoryError propagates unchanged.
    Python(PyErr),
}

pub enum Seg {
    Index(usize),
    Key(Py<PyAny>),
    Attr(String),
    SetItem,
}

pub struct EncodeError {
    pub kind: ErrorKind,
    /// Innermost segment first.
    pub path: Vec<Seg>,
    /// Addresses of the containers the error unwound through, innermost first: a repeat
    /// means the depth limit was reached through a cycle.
    pub containers: Vec<usize>,
}

impl EncodeError {
    #[cold]
    pub fn new(kind: ErrorKind) -> Box<Self> {
        Box::new(EncodeError {
            kind,
            path: Vec::new(),
            containers: Vec::new(),
        })
    }

    #[cold]
    pub fn at(mut self: Box<Self>, seg: Seg, container: *mut ffi::PyObject) -> Box<Self> {
        self.path.push(seg);
        self.containers.push(container as usize);
        self
    }

    #[cold]
    pub fn at_key(
        self: Box<Self>,
        py: Python<'_>,
        key: *mut ffi::PyObject,
        container: *mut ffi::PyObject,
    ) -> Box<Self> {
        let key = unsafe { Py::from_borrowed_ptr(py, key) };
        self.at(Seg::Key(key), container)
    }

    /// Where a cycle closes, outermost first: the first container met a second time, as the
    /// number of path segments that reach it. `containers[i + 1]` holds `path[i]`.
    fn cycle_depth(&self) -> Option<usize> {
        let mut seen = std::collections::HashSet::new();
        self.containers.iter().rev().position(|c| !seen.insert(*c))
    }

    fn render_path(&self, py: Python<'_>, root: &str, depth: usize) -> String {
        let segs: Vec<&Seg> = self.path.iter().rev().take(depth).collect();
        let mut out = String::from(root);
        let long = segs.len() > 16;
        for (i, seg) in segs.iter().enumerate() {
            if long && i == 8 {
                out.push_str(&format!("…({} more)…", segs.len() - 16));
            }
            if long && (8..segs.len() - 8).contains(&i) {
                continue;
            }
            match seg {
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
                Seg::Key(k) => {
                    out.push('[');
                    out.push_str(&shown_key(k.bind(py)));
                    out.push(']');
                }
                Seg::Attr(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Seg::SetItem => out.push_str("{…}"),
            }
        }
        out
    }

    /// The Python exception for this error, its message naming the path under `root`.
    #[cold]
    #[allow(clippy::boxed_local)] // errors travel boxed; unboxing here would only copy
    pub fn into_pyerr(self: Box<Self>, py: Python<'_>, root: &str) -> PyErr {
        if let ErrorKind::Python(err) = &self.kind {
            // Ctrl-C, SystemExit and running out of memory are not about the value.
            if !err.is_instance_of::<PyException>(py) || err.is_instance_of::<PyMemoryError>(py) {
                return err.clone_ref(py);
            }
        }
        let cycle = match self.kind {
            ErrorKind::TooDeep | ErrorKind::StackExhausted => self.cycle_depth(),
            _ => None,
        };
        let path = self.render_path(py, root, cycle.unwrap_or(usize::MAX));
        let (is_type_error, message) = match &self.kind {
            ErrorKind::Unsupported(ty) => (true, format!("cannot canonicalize {ty} at {path}")),
            ErrorKind::BadKey(ty) => (
                true,
                format!("cannot canonicalize a dict key of {ty} at {path}: keys must be str, int or Enum"),
            ),
            ErrorKind::DuplicateKey(k) => (
                false,
                format!(
                    "duplicate key {} at {path} after converting keys to strings (e.g. 1 and \"1\")",
                    if is_name(k) { format!("{k:?}") } else { "<a key>".into() }
                ),
            ),
            ErrorKind::NonFinite(v) => {
                let what = if v.is_nan() { "NaN" } else if *v > 0.0 { "Infinity" } else { "-Infinity" };
                (false, format!("{what} is not allowed in canonical JSON at {path}"))
            }
            ErrorKind::NonFiniteDecimal => {
                (false, format!("a non-finite Decimal (NaN or Infinity) is not allowed at {path}"))
            }
            ErrorKind::LoneSurrogate => (false, format!("a string with a lone surrogate at {path} is not valid Unicode")),
            ErrorKind::IntOutOfRange => (
                false,
                format!("integer at {path} is outside ±2^53, which strict=True refuses (pass it as a string)"),
            ),
            ErrorKind::OffsetSeconds => {
                (false, format!("a UTC offset with seconds at {path} has no canonical form"))
            }
            ErrorKind::NotIso(ty) => (
                false,
                format!("isoformat() of the {ty} at {path} did not give ISO 8601 text"),
            ),
            ErrorKind::IntTooLong(_) => (
                false,
                format!("integer at {path} has more digits than Python converts to text (sys.get_int_max_str_digits()); pass it as a string"),
            ),
            ErrorKind::TooDeep if cycle.is_some() => {
                (false, format!("circular reference at {path}: the value contains itself"))
            }
            ErrorKind::TooDeep => (false, format!("nesting deeper than {MAX_DEPTH} levels at {path}")),
            ErrorKind::Mutated => (false, format!("the dict at {path} changed while it was being canonicalized")),
            ErrorKind::StackExhausted => {
                (false, format!("nesting too deep for this thread's stack at {path}"))
            }
            // The cause is chained, and named here in a line at most: a message that
            // quoted the cause whole grew at every level of re-entrant calls.
            ErrorKind::Python(err) => (
                true,
                format!("cannot canonicalize the value at {path}: {}", summary(py, err)),
            ),
        };
        let cause = match &self.kind {
            ErrorKind::Python(err) | ErrorKind::IntTooLong(err) => Some(err.clone_ref(py)),
            _ => None,
        };
        let err = build(py, is_type_error, message, path);
        if let Some(cause) = cause {
            err.set_cause(py, Some(cause));
        }
        err
    }
}

/// Whether a dict key may be shown in an error: a name (ASCII identifier of at most
/// [`NAME_MAX`] characters: a parameter's or a field's). Any other key may be an argument's
/// value (an e-mail address, a token keying a map), and messages end up in logs.
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= NAME_MAX
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A dict key as a path shows it: `'name'` for a name ([`is_name`]), else only its type
/// (`<str key>`, `<int key>`). Reads a str's text in place (no Python code runs) and the
/// type's name; never calls `repr()`.
fn shown_key(key: &Bound<'_, PyAny>) -> String {
    if let Ok(text) = key.downcast::<PyString>() {
        if let Ok(text) = text.to_str() {
            if is_name(text) {
                return format!("'{text}'");
            }
        }
    }
    let ty = key
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    format!("<{} key>", clip(&ty, TYPE_NAME_MAX))
}

const NAME_MAX: usize = 64;

/// A key's type name in a path, and a cause in a message, are cut to this many characters.
const TYPE_NAME_MAX: usize = 80;
const CAUSE_MAX: usize = 200;

/// `text` cut to at most `max` characters, with an ellipsis where it was cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// `TypeName: message` of an exception, its message's first line clipped.
fn summary(py: Python<'_>, err: &PyErr) -> String {
    let name = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let line = message.lines().next().unwrap_or_default();
    if line.is_empty() {
        name
    } else {
        format!("{name}: {}", clip(line, CAUSE_MAX))
    }
}

static CLASSES: GILOnceCell<(Py<PyType>, Py<PyType>)> = GILOnceCell::new();

fn classes(py: Python<'_>) -> PyResult<&(Py<PyType>, Py<PyType>)> {
    CLASSES.get_or_try_init(py, || {
        let m = py.import("retrysafe._exceptions")?;
        Ok((
            m.getattr("FingerprintTypeError")?
                .downcast_into::<PyType>()?
                .unbind(),
            m.getattr("FingerprintValueError")?
                .downcast_into::<PyType>()?
                .unbind(),
        ))
    })
}

fn build(py: Python<'_>, is_type_error: bool, message: String, path: String) -> PyErr {
    let made = classes(py).and_then(|(type_error, value_error)| {
        let cls = if is_type_error {
            type_error
        } else {
            value_error
        };
        let kwargs = PyDict::new(py);
        kwargs.set_item("path", &path)?;
        let exc = cls.bind(py).call((message.clone(),), Some(&kwargs))?;
        Ok(PyErr::from_value(exc))
    });
    match made {
        Ok(err) => err,
        // Without the Python package (the native module alone), fall back to the builtins.
        Err(failed)
            if failed.is_instance_of::<PyImportError>(py)
                || failed.is_instance_of::<PyAttributeError>(py) =>
        {
            if is_type_error {
                PyTypeError::new_err(message)
            } else {
                PyValueError::new_err(message)
            }
        }
        // Anything else raised while the error was built (a KeyboardInterrupt from a signal
        // handler that ran meanwhile, a RecursionError, a MemoryError) is what the caller
        // gets, unchanged: never swallowed into a plain TypeError.
        Err(failed) => failed,
    }
}
