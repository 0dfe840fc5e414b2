//! Calls of the gateway's own services (the watchers' polls, the write path's outcome checks):
//! a typed request in, a typed answer out, through the same path as a caller's call.

use super::policy::message_of;
use super::{CallContext, Gateway};
use crate::error::GatewayError;
use crate::table::{Operation, ServiceInfo};
use bytes::Bytes;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use std::sync::Arc;

impl Gateway {
    /// The empty request message of `service_key`'s `operation`, for the gateway's own services
    /// to fill (once per poller) and pass to [`Gateway::call_message`].
    pub fn request_message(
        &self,
        service_key: &str,
        operation: &str,
    ) -> Result<DynamicMessage, GatewayError> {
        let (service, op) = self.own_call(service_key, operation)?;
        Ok(DynamicMessage::new(message_of(service, op, "Request")?))
    }

    /// Calls an operation with a typed request and returns its typed answer: the unary path
    /// (`unary`), for the gateway's own services (the watchers' polls, the write path's outcome
    /// checks), so they share authorization, caching and rate limits. The request enters, and
    /// the answer leaves, in the wire form that path and the cache hold.
    pub async fn call_message(
        self: &Arc<Self>,
        service_key: &str,
        operation: &str,
        ctx: &CallContext,
        request: &DynamicMessage,
    ) -> Result<(DynamicMessage, Option<String>), GatewayError> {
        let (service, op) = self.own_call(service_key, operation)?;
        let reply = self
            .unary(op, ctx, Bytes::from(request.encode_to_vec()))
            .await?;
        let answer = DynamicMessage::decode(message_of(service, op, "Response")?, reply.message)
            .map_err(|e| GatewayError::Internal(format!("re-decoding {operation}: {e}")))?;
        Ok((answer, reply.request_id))
    }

    /// The service and operation a call of the gateway's own names.
    fn own_call(
        &self,
        service_key: &str,
        operation: &str,
    ) -> Result<(&ServiceInfo, &Operation), GatewayError> {
        let op = self
            .table
            .operation(service_key, operation)
            .ok_or_else(|| {
                GatewayError::Internal(format!("no operation {service_key}.{operation}"))
            })?;
        let service = self
            .table
            .service(service_key)
            .ok_or_else(|| GatewayError::Internal(format!("no service {service_key}")))?;
        Ok((service, op))
    }
}
