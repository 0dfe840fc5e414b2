//! The bounds a request must fit in to be sent (`[limits]` in the configuration): the size of
//! each path and query value, of the whole URL and of the headers, the entries of each list or
//! map, and how deep a value nests. A request outside them is refused with `INVALID_ARGUMENT`
//! naming the field before anything is sent; none of them ever shortens a value.

use super::InvalidField;
use crate::signer::rpc::RFC3986;
use percent_encoding::utf8_percent_encode;
use serde_json::Value;

/// The longest URI the HTTP stack can send (`http::Uri` refuses longer ones), so the upper
/// bound of `max_url_bytes`.
pub const URI_MAX_BYTES: usize = 65534;

/// What the gateway's own headers (signature, dates, nonce, Content-MD5, trace context) may take
/// of `max_header_bytes`; a profile's `acs_headers` must fit in the rest.
pub const OWN_HEADERS_BYTES: usize = 2048;

/// The limits one request is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Bytes of one path parameter's value, before percent-encoding.
    pub max_path_param_bytes: usize,
    /// Bytes of one query parameter's value as serialised (a JSON-encoded or comma-joined list
    /// is one value), before percent-encoding.
    pub max_query_value_bytes: usize,
    /// Bytes of the whole URL sent, percent-encoded, query and signature included.
    pub max_url_bytes: usize,
    /// Bytes of the request headers sent (`name: value\r\n` each).
    pub max_header_bytes: usize,
    /// Entries of one list, map or free-form object.
    pub max_repeated_items: usize,
    /// Nesting depth of one field's value (a list or object is one level): free-form
    /// `google.protobuf.Struct` / `Value` fields are the ones that can nest at will.
    pub max_json_depth: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_path_param_bytes: 1024,
            max_query_value_bytes: 8192,
            max_url_bytes: 16384,
            max_header_bytes: 16384,
            max_repeated_items: 1000,
            max_json_depth: 32,
        }
    }
}

// === impl RequestLimits ===

impl RequestLimits {
    /// A path parameter's value fits.
    pub(super) fn path_value(&self, name: &str, value: &str) -> Result<(), InvalidField> {
        within(name, "", value.len(), self.max_path_param_bytes)
    }

    /// A query parameter's serialised value fits.
    pub(super) fn query_value(&self, name: &str, value: &str) -> Result<(), InvalidField> {
        within(name, "", value.len(), self.max_query_value_bytes)
    }

    /// No list or map in a field's value has more than `max_repeated_items` entries, and the
    /// value nests at most `max_json_depth` levels. Walked with an explicit stack.
    pub(super) fn shape(&self, name: &str, value: &Value) -> Result<(), InvalidField> {
        let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
        while let Some((v, depth)) = stack.pop() {
            let children: Box<dyn Iterator<Item = &Value>> = match v {
                Value::Array(items) => {
                    self.entries(name, "items", items.len())?;
                    Box::new(items.iter())
                }
                Value::Object(map) => {
                    self.entries(name, "entries", map.len())?;
                    Box::new(map.values())
                }
                _ => continue,
            };
            let depth = depth + 1;
            if depth > self.max_json_depth {
                return Err(InvalidField::new(
                    name,
                    format!(
                        "nests deeper than the gateway's limit of {} levels",
                        self.max_json_depth
                    ),
                ));
            }
            stack.extend(children.map(|c| (c, depth)));
        }
        Ok(())
    }

    fn entries(&self, name: &str, what: &str, n: usize) -> Result<(), InvalidField> {
        if n > self.max_repeated_items {
            return Err(InvalidField::new(
                name,
                format!(
                    "has a list or map of {n} {what}, over the gateway's limit of {}",
                    self.max_repeated_items
                ),
            ));
        }
        Ok(())
    }

    /// The path and query fit in `max_url_bytes` once percent-encoded; otherwise the field
    /// that takes the most of it is named. `parts` are (field, percent-encoded bytes).
    pub(super) fn url(&self, parts: &[(&str, usize)], fixed: usize) -> Result<(), InvalidField> {
        let total = fixed + parts.iter().map(|(_, n)| n).sum::<usize>();
        if total <= self.max_url_bytes {
            return Ok(());
        }
        let name = parts
            .iter()
            .max_by_key(|(_, n)| *n)
            .map_or("request", |(name, _)| name);
        Err(InvalidField::new(
            name,
            format!(
                "makes the URL {total} bytes once percent-encoded, over the gateway's limit of {}",
                self.max_url_bytes
            ),
        ))
    }

    /// A signed request's URL and headers fit; checked once more just before sending, since the
    /// endpoint, the signature and the trace context add to what `build_call` saw.
    pub fn signed(&self, url_bytes: usize, headers: &http::HeaderMap) -> Result<(), InvalidField> {
        within("request", "the URL ", url_bytes, self.max_url_bytes)?;
        within(
            "request",
            "the headers ",
            header_bytes(headers),
            self.max_header_bytes,
        )
    }
}

/// Bytes of headers as written in HTTP/1.1: `name: value\r\n` each.
pub fn header_bytes<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    headers: impl IntoIterator<Item = (K, V)>,
) -> usize {
    headers
        .into_iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 4)
        .sum()
}

/// Bytes of `s` once percent-encoded.
pub(super) fn encoded_len(s: &str) -> usize {
    utf8_percent_encode(s, RFC3986).map(str::len).sum()
}

fn within(name: &str, what: &str, n: usize, max: usize) -> Result<(), InvalidField> {
    if n > max {
        return Err(InvalidField::new(
            name,
            format!("{what}is {n} bytes, over the gateway's limit of {max}"),
        ));
    }
    Ok(())
}
