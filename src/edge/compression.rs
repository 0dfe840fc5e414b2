//! gzip on the gRPC port, both ways, for every protocol:
//!
//! - gRPC and gRPC-Web: `grpc-encoding` / `grpc-accept-encoding`, per message (the frame's
//!   compressed flag); gRPC-Web's trailer frame is never touched;
//! - Connect unary: `Content-Encoding` / `Accept-Encoding`; Connect streams:
//!   `Connect-Content-Encoding` / `Connect-Accept-Encoding`, per envelope; Connect GET: the
//!   `compression` parameter.
//!
//! An answer is compressed only when the client accepts gzip and the message is at least
//! `min_bytes`; the services behind never see compression (the cache keeps answers as they
//! are). A compressed request is inflated under the request size limit: one that would inflate
//! past it is refused with `RESOURCE_EXHAUSTED` (the gRPC convention) as soon as it has, never
//! inflated in full.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame};
use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::Status;

/// The one compression offered.
pub const GZIP: &str = "gzip";
/// What the gateway accepts, as a `*-accept-encoding` value.
pub const ACCEPTED: &str = "gzip,identity";

/// A frame's (or envelope's) compressed flag.
const COMPRESSED: u8 = 0x01;

/// How answers are compressed and compressed requests bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Answers are compressed from this size on (bytes of one message); `None`: never.
    pub min_bytes: Option<usize>,
    /// The largest message a request may inflate to (`[limits] max_request_bytes`).
    pub max_message_bytes: usize,
}

/// `[http] compress_min_bytes` when not set.
pub const DEFAULT_MIN_BYTES: usize = 1024;

impl Default for Compression {
    fn default() -> Self {
        Compression {
            min_bytes: Some(DEFAULT_MIN_BYTES),
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Compression {
    /// Whether a message of `len` bytes is sent compressed to a client that accepts gzip.
    pub fn worth_it(&self, len: usize) -> bool {
        self.min_bytes.is_some_and(|min| len >= min)
    }
}

/// Whether an `accept-encoding`-style value lists gzip (and does not refuse it with `q=0`).
pub fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(text) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    text.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        coding.eq_ignore_ascii_case(GZIP) && !refused
    })
}

/// How a request's messages are encoded, from its `*-encoding` header: `Ok(true)` for gzip,
/// `Ok(false)` for none or identity, `UNIMPLEMENTED` naming the header otherwise.
pub fn request_is_gzip(headers: &HeaderMap, name: &str) -> Result<bool, Status> {
    match headers.get(name).map(|v| v.to_str().unwrap_or("?")) {
        None | Some("identity") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case(GZIP) => Ok(true),
        Some(other) => Err(Status::unimplemented(format!(
            "{name}: {other:?} is not supported (gzip and identity are)"
        ))),
    }
}

/// `data`, gzipped.
pub fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// `data` inflated, refused with `RESOURCE_EXHAUSTED` once it passes `limit` bytes (the rest is
/// never inflated), or `INVALID_ARGUMENT` when it is not gzip.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Bytes, Status> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Status::invalid_argument(format!("a compressed message is not gzip: {e}")))?;
    if out.len() > limit {
        return Err(Status::resource_exhausted(format!(
            "a compressed message inflates past the limit of {limit} bytes ([limits] max_request_bytes)"
        )));
    }
    Ok(Bytes::from(out))
}

/// What a frame transform does to each complete length-prefixed message.
enum Transform {
    /// Request frames: inflate the compressed ones.
    Inflate { limit: usize },
    /// Answer frames: compress the plain data frames of at least `min` bytes.
    Deflate { min: usize },
    /// Request messages of at most `limit` bytes, each turned into the frame the closure makes
    /// of its flags and bytes (a Connect stream's envelopes into gRPC frames).
    Each { limit: usize, each: EachMessage },
}

/// What `Transform::Each` makes of one message: its flags and bytes → the frame's.
type EachMessage = Box<dyn FnMut(u8, Bytes) -> Result<(u8, Bytes), Status> + Send>;

/// A gRPC-framed body (5-byte prefix: flags, big-endian length) with each message transformed
/// as soon as it is complete.
pub struct Frames<B> {
    inner: B,
    buf: BytesMut,
    transform: Transform,
}

impl<B> Frames<B> {
    /// Request frames, compressed ones inflated under `limit`.
    pub fn inflating(inner: B, limit: usize) -> Self {
        Frames {
            inner,
            buf: BytesMut::new(),
            transform: Transform::Inflate { limit },
        }
    }

    /// Answer frames, those of at least `min` bytes compressed.
    pub fn deflating(inner: B, min: usize) -> Self {
        Frames {
            inner,
            buf: BytesMut::new(),
            transform: Transform::Deflate { min },
        }
    }

    /// Request messages of at most `limit` bytes, each made into a frame by `each`.
    pub fn each(
        inner: B,
        limit: usize,
        each: impl FnMut(u8, Bytes) -> Result<(u8, Bytes), Status> + Send + 'static,
    ) -> Self {
        Frames {
            inner,
            buf: BytesMut::new(),
            transform: Transform::Each {
                limit,
                each: Box::new(each),
            },
        }
    }

    /// The transformed complete frames at the front of the buffer.
    fn complete_frames(&mut self) -> Result<Option<Bytes>, Status> {
        let mut out = BytesMut::new();
        while self.buf.len() >= 5 {
            let flags = self.buf[0];
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if let Transform::Each { limit, .. } = &self.transform {
                if len > *limit {
                    return Err(Status::resource_exhausted(format!(
                        "a request message of {len} bytes is over the limit of {limit} \
                         ([limits] max_request_bytes)"
                    )));
                }
            }
            if self.buf.len() < 5 + len {
                break;
            }
            self.buf.advance(5);
            let message = self.buf.split_to(len).freeze();
            let (flags, message) = match &mut self.transform {
                Transform::Inflate { limit } if flags & COMPRESSED != 0 => {
                    (flags & !COMPRESSED, gunzip(&message, *limit)?)
                }
                // gRPC-Web's trailer frame (0x80) and compressed frames pass as they are.
                Transform::Deflate { min } if flags == 0 && message.len() >= *min => {
                    (COMPRESSED, gzip(&message))
                }
                Transform::Each { each, .. } => each(flags, message)?,
                _ => (flags, message),
            };
            out.put_u8(flags);
            out.put_u32(message.len() as u32);
            out.put_slice(&message);
        }
        Ok((!out.is_empty()).then(|| out.freeze()))
    }
}

impl<B> HttpBody for Frames<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Status>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    if !this.buf.is_empty() {
                        let cut = "a message was cut short at the end of the body";
                        // A request's fault is the caller's; an answer's, the gateway's.
                        return Poll::Ready(Some(Err(match this.transform {
                            Transform::Deflate { .. } => Status::internal(cut),
                            _ => Status::invalid_argument(cut),
                        })));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        match this.complete_frames() {
                            Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                            Ok(None) => continue,
                            Err(status) => return Poll::Ready(Some(Err(status))),
                        }
                    }
                    // Trailers pass as they are.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
            }
        }
    }

    // A body that is already over (a trailers-only answer) must say so, or HTTP/2 sends its
    // end in an empty DATA frame, which gRPC clients refuse after a trailers-only head.
    fn is_end_stream(&self) -> bool {
        self.buf.is_empty() && self.inner.is_end_stream()
    }
}

/// A gRPC request ready for the routes, and whether its answer is to be compressed: a gzip
/// request has its frames inflated (and its `grpc-encoding` removed, so the routes see plain
/// messages).
pub fn grpc_request(
    mut req: http::Request<tonic::body::Body>,
    settings: Compression,
) -> Result<(http::Request<tonic::body::Body>, Negotiated), Status> {
    let gzipped = request_is_gzip(req.headers(), "grpc-encoding")?;
    let accept = req.headers().get("grpc-accept-encoding");
    let negotiated = Negotiated {
        compress: settings.min_bytes.is_some() && accepts_gzip(accept),
        // Clients that speak of encodings are told which the gateway accepts.
        advertise: gzipped || accept.is_some(),
    };
    if gzipped {
        req.headers_mut().remove("grpc-encoding");
        let limit = settings.max_message_bytes;
        req = req.map(|body| tonic::body::Body::new(Frames::inflating(body, limit)));
    }
    Ok((req, negotiated))
}

/// What a gRPC request negotiated about its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Negotiated {
    /// The client accepts gzip: large messages are compressed.
    pub compress: bool,
    /// The client named encodings: the answer says which the gateway accepts.
    pub advertise: bool,
}

/// A gRPC answer as sent: it says what the gateway accepts, and, for a client that accepts
/// gzip, its large messages are compressed.
pub fn grpc_response(
    mut response: http::Response<tonic::body::Body>,
    negotiated: Negotiated,
    settings: Compression,
) -> http::Response<tonic::body::Body> {
    if negotiated.advertise {
        response
            .headers_mut()
            .insert("grpc-accept-encoding", HeaderValue::from_static(ACCEPTED));
    }
    let compress = negotiated.compress;
    // A trailers-only answer (an error) has no message to compress.
    let trailers_only = response.headers().contains_key("grpc-status");
    match settings.min_bytes.filter(|_| compress && !trailers_only) {
        Some(min) => {
            response
                .headers_mut()
                .insert("grpc-encoding", HeaderValue::from_static(GZIP));
            response.map(|body| tonic::body::Body::new(Frames::deflating(body, min)))
        }
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[test]
    fn accept_encoding_lists_are_read_as_http_says() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(accepts_gzip(v("gzip").as_ref()));
        assert!(accepts_gzip(v("identity, GZIP;q=0.5").as_ref()));
        assert!(accepts_gzip(v("deflate,gzip").as_ref()));
        assert!(!accepts_gzip(v("gzip;q=0").as_ref()));
        assert!(!accepts_gzip(v("identity").as_ref()));
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        let big = vec![b'a'; 100_000];
        let packed = gzip(&big);
        assert!(packed.len() < 1_000);
        assert_eq!(gunzip(&packed, 100_000).expect("fits").len(), 100_000);
        let err = gunzip(&packed, 99_999).expect_err("over");
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            gunzip(b"not gzip", 10).expect_err("bad").code(),
            tonic::Code::InvalidArgument
        );
    }

    fn framed(flags: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[tokio::test]
    async fn frames_are_transformed_one_by_one_and_trailer_frames_pass() {
        let big = vec![b'x'; 4096];
        let mut input = framed(0, &big);
        input.extend(framed(0, b"small"));
        input.extend(framed(0x80, b"grpc-status:0\r\n"));
        // Split at an awkward place: the transform waits for whole frames.
        let (a, b) = input.split_at(7);
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(vec![
            Ok::<_, Status>(Frame::data(Bytes::copy_from_slice(a))),
            Ok(Frame::data(Bytes::copy_from_slice(b))),
        ]));
        let out = Frames::deflating(body, 1024)
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let mut rest = out.clone();
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let flags = rest.get_u8();
            let len = rest.get_u32() as usize;
            seen.push((flags, rest.split_to(len)));
        }
        assert_eq!(seen[0].0, COMPRESSED);
        assert_eq!(gunzip(&seen[0].1, 1 << 20).expect("gzip"), big);
        assert_eq!(seen[1], (0, Bytes::from_static(b"small")));
        assert_eq!(seen[2], (0x80, Bytes::from_static(b"grpc-status:0\r\n")));

        let back = Frames::inflating(
            http_body_util::Full::new(out)
                .map_err(|never: std::convert::Infallible| -> Status { match never {} }),
            1 << 20,
        )
        .collect()
        .await
        .expect("inflated")
        .to_bytes();
        assert_eq!(back, Bytes::from(input));
    }
}
