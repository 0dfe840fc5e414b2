//! Injected faults: what the next matching requests get instead of a clean answer, from an
//! API error to a connection closed in the middle of the body.

use super::serve::ConnectionHandle;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// A fault to inject: the next `times` matching requests get it.
///
/// Two delays, on either side of the moment the request takes effect: `delay_ms` waits before
/// the request is applied (a slow cloud: a caller that gives up meanwhile changed nothing),
/// `answer_delay_ms` waits after it is applied, before the answer is sent (the work is done,
/// the answer is late: a caller that gives up meanwhile does not know its write happened).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// Operation name (or RPC action) to match; `None` matches every request.
    #[serde(default)]
    pub operation: Option<String>,
    /// What goes wrong; by default an API error answer (`status`, `code`, `message`).
    #[serde(default)]
    pub kind: FaultKind,
    /// `answer`: the error status (`0`: the real answer, delayed by `delay_ms` and/or
    /// `answer_delay_ms`); `html_error`: the status of the page (default 502); `redirect`: the
    /// redirect status (default 302).
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default = "one")]
    pub times: usize,
    /// Waits this long before the request is applied (or refused by the fault).
    #[serde(default)]
    pub delay_ms: u64,
    /// Waits this long after the request is applied, before its answer is sent. It holds the
    /// operation's own answer, so it combines with `answer` at `status = 0` and with the kinds
    /// that deliver the real answer badly; the kinds that make up an answer apply nothing and
    /// ignore it.
    #[serde(default)]
    pub answer_delay_ms: u64,
    /// Extra response headers (e.g. `x-ratelimit-user-api`; `location` for `redirect`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `trickle`: the pause between two pieces of the body (default 100 ms).
    #[serde(default)]
    pub interval_ms: u64,
    /// `oversized`: how many bytes the body has (default 32 MiB).
    #[serde(default)]
    pub size: u64,
}

fn one() -> usize {
    1
}

impl Default for Fault {
    fn default() -> Self {
        Fault {
            operation: None,
            kind: FaultKind::default(),
            status: 0,
            code: String::new(),
            message: String::new(),
            times: 1,
            delay_ms: 0,
            answer_delay_ms: 0,
            headers: BTreeMap::new(),
            interval_ms: 0,
            size: 0,
        }
    }
}

/// What goes wrong. The kinds that deliver the real answer badly (`reset_before_headers`,
/// `reset_after_headers`, `truncated_body`, `trickle`) let the request take effect first, as a
/// cloud that did the work and then lost the connection would: a mutation retried after them
/// would be applied twice (unless it carries a client token the operation honours).
/// `reset_unapplied` loses the connection before the request takes effect: the caller sees the
/// same closed connection, but nothing happened, so a retry is the first application. The kinds
/// that make up an answer (`answer` with a status, `not_json`, `html_error`, `oversized`,
/// `redirect`) apply nothing either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// An API error (`status`, `code`, `message`), which applies nothing; or with `status = 0`
    /// the real answer, only delayed (`delay_ms` before applying, `answer_delay_ms` after).
    #[default]
    Answer,
    /// The request is applied, then the connection is closed before any byte of the answer.
    ResetBeforeHeaders,
    /// The connection is closed before any byte of the answer, and before the request is
    /// applied: nothing changes.
    ResetUnapplied,
    /// The status and headers are sent, then the connection is closed in the middle of the
    /// (chunked) body.
    ResetAfterHeaders,
    /// `Content-Length` announces the whole body, half of it is sent, then the connection
    /// is closed.
    TruncatedBody,
    /// 200 with a body that is not JSON.
    NotJson,
    /// An HTML error page (`text/html`), as a proxy or load balancer in front of the API
    /// answers.
    HtmlError,
    /// The real answer, a few bytes every `interval_ms`.
    Trickle,
    /// 200 with a JSON body of `size` bytes.
    Oversized,
    /// A redirect (`status`, default 302) to `headers.location` (default another host).
    Redirect,
}

/// How an answer is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    Whole,
    CloseBeforeHeaders,
    CloseMidBody,
    Truncated,
    Trickle(Duration),
    Oversized(u64),
}

impl Fault {
    /// How the answer is delivered under this fault.
    pub(super) fn delivery(&self) -> Delivery {
        match self.kind {
            FaultKind::ResetBeforeHeaders | FaultKind::ResetUnapplied => {
                Delivery::CloseBeforeHeaders
            }
            FaultKind::ResetAfterHeaders => Delivery::CloseMidBody,
            FaultKind::TruncatedBody => Delivery::Truncated,
            FaultKind::Trickle => {
                Delivery::Trickle(Duration::from_millis(if self.interval_ms == 0 {
                    100
                } else {
                    self.interval_ms
                }))
            }
            FaultKind::Oversized => {
                Delivery::Oversized(if self.size == 0 { 32 << 20 } else { self.size })
            }
            FaultKind::Answer | FaultKind::NotJson | FaultKind::HtmlError | FaultKind::Redirect => {
                Delivery::Whole
            }
        }
    }

    /// The answer a fault makes up on its own (not the operation's): (status, content type,
    /// body, headers).
    pub(super) fn made_up(&self) -> Option<(u16, &'static str, String, BTreeMap<String, String>)> {
        let status_or = |default: u16| {
            if self.status == 0 {
                default
            } else {
                self.status
            }
        };
        let mut headers = self.headers.clone();
        match self.kind {
            FaultKind::NotJson => Some((
                200,
                "text/plain; charset=utf-8",
                "OK (this is not JSON)".into(),
                headers,
            )),
            FaultKind::HtmlError => {
                let status = status_or(502);
                let page = format!(
                    "<!DOCTYPE html>\n<html>\n<head><title>{status} Bad Gateway</title></head>\n<body>\n<center><h1>{status} Bad Gateway</h1></center>\n<hr><center>Tengine</center>\n{}</body>\n</html>\n",
                    "<!-- a padding comment, as error pages have -->\n".repeat(40)
                );
                Some((status, "text/html; charset=utf-8", page, headers))
            }
            FaultKind::Redirect => {
                headers
                    .entry("location".into())
                    .or_insert_with(|| "https://redirected.example/elsewhere".into());
                Some((
                    status_or(302),
                    "text/plain; charset=utf-8",
                    String::new(),
                    headers,
                ))
            }
            FaultKind::Oversized => Some((200, "application/json", String::new(), headers)),
            _ => None,
        }
    }
}

/// How long the connection is given to flush what was sent before it is closed mid-body.
const FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// Delivers `response` (whose body is `text`) as `delivery` says, on the connection `conn`.
/// Closing before the headers never returns: the connection is dropped under the handler.
pub(super) async fn deliver(
    mut response: Response,
    text: String,
    delivery: Delivery,
    conn: Option<ConnectionHandle>,
) -> Response {
    let bytes = Bytes::from(text);
    let half = bytes.slice(..bytes.len() / 2);
    match (delivery, conn) {
        (Delivery::Whole, _) => response,
        (Delivery::CloseBeforeHeaders, Some(conn)) => {
            conn.abort();
            std::future::pending().await
        }
        (Delivery::CloseMidBody | Delivery::Truncated, Some(conn)) => {
            let headers = response.headers_mut();
            headers.remove(http::header::CONTENT_LENGTH);
            if delivery == Delivery::Truncated {
                headers.insert(http::header::CONTENT_LENGTH, bytes.len().into());
            }
            let stream = futures_util::stream::unfold(Some(half), move |piece| {
                let conn = conn.clone();
                async move {
                    match piece {
                        Some(piece) => Some((Ok::<_, std::io::Error>(piece), None)),
                        None => {
                            tokio::time::sleep(FLUSH_PAUSE).await;
                            conn.abort();
                            std::future::pending().await
                        }
                    }
                }
            });
            *response.body_mut() = Body::from_stream(stream);
            response
        }
        (Delivery::Trickle(interval), _) => {
            response.headers_mut().remove(http::header::CONTENT_LENGTH);
            let stream =
                futures_util::stream::unfold((bytes, true), move |(rest, first)| async move {
                    if rest.is_empty() {
                        return None;
                    }
                    if !first {
                        tokio::time::sleep(interval).await;
                    }
                    let mut rest = rest;
                    let piece = rest.split_to(rest.len().min(TRICKLE_PIECE));
                    Some((Ok::<_, std::io::Error>(piece), (rest, false)))
                });
            *response.body_mut() = Body::from_stream(stream);
            response
        }
        (Delivery::Oversized(size), _) => {
            response.headers_mut().remove(http::header::CONTENT_LENGTH);
            *response.body_mut() = Body::from_stream(padding(size));
            response
        }
        // Served without a connection handle: nothing to close, the answer goes out whole.
        (Delivery::CloseBeforeHeaders | Delivery::CloseMidBody | Delivery::Truncated, None) => {
            response
        }
    }
}

/// How many bytes a trickling body sends at a time.
const TRICKLE_PIECE: usize = 8;

/// `{"padding":"xxx…"}` of `size` bytes (at least the brackets), made as it is sent.
fn padding(
    size: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    const CHUNK: u64 = 64 * 1024;
    const HEAD: &[u8] = b"{\"padding\":\"";
    const TAIL: &[u8] = b"\"}";
    let filler = size.saturating_sub((HEAD.len() + TAIL.len()) as u64);
    let pieces = std::iter::once(Bytes::from_static(HEAD))
        .chain((0..filler.div_ceil(CHUNK)).map(move |i| {
            let len = (filler - i * CHUNK).min(CHUNK);
            Bytes::from(vec![b'x'; len as usize])
        }))
        .chain(std::iter::once(Bytes::from_static(TAIL)))
        .map(Ok);
    futures_util::stream::iter(pieces)
}
