//! Why a signature was refused: `SignatureDoesNotMatch` quotes what the server signed
//! (`… server string to sign is:<text>`, and for V3 `… server canonical request is:<text>`);
//! compared with what the gateway signed, it tells a wrong secret (the same text: only the key
//! differs) from a request altered or canonicalized differently (a different text: the first
//! part that differs is named).
//!
//! Invariant: a diagnosis names parts (a header's name, the path, a query parameter's name),
//! never a value: the texts hold the security token and the request's data.

use super::SignatureVersion;

const STRING_TO_SIGN: &str = "server string to sign is:";
const CANONICAL_REQUEST: &str = " server canonical request is:";

/// What a `SignatureDoesNotMatch` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// The server signed the same text: the secret does not belong to the AccessKey id.
    SecretMismatch,
    /// The server signed a different text; `part` names the first difference.
    Canonicalization { part: String },
    /// The answer does not say what the server signed.
    Unknown,
}

impl Diagnosis {
    /// The label in `google.rpc.ErrorInfo` metadata (`diagnosis`) and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Diagnosis::SecretMismatch => "secret_mismatch",
            Diagnosis::Canonicalization { .. } => "canonicalization_mismatch",
            Diagnosis::Unknown => "unknown",
        }
    }

    pub const LABELS: [&'static str; 3] =
        ["secret_mismatch", "canonicalization_mismatch", "unknown"];
}

/// What the gateway signed.
pub struct Signed<'a> {
    pub version: SignatureVersion,
    pub string_to_sign: &'a str,
    /// V3 only.
    pub canonical_request: Option<&'a str>,
}

/// Compares what the gateway signed with what the server's message quotes.
pub fn diagnose(ours: &Signed<'_>, message: &str) -> Diagnosis {
    let Some(start) = message.find(STRING_TO_SIGN) else {
        return Diagnosis::Unknown;
    };
    let quoted = &message[start + STRING_TO_SIGN.len()..];
    let (their_sts, their_canonical) = match quoted.split_once(CANONICAL_REQUEST) {
        Some((sts, canonical)) => (sts, Some(canonical)),
        None => (quoted, None),
    };
    match ours.version {
        SignatureVersion::V1 => {
            if their_sts == ours.string_to_sign {
                Diagnosis::SecretMismatch
            } else {
                Diagnosis::Canonicalization {
                    part: first_difference(
                        &v1_parts(ours.string_to_sign),
                        &v1_parts(their_sts),
                        ours.string_to_sign,
                    ),
                }
            }
        }
        SignatureVersion::V3 => match (ours.canonical_request, their_canonical) {
            (Some(mine), Some(theirs)) if mine == theirs => Diagnosis::SecretMismatch,
            (Some(mine), Some(theirs)) => Diagnosis::Canonicalization {
                part: first_difference(&v3_parts(mine), &v3_parts(theirs), mine),
            },
            _ if their_sts == ours.string_to_sign => Diagnosis::SecretMismatch,
            _ => Diagnosis::Canonicalization {
                part: "the canonical request (the server quoted only its hash)".into(),
            },
        },
    }
}

/// A signed text taken apart: labelled fixed parts, the signed headers, labelled trailing parts.
struct Parts<'a> {
    head: Vec<(&'static str, &'a str)>,
    headers: Vec<(&'a str, &'a str)>,
    tail: Vec<(&'static str, &'a str)>,
}

/// V1: method, Accept, Content-MD5, Content-Type, Date, the `x-acs-*` lines, the resource.
fn v1_parts(text: &str) -> Parts<'_> {
    let mut lines = text.split('\n');
    let head = [
        "the HTTP method",
        "the Accept header",
        "the Content-MD5 header",
        "the Content-Type header",
        "the Date header",
    ]
    .into_iter()
    .map(|label| (label, lines.next().unwrap_or_default()))
    .collect();
    let mut headers = Vec::new();
    let mut resource = "";
    for line in lines {
        match line.split_once(':') {
            Some((name, value)) if name.starts_with("x-acs-") => headers.push((name, value)),
            _ => {
                resource = line;
                break;
            }
        }
    }
    let (path, query) = resource.split_once('?').unwrap_or((resource, ""));
    Parts {
        head,
        headers,
        tail: vec![("the path", path), ("the query", query)],
    }
}

/// V3: method, path, query, the header lines, the signed header list, the payload hash.
fn v3_parts(text: &str) -> Parts<'_> {
    let mut lines = text.split('\n');
    let head = ["the HTTP method", "the path", "the query"]
        .into_iter()
        .map(|label| (label, lines.next().unwrap_or_default()))
        .collect();
    let mut headers = Vec::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        headers.push((name, value));
    }
    let tail = [
        "the signed header list",
        "the payload hash (x-acs-content-sha256)",
    ]
    .into_iter()
    .map(|label| (label, lines.next().unwrap_or_default()))
    .collect();
    Parts {
        head,
        headers,
        tail,
    }
}

/// The first part that differs, by name. `ours_text` is what the gateway signed: what follows
/// the first `:` of any of its lines may be a header value (whatever line the header is on).
fn first_difference(ours: &Parts<'_>, theirs: &Parts<'_>, ours_text: &str) -> String {
    let signed_values: Vec<&str> = ours_text
        .split('\n')
        .filter_map(|line| line.split_once(':').map(|(_, v)| v))
        .collect();
    for ((label, a), (_, b)) in ours.head.iter().zip(&theirs.head) {
        if a != b {
            return describe(label, a, b, &signed_values);
        }
    }
    let mut names: Vec<&str> = ours
        .headers
        .iter()
        .chain(&theirs.headers)
        .map(|(n, _)| *n)
        .collect();
    names.sort_unstable();
    names.dedup();
    let value = |parts: &Parts<'_>, name: &str| {
        parts
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    };
    for name in names {
        // A "name" may be any line of either text: one that holds a signed value is not named.
        let header = if quotes_a_value(name, &signed_values) {
            "a header line (one that quotes a signed header value)".to_string()
        } else {
            format!("the header `{name}`")
        };
        match (value(ours, name), value(theirs, name)) {
            (Some(_), None) => {
                return format!(
                    "{header} (signed by the gateway, absent from what the server signed)"
                )
            }
            (None, Some(_)) => {
                return format!("{header} (signed by the server, not by the gateway)")
            }
            (Some(a), Some(b)) if a != b => return format!("the value of {header}"),
            _ => {}
        }
    }
    for ((label, a), (_, b)) in ours.tail.iter().zip(&theirs.tail) {
        if a != b {
            return describe(label, a, b, &signed_values);
        }
    }
    "the texts differ in layout only (line breaks or white space)".into()
}

/// A differing part; a query is narrowed to its first differing parameter (by name), unless
/// that name holds one of the values the gateway signed in a header (`signed_values`): the
/// server's text may quote anything where the query should be, such as the security token's
/// header line.
fn describe(label: &str, ours: &str, theirs: &str, signed_values: &[&str]) -> String {
    if label != "the query" {
        return label.to_string();
    }
    let params = |q: &str| -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let (a, b) = (params(ours), params(theirs));
    let mut keys: Vec<&String> = a.iter().chain(&b).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let get = |p: &[(String, String)]| p.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if get(&a) != get(&b) {
            if quotes_a_value(key, signed_values) {
                return "the query (a parameter that quotes a signed header)".into();
            }
            return format!(
                "the query parameter `{}`",
                key.chars().take(64).collect::<String>()
            );
        }
    }
    "the query (its encoding or order)".into()
}

/// Whether `name` holds one of the values the gateway signed in a header (long enough to be
/// told apart from a word).
fn quotes_a_value(name: &str, signed_values: &[&str]) -> bool {
    signed_values
        .iter()
        .any(|v| v.len() >= 8 && name.contains(v))
}

#[cfg(test)]
mod tests;
