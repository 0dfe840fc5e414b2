//! The request side of a Connect client or bidirectional stream: the body's envelopes, each
//! passed on to the gRPC routes as a gRPC frame as soon as it is complete (inflated when it is
//! compressed, JSON turned into the message's binary form), so that a reflection client's
//! questions are answered while its stream stays open.

use super::{json_to_proto, open_envelope, Codec};
use bytes::{Buf as _, Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use prost_reflect::MessageDescriptor;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::Status;

/// A Connect request body read as gRPC frames.
pub struct Envelopes {
    body: Body,
    buf: BytesMut,
    codec: Codec,
    input: MessageDescriptor,
    gzipped: bool,
    limit: usize,
}

impl Envelopes {
    pub fn new(
        body: Body,
        codec: Codec,
        input: MessageDescriptor,
        gzipped: bool,
        limit: usize,
    ) -> Self {
        Envelopes {
            body,
            buf: BytesMut::new(),
            codec,
            input,
            gzipped,
            limit,
        }
    }

    /// The next complete envelope's message as a gRPC frame, if one is buffered.
    fn next_frame(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let flags = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.limit {
            return Err(Status::resource_exhausted(format!(
                "a request message of {len} bytes is over the limit of {} ([limits] max_request_bytes)",
                self.limit
            )));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let message = open_envelope(
            flags,
            self.buf.split_to(len).freeze(),
            self.gzipped,
            self.limit,
        )?;
        let message = match self.codec {
            Codec::Json => json_to_proto(&self.input, &message)?,
            Codec::Proto => message,
        };
        Ok(Some(super::frame(&message)))
    }
}

impl HttpBody for Envelopes {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            match this.next_frame() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(Frame::data(frame)))),
                Ok(None) => {}
                Err(status) => return Poll::Ready(Some(Err(status))),
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) if this.buf.is_empty() => return Poll::Ready(None),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Err(Status::invalid_argument(
                        "request envelope: cut short at the end of the body",
                    ))))
                }
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
