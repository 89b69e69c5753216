//! heapland's integration tests. The `guest` module holds the tests that run inside the
//! QEMU guest (see tests/vm/run); host tests live in tests/tests/.

pub mod guest;
