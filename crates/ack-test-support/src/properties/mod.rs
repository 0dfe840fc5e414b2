//! Properties of every surface that takes outside bytes, each a function of those bytes. The
//! fuzz targets (`fuzz/fuzz_targets/`) call them on libFuzzer's inputs; `tests/it/properties.rs`
//! calls them on the seeds and on a bounded number of generated inputs, on stable. Inputs are
//! read with `arbitrary::Unstructured`, so every byte string is a valid input.
//!
//! Each module has `check(&[u8])` (panics when the property fails), `seeds()` (inputs made
//! from the fixtures, written to the fuzz corpora by `fuzz/seed.sh`) and, where random bytes
//! would rarely reach deep, `generate(&mut Unstructured)` (a structured input).

mod catalog;
pub mod config;
mod inputs;
pub mod metadata;
pub mod request;
pub mod response;
pub mod signers;
pub mod simulator_auth;

pub use catalog::{ops, Ops};
pub use inputs::{repo_root, short_bytes, short_text, string, word, ALNUM, HEX, LOWER_ALNUM};

use arbitrary::Unstructured;

/// A property: panics when it does not hold for the input.
pub type Check = fn(&[u8]);
/// Seed inputs, made from the repository's fixtures.
pub type Seeds = fn() -> Vec<Vec<u8>>;
/// A structured input, from unstructured bytes.
pub type Generate = fn(&mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>>;
