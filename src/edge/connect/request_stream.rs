//! The request side of a Connect client or bidirectional stream: the body's envelopes, each
//! passed on to the gRPC routes as a gRPC frame as soon as it is complete (inflated when it is
//! compressed, JSON turned into the message's binary form), so that a reflection client's
//! questions are answered while its stream stays open. The framing is `compression::Frames`'.

use super::codec::json_to_proto;
use super::envelope::open_envelope;
use super::Codec;
use crate::edge::compression::Frames;
use prost_reflect::MessageDescriptor;
use tonic::body::Body;

/// A Connect request body read as gRPC frames.
pub fn envelopes(
    body: Body,
    codec: Codec,
    input: MessageDescriptor,
    gzipped: bool,
    limit: usize,
) -> Frames<Body> {
    Frames::each(body, limit, move |flags, message| {
        let message = open_envelope(flags, message, gzipped, limit)?;
        let message = match codec {
            Codec::Json => json_to_proto(&input, &message)?,
            Codec::Proto => message,
        };
        Ok((0, message))
    })
}
