//! Upstream answers → response message or classified error (`translate::decode_response`,
//! `upstream::api_error`, `request_id`, `exhausted_budget`, `rate_limit_wait`).
//!
//! Input: an operation, a status, headers (names from the ones the gateway reads, values
//! arbitrary), two secrets the call was signed with, and a body (raw, or an error object whose
//! message quotes the secrets). Property: no panic; a 2xx body decodes into the operation's
//! response message or fails naming it; an error keeps the status, never quotes a secret, and
//! carries the request id `request_id` finds (the header's, when it has one).

use super::catalog::ops;
use super::inputs::{short_bytes, short_text, word, HEX};
use super::Unstructured;
use ack_gateway::error::UpstreamError;
use ack_gateway::translate::decode_response;
use ack_gateway::upstream::{
    api_error, exhausted_budget, rate_limit_wait, request_id, RawResponse,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use prost_reflect::ReflectMessage as _;

const HEADERS: &[&str] = &[
    "x-acs-request-id",
    "x-ratelimit-user-api",
    "x-ratelimit-user",
    "retry-after",
    "content-type",
    "date",
];

const STATUSES: &[u16] = &[200, 201, 204, 400, 403, 404, 409, 429, 500, 502, 503, 504];

/// Values the rate-limit parsers meet, for the fuzzer to start from.
const HEADER_VALUES: &[&str] = &[
    "Limit:1,Remain:0,TimeLeft:2000,Reset:1700000000",
    "Limit:100,Remain:99,TimeLeft:0",
    "Remain:0",
    "TimeLeft:18446744073709551615",
    "remain : 0 , timeleft : 7",
    "3",
    "0",
    "a8f3c6c1-0c36-4d6f-9d52-2b4c8f6b0f1e",
];

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = check_unstructured(&mut u);
}

fn check_unstructured(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let (op, _, desc) = ops().get(usize::from(u.arbitrary::<u8>()?));
    let status = match u.arbitrary::<u8>()? {
        s if s >= 240 => u.arbitrary::<u16>()?,
        s => STATUSES[usize::from(s) % STATUSES.len()],
    };
    let mut headers = HeaderMap::new();
    for _ in 0..u.arbitrary::<u8>()? % 5 {
        let name = HEADERS[usize::from(u.arbitrary::<u8>()?) % HEADERS.len()];
        let value: &[u8] = match u.arbitrary::<u8>()? {
            0 => HEADER_VALUES[usize::from(u.arbitrary::<u8>()?) % HEADER_VALUES.len()].as_bytes(),
            _ => short_bytes(u)?,
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    // Hex secrets can neither be made of the redaction marker nor of the omission note.
    let secret = word(u, HEX, 4, 40)?;
    let token = word(u, HEX, 4, 40)?;
    let body: Vec<u8> = if u.arbitrary::<u8>()? % 2 == 1 {
        let code = short_text(u)?;
        let before = short_text(u)?;
        let after = short_text(u)?;
        serde_json::to_vec(&serde_json::json!({
            "code": code,
            "message": format!("{before}{secret}{after}{token}"),
            "requestId": after,
        }))
        .expect("JSON")
    } else {
        let rest = u.len();
        u.bytes(rest)?.to_vec()
    };
    let resp = RawResponse {
        status,
        headers,
        body: body.into(),
    };

    if (200..300).contains(&status) {
        match decode_response(op, desc, &resp.body) {
            Ok(msg) => assert_eq!(msg.descriptor().full_name(), desc.full_name()),
            Err(e) => assert_eq!(e.message, desc.full_name()),
        }
        let _ = exhausted_budget(&resp.headers);
    }
    let id = request_id(&resp.headers, &resp.body);
    if let Some(header) = resp
        .headers
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
    {
        assert_eq!(id.as_deref(), Some(header));
    }
    let wait = rate_limit_wait(&resp.headers);
    match api_error("cs.example", &resp, &[&secret, &token]) {
        UpstreamError::Api {
            status: s,
            message,
            request_id: rid,
            retry_after,
            ..
        } => {
            assert_eq!(s, status);
            assert!(
                !message.contains(&secret) && !message.contains(&token),
                "a secret in `{message}`"
            );
            assert_eq!(rid, id);
            assert_eq!(retry_after, wait);
        }
        other => panic!("an answer classified as {other:?}"),
    }
    Ok(())
}

/// For each operation: its simulated answer, and an error answer quoting the secrets.
pub fn seeds() -> Vec<Vec<u8>> {
    let ops = ops();
    let mut out = Vec::new();
    for i in 0..ops.count() {
        let (op, _, _) = ops.get(i);
        let body = ack_gateway::simulator::sample::response(op, "a8f3c6c1-0c36")
            .map(|v| serde_json::to_vec(&v).expect("JSON"))
            .unwrap_or_default();
        // The operation, status 200, one header (`x-acs-request-id`, a listed value), the
        // secrets `0000` and `1111`, a raw body.
        let mut input = vec![i as u8, 0, 1, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0];
        input.extend(body);
        out.push(input);
        // 503 with `retry-after: 3`, and an error object quoting the secrets.
        let mut input = vec![i as u8, 10, 1, 3, 0, 5, 4, 0, 0, 0, 0, 4, 1, 1, 1, 1, 1];
        for part in ["Throttling.User", "Request was denied: ", " token "] {
            input.push(part.len() as u8);
            input.extend(part.as_bytes());
        }
        out.push(input);
    }
    out
}
