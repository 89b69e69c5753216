//! Bindings for the heapland Wayland protocols.
