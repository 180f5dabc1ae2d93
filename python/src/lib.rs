//! The Python extension module `rootbox._rootbox` (filled by the Python work; only the version now).

use pyo3::prelude::*;

#[pymodule]
fn _rootbox(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", rootbox_core::VERSION)?;
    Ok(())
}
