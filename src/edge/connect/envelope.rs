//! The Connect protocol's envelopes (a flags byte and a 4-byte big-endian length before each
//! message of a stream), and gRPC's length-prefixed frames, which have the same shape.

use super::super::compression;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tonic::Status;

/// Envelope flag: the end-of-stream message.
pub(super) const END_STREAM: u8 = 0x02;

/// Envelope flag: the message is compressed.
pub(super) const COMPRESSED: u8 = 0x01;

/// The one enveloped message of a server-streaming request.
pub(super) fn single_envelope(
    mut bytes: Bytes,
    gzipped: bool,
    limit: usize,
) -> Result<Bytes, Status> {
    let invalid = |what: &str| Status::invalid_argument(format!("request envelope: {what}"));
    if bytes.len() < 5 {
        return Err(invalid("shorter than its 5-byte prefix"));
    }
    let flags = bytes.get_u8();
    let len = bytes.get_u32() as usize;
    if bytes.len() != len {
        return Err(invalid(&format!(
            "declares {len} bytes, carries {} (one message expected)",
            bytes.len()
        )));
    }
    open_envelope(flags, bytes, gzipped, limit)
}

/// A request envelope's message, inflated when its flag says so (and the stream declared
/// gzip).
pub(super) fn open_envelope(
    flags: u8,
    message: Bytes,
    gzipped: bool,
    limit: usize,
) -> Result<Bytes, Status> {
    match flags {
        0 => Ok(message),
        COMPRESSED if gzipped => compression::gunzip(&message, limit),
        COMPRESSED => Err(Status::invalid_argument(
            "request envelope: compressed, but connect-content-encoding names no compression",
        )),
        other => Err(Status::invalid_argument(format!(
            "request envelope: unexpected flags {other:#04x}"
        ))),
    }
}

/// A message in gRPC's length-prefixed framing.
pub(super) fn frame(message: &[u8]) -> Bytes {
    envelope(0, message)
}

pub(super) fn envelope(flags: u8, message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(flags);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// Takes one complete length-prefixed message off the front of `buf`, if there is one.
pub(super) fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, Status> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 0 {
        return Err(Status::internal(
            "the gRPC answer was compressed or malformed",
        ));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some(buf.split_to(len).freeze()))
}
