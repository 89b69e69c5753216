//! heapland's integration tests. The `guest` module holds the tests that run inside the
//! QEMU guest (see tests/vm/run); host tests live in tests/tests/. The `bench` module is
//! what the benchmark (heapland-bench, in the guest) and its report (heapland-plot, on the
//! host) share.

pub mod bench;
pub mod guest;
