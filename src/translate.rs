//! Translation between typed protobuf messages and the upstream HTTP API, driven by the
//! operation table: a request message becomes method + path + query + body, and a response body
//! (object, bare array, map, raw text or nothing) becomes the response message.
//!
//! Boundary: this is the only module that turns dynamic protobuf messages into wire JSON and back.
//! Invariant: a request is never silently altered: a value that cannot be sent as given is an
//! `InvalidField` error naming the field, never dropped or rewritten.

mod coerce;
mod limits;
mod request;
mod response;

pub use limits::{header_bytes, RequestLimits, OWN_HEADERS_BYTES, URI_MAX_BYTES};
pub use request::{build_call, HttpCall};
pub use response::decode_response;

/// A request field the gateway refuses, with the reason; becomes `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: String,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The upstream answered with a body that does not fit the response message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the upstream response does not match {message}: {reason}")]
pub struct UndecodableResponse {
    pub message: String,
    pub reason: String,
}

#[cfg(test)]
mod tests;
