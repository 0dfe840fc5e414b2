//! Scrubbing upstream messages of the call's own credential values before anyone sees them.
//!
//! An upstream error message may quote what it was sent: the secret, the security token, or
//! the string to sign (which holds the token). It may quote them whole, in part, or encoded:
//! percent-encoded, base64 (standard or URL-safe, at any alignment) or hex. So a run of
//! token-like characters is withheld whole when it, or any decoding of it, shares
//! [`WINDOW`] consecutive bytes with a secret; shorter secrets are replaced where they appear
//! as given. An echoed string to sign is cut off.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};
use std::collections::HashSet;

/// What stands where a secret was.
pub const REDACTED: &str = "**REDACTED**";

/// How many consecutive bytes of a secret make a quote of it.
const WINDOW: usize = 8;

/// Secrets shorter than this are not looked for (they would match ordinary words).
const MIN_SECRET: usize = 4;

/// Replaces every quote of the given secret values in an upstream message (whole, in part of
/// at least [`WINDOW`] bytes, or encoded), and drops any echoed string to sign.
pub fn scrub(message: &str, secrets: &[&str]) -> String {
    let secrets: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| s.len() >= MIN_SECRET)
        .collect();
    let mut m = message.to_string();
    for s in &secrets {
        m = m.replace(s, REDACTED);
    }
    let windows: HashSet<&[u8]> = secrets
        .iter()
        .filter(|s| s.len() >= WINDOW)
        .flat_map(|s| s.as_bytes().windows(WINDOW))
        .collect();
    if !windows.is_empty() {
        m = withhold_runs(&m, &windows);
    }
    if let Some(i) = m.to_ascii_lowercase().find("string to sign") {
        m.truncate(i);
        m.push_str("[string to sign omitted]");
    }
    m
}

/// Characters of a run that may be (part of) an encoded or plain credential.
fn in_run(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '%' | '.' | '~' | '!')
}

/// The message with every run that quotes a secret replaced by [`REDACTED`].
fn withhold_runs(message: &str, windows: &HashSet<&[u8]>) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(in_run) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !in_run(c)).unwrap_or(tail.len());
        let run = &tail[..end];
        if run.len() >= WINDOW && quotes(run, windows) {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `run`, or a decoding of it, holds [`WINDOW`] consecutive bytes of a secret.
fn quotes(run: &str, windows: &HashSet<&[u8]>) -> bool {
    let holds = |bytes: &[u8]| bytes.windows(WINDOW).any(|w| windows.contains(w));
    if holds(run.as_bytes()) {
        return true;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(run).collect();
    if holds(&decoded) {
        return true;
    }
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let engines = [
        (
            GeneralPurpose::new(&alphabet::STANDARD, lenient),
            (|c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/') as fn(char) -> bool,
        ),
        (
            GeneralPurpose::new(&alphabet::URL_SAFE, lenient),
            |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        ),
    ];
    // Base64 of a secret (or of text around one), from any of the four alignments. The text
    // decoded is the percent-decoded run, so `%2B`-style escapes of base64 count too.
    let text = String::from_utf8_lossy(&decoded);
    for (engine, alphabet) in &engines {
        for segment in text.split(|c: char| !alphabet(c)) {
            for offset in 0..4 {
                let Some(part) = segment.get(offset..) else {
                    break;
                };
                let usable = part.len() - part.len() % 4;
                if usable < WINDOW {
                    break;
                }
                if engine
                    .decode(&part[..usable])
                    .is_ok_and(|bytes| holds(&bytes))
                {
                    return true;
                }
            }
        }
    }
    // Hex, from either alignment.
    for segment in text.split(|c: char| !c.is_ascii_hexdigit()) {
        for offset in 0..2 {
            let Some(part) = segment.get(offset..) else {
                break;
            };
            let bytes: Vec<u8> = part
                .as_bytes()
                .chunks_exact(2)
                .filter_map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
                .collect();
            if holds(&bytes) {
                return true;
            }
        }
    }
    false
}
