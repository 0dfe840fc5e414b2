//! The properties the fuzz targets check: the same code `cargo test` runs on stable
//! (`ack_test_support::properties`, driven by `tests/it/properties.rs`).

pub use ack_test_support::properties;
