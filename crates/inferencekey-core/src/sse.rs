//! SSE decoding (PROTOCOL.md §4.1 client rules). To be implemented.
