//! The properties the fuzz targets check: the same code `cargo test` runs on stable
//! (`tests/properties/`, driven by `tests/it/properties.rs`).

#[path = "../../tests/properties/mod.rs"]
pub mod properties;
