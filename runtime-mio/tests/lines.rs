//! The runtime test suite (`ironpost-runtime-tests`: a line handler over loopback TCP) on
//! the mio runtime.

ironpost_runtime_tests::line_tests!(ironpost_runtime_mio);
