//! The runtime test suite (`ironpost-runtime-tests`: a line handler over loopback TCP) on
//! the smol runtime.

ironpost_runtime_tests::line_tests!(ironpost_runtime_smol);
