//! Messages between the protobuf JSON mapping and the protobuf binary encoding, by the
//! method's descriptors: what a Connect JSON call sends and receives.

use super::Codec;
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::Status;

pub(super) fn json_to_proto(desc: &MessageDescriptor, bytes: &[u8]) -> Result<Bytes, Status> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // An empty body is the empty message (`curl -X POST` without `-d`).
        return Ok(Bytes::new());
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let message = DynamicMessage::deserialize_with_options(
        desc.clone(),
        &mut de,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .and_then(|m| de.end().map(|()| m))
    .map_err(|e| Status::invalid_argument(format!("request JSON ({}): {e}", desc.full_name())))?;
    Ok(message.encode_to_vec().into())
}

pub(super) fn proto_to_json(desc: &MessageDescriptor, bytes: &[u8]) -> Result<Bytes, Status> {
    let message = DynamicMessage::decode(desc.clone(), bytes)
        .map_err(|e| Status::internal(format!("answer ({}): {e}", desc.full_name())))?;
    let mut out = Vec::with_capacity(bytes.len() * 2 + 2);
    message
        .serialize_with_options(
            &mut serde_json::Serializer::new(&mut out),
            &SerializeOptions::new(),
        )
        .map_err(|e| Status::internal(format!("answer ({}) as JSON: {e}", desc.full_name())))?;
    Ok(out.into())
}

pub(super) fn convert(
    codec: Codec,
    desc: &MessageDescriptor,
    message: Bytes,
) -> Result<Bytes, Status> {
    match codec {
        Codec::Json => proto_to_json(desc, &message),
        Codec::Proto => Ok(message),
    }
}
