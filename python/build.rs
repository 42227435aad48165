//! Exposes PyO3's interpreter configuration as cfgs (`Py_GIL_DISABLED` for free-threaded
//! builds, `Py_3_13`, ...), so one source compiles to the GIL and the free-threaded extension.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
