//! Inputs the properties share: the repository's root (seeds are made from its fixtures), and,
//! read from unstructured bytes, strings biased towards ones that have broken parsers before,
//! words of an alphabet, short byte strings.

use arbitrary::Unstructured;
use std::path::{Path, PathBuf};

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

/// The repository's root (fixtures are read relative to it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("ops/operations.json").is_file())
        .expect("inside the repository")
        .to_path_buf()
}
