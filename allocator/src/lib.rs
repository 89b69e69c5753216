//! Discovers DMA-BUF heaps and allocates buffers that several devices can share.
