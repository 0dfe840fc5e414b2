//! Properties of every surface that takes outside bytes, each a function of those bytes. The
//! fuzz targets (`fuzz/fuzz_targets/`) call them on libFuzzer's inputs; `tests/it/properties.rs`
//! calls them on the seeds and on a bounded number of generated inputs, on stable. Inputs are
//! read with `arbitrary::Unstructured`, so every byte string is a valid input.
//!
//! Each module has `check(&[u8])` (panics when the property fails), `seeds()` (inputs made
//! from the fixtures, written to the fuzz corpora by `fuzz/seed.sh`) and, where random bytes
//! would rarely reach deep, `generate(&mut Unstructured)` (a structured input).

pub mod config;
pub mod metadata;
pub mod request;
pub mod response;
pub mod signers;
pub mod simulator_auth;

use ack_gateway::proto;
use ack_gateway::table::{self, Operation, OperationTable};
use arbitrary::Unstructured;
use prost_reflect::MessageDescriptor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A property: panics when it does not hold for the input.
pub type Check = fn(&[u8]);
/// Seed inputs, made from the repository's fixtures.
pub type Seeds = fn() -> Vec<Vec<u8>>;
/// A structured input, from unstructured bytes.
pub type Generate = fn(&mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>>;

/// Every operation of the built-in table with its request and response messages, by index.
pub struct Ops {
    table: Arc<OperationTable>,
    messages: Vec<(MessageDescriptor, MessageDescriptor)>,
}

impl Ops {
    pub fn count(&self) -> usize {
        self.messages.len()
    }

    /// The operation at `i` (taken modulo the number of operations).
    pub fn get(&self, i: usize) -> (&Operation, &MessageDescriptor, &MessageDescriptor) {
        let i = i % self.count();
        let op = &self.table.table.operations[i];
        let (req, resp) = &self.messages[i];
        (op, req, resp)
    }

    pub fn index_of(&self, service: &str, name: &str) -> Option<usize> {
        self.table
            .table
            .operations
            .iter()
            .position(|op| op.service == service && op.name == name)
    }
}

/// The operations, built once.
pub fn ops() -> &'static Ops {
    static OPS: OnceLock<Ops> = OnceLock::new();
    OPS.get_or_init(|| {
        let table = table::builtin();
        let messages = table
            .table
            .operations
            .iter()
            .map(|op| {
                let package = &table.table.services[&op.service].package;
                let message = |suffix: &str| {
                    proto::message(&format!("{package}.{}{suffix}", op.name))
                        .expect("every operation has its messages")
                };
                (message("Request"), message("Response"))
            })
            .collect();
        Ops { table, messages }
    })
}

/// The repository's root (fixtures are read relative to it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("ops/operations.json").is_file())
        .expect("inside the repository")
        .to_path_buf()
}

/// Strings that have broken parsers and mappers before: dot segments, reserved characters,
/// placeholders of the path templates, encodings, control bytes, non-ASCII, empty and long.
const INTERESTING: &[&str] = &[
    "",
    ".",
    "..",
    "../..",
    "a/b",
    "?x=1#y",
    "{cluster_id}",
    "{nodepool_id}",
    "%2e%2e",
    "%2F",
    " ",
    "\t\n\r",
    "é",
    "日本",
    "\u{0}",
    "c-0123456789abcdef",
    "Bearer ",
    "max-age=5",
    "no-cache",
    "99999999S",
    "100000000H",
    "+5m",
];

/// A string biased towards [`INTERESTING`] ones and their concatenations.
pub fn string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 => u.choose(INTERESTING)?.to_string(),
        1 => format!("{}{}", u.choose(INTERESTING)?, u.choose(INTERESTING)?),
        2 => "x".repeat(u.int_in_range(0..=3000)?),
        _ => u.arbitrary::<String>()?,
    })
}

/// A string of `alphabet` characters, `min..=max` long.
pub fn word(
    u: &mut Unstructured<'_>,
    alphabet: &[u8],
    min: usize,
    max: usize,
) -> arbitrary::Result<String> {
    let n = u.int_in_range(min..=max)?;
    (0..n)
        .map(|_| u.choose(alphabet).map(|&b| char::from(b)))
        .collect()
}

pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
pub const HEX: &[u8] = b"0123456789abcdef";

/// Up to 255 bytes, their count first (read from the front, so inputs are easy to write).
pub fn short_bytes<'a>(u: &mut Unstructured<'a>) -> arbitrary::Result<&'a [u8]> {
    let n = usize::from(u.arbitrary::<u8>()?).min(u.len());
    u.bytes(n)
}

/// [`short_bytes`] as text (invalid UTF-8 replaced).
pub fn short_text(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(String::from_utf8_lossy(short_bytes(u)?).into_owned())
}
