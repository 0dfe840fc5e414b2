//! The `ackgateway.v1.Explain` gRPC service: authenticates the caller as unary calls do, finds
//! the operation, and answers `Gateway::explain`.

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::proto::gateway::explain_service_server::{ExplainService, ExplainServiceServer};
use crate::proto::gateway::{ExplainCallRequest, ExplainCallResponse, HttpHeader};
use crate::table::Operation;
use crate::translate::InvalidField;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub const SERVICE_NAME: &str = "ackgateway.v1.ExplainService";

pub struct ExplainApi {
    gateway: Arc<Gateway>,
}

impl ExplainApi {
    pub fn server(gateway: Arc<Gateway>) -> ExplainServiceServer<ExplainApi> {
        ExplainServiceServer::new(ExplainApi { gateway })
    }

    /// The operation named, in the service named (its gRPC name or its key) or, when none is,
    /// in the one service that has it.
    fn operation(&self, service: &str, name: &str) -> Result<&Operation, GatewayError> {
        let table = self.gateway.table();
        let keys: Vec<&String> = table
            .table
            .services
            .keys()
            .filter(|key| {
                service.is_empty()
                    || key.as_str() == service
                    || table.grpc_service_name(key).as_deref() == Some(service)
            })
            .collect();
        if keys.is_empty() {
            return Err(InvalidField::new("service", format!("no service `{service}`")).into());
        }
        let found: Vec<&Operation> = keys
            .into_iter()
            .filter_map(|key| table.operation(key, name))
            .collect();
        match found.as_slice() {
            [op] => Ok(op),
            [] => Err(InvalidField::new("operation", format!("no operation `{name}`")).into()),
            _ => Err(InvalidField::new(
                "service",
                format!("`{name}` is in several services: name one"),
            )
            .into()),
        }
    }
}

#[tonic::async_trait]
impl ExplainService for ExplainApi {
    async fn explain_call(
        &self,
        request: Request<ExplainCallRequest>,
    ) -> Result<Response<ExplainCallResponse>, Status> {
        let mut ctx = super::caller::call_context(request.metadata())?;
        ctx.caller = super::caller::authenticate(&self.gateway, &request)?;
        let r = request.into_inner();
        if !r.profile.is_empty() {
            if !crate::config::is_valid_profile_name(&r.profile) {
                return Err(GatewayError::from(crate::translate::InvalidField::new(
                    "profile",
                    crate::config::PROFILE_NAME_RULE,
                ))
                .into_status());
            }
            ctx.profile = r.profile;
        }
        if !r.region.is_empty() {
            ctx.region = Some(r.region);
        }
        let op = self
            .operation(&r.service, &r.operation)
            .map_err(GatewayError::into_status)?;
        let json = r.request.map_or_else(
            || serde_json::Value::Object(Default::default()),
            |s| crate::proto::struct_to_json(&s),
        );
        let explained = self
            .gateway
            .explain(op, &ctx, json)
            .await
            .map_err(GatewayError::into_status)?;
        tracing::info!(caller = %ctx.caller, profile = %ctx.profile, operation = %op.name, "explained a call");
        let service = self
            .gateway
            .table()
            .grpc_service_name(&op.service)
            .unwrap_or_default();
        Ok(Response::new(ExplainCallResponse {
            service,
            operation: op.name.clone(),
            method: explained.method,
            url: explained.url,
            headers: explained
                .headers
                .into_iter()
                .map(|(name, value)| HttpHeader { name, value })
                .collect(),
            body: explained.body,
            signature_version: explained.signature_version.to_string(),
            canonical_request: explained.canonical_request,
            string_to_sign: explained.string_to_sign,
            profile: ctx.profile,
            region: explained.region,
        }))
    }
}
