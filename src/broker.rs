//! The credential broker: temporary STS triples for callers allowed to broker a profile, over
//! gRPC (`ackgateway.v1.CredentialBroker`) and over HTTP in the shape the official SDKs'
//! credentials-URI provider reads (`ALIBABA_CLOUD_CREDENTIALS_URI`), so a service using any
//! official SDK never holds a long-lived key.
//!
//! Both paths authenticate the caller and check `callers.NAME.broker` before issuing.

use crate::access::AccessError;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::proto::gateway::credential_broker_service_server::{
    CredentialBrokerService, CredentialBrokerServiceServer,
};
use crate::proto::gateway::{IssueCredentialRequest, IssueCredentialResponse};
use crate::vault::{rfc3339, Profile, Triple};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use time::OffsetDateTime;
use tonic::{Request, Status};

/// Shortest lifetime STS issues.
const MIN_DURATION: Duration = Duration::from_secs(900);

/// A triple the HTTP endpoint handed out, and the vault profile that issued it.
type Issued = (Triple, Weak<Profile>);

pub struct Broker {
    gateway: Arc<Gateway>,
    /// Triples handed out by the HTTP endpoint, per (caller, profile), reused until 80 % of their
    /// lifetime: credential providers poll, and each poll must not cost an AssumeRole. Each is
    /// kept with the vault profile that issued it and is reused only while the vault still
    /// holds that profile: a reload that changes the profile drops its triples.
    uri_cache: Mutex<HashMap<(String, String), Issued>>,
}

// === impl Broker ===

impl Broker {
    pub fn new(gateway: Arc<Gateway>) -> Arc<Self> {
        Arc::new(Broker {
            gateway,
            uri_cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn grpc(self: &Arc<Self>) -> CredentialBrokerServiceServer<GrpcBroker> {
        CredentialBrokerServiceServer::new(GrpcBroker(self.clone()))
    }

    /// Issues a triple after checking the caller may broker the profile.
    async fn issue(
        &self,
        caller: &str,
        profile: &str,
        duration: Option<Duration>,
        policy: Option<&str>,
    ) -> Result<Triple, GatewayError> {
        let snapshot = self.gateway.snapshot();
        snapshot.access.authorize_broker(caller, profile)?;
        let p = snapshot.vault.profile(profile)?;
        // `[broker] max_duration` of the configuration in force (it may change on reload).
        let max = snapshot.access.broker_max_duration();
        let duration = duration.unwrap_or(max).min(max).max(MIN_DURATION);
        let result = p.broker(duration, policy).await;
        tracing::info!(
            caller,
            profile,
            operation = "IssueCredential",
            outcome = if result.is_ok() { "ok" } else { "error" },
            "broker"
        );
        Ok(result?)
    }

    /// The HTTP router of the credentials-URI endpoint: `GET /v1/credentials/{profile}`.
    pub fn http_router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route(
                "/v1/credentials/{profile}",
                axum::routing::get(credentials_uri),
            )
            .with_state(self.clone())
    }
}

pub struct GrpcBroker(Arc<Broker>);

#[tonic::async_trait]
impl CredentialBrokerService for GrpcBroker {
    async fn issue_credential(
        &self,
        request: Request<IssueCredentialRequest>,
    ) -> Result<tonic::Response<IssueCredentialResponse>, Status> {
        let caller = crate::server::authenticate(&self.0.gateway, &request)?;
        let req = request.into_inner();
        let profile = if req.profile.is_empty() {
            crate::config::DEFAULT_PROFILE.to_string()
        } else {
            req.profile
        };
        if !crate::config::is_valid_profile_name(&profile) {
            return Err(GatewayError::from(crate::translate::InvalidField::new(
                "profile",
                crate::config::PROFILE_NAME_RULE,
            ))
            .into_status());
        }
        let duration = match req.duration_seconds {
            Some(s) if s < 900 => {
                return Err(GatewayError::from(crate::translate::InvalidField::new(
                    "duration_seconds",
                    "must be at least 900",
                ))
                .into_status())
            }
            Some(s) => Some(Duration::from_secs(s.unsigned_abs())),
            None => None,
        };
        let t = self
            .0
            .issue(&caller, &profile, duration, req.policy.as_deref())
            .await
            .map_err(GatewayError::into_status)?;
        let mut response = tonic::Response::new(IssueCredentialResponse {
            access_key_id: t.key.access_key_id().to_string(),
            access_key_secret: t.key.access_key_secret().expose().to_string(),
            security_token: t
                .key
                .security_token()
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            expiration: rfc3339(t.expiration),
        });
        // Over HTTP (gRPC-Web, Connect) no cache may keep the credential.
        response.metadata_mut().insert(
            crate::server::NO_STORE.0,
            tonic::metadata::MetadataValue::from_static(crate::server::NO_STORE.1),
        );
        Ok(response)
    }
}

/// `GET /v1/credentials/{profile}` with `Authorization: Bearer <token>` (or `?token=` for SDK
/// providers that can only be given a URL), answering the credentials-URI provider's shape.
async fn credentials_uri(
    State(broker): State<Arc<Broker>>,
    Path(profile): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: http::HeaderMap,
) -> Response {
    if !crate::config::is_valid_profile_name(&profile) {
        return error(
            http::StatusCode::BAD_REQUEST,
            "InvalidParameter",
            crate::config::PROFILE_NAME_RULE,
        );
    }
    let snapshot = broker.gateway.snapshot();
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| query.get("token").map(|t| format!("Bearer {t}")));
    let caller = match snapshot.access.authenticate(bearer.as_deref(), &[]) {
        Ok(c) => c,
        Err(e) => {
            return error(
                http::StatusCode::UNAUTHORIZED,
                "Unauthenticated",
                &e.to_string(),
            )
        }
    };
    let key = (caller.clone(), profile.clone());
    // The profile as the configuration in force has it (a reload may have replaced it).
    let current = snapshot.vault.profile(&profile).ok();
    let issued_by_current = |issuer: &Weak<Profile>| {
        current
            .as_ref()
            .is_some_and(|p| Weak::ptr_eq(issuer, &Arc::downgrade(p)))
    };
    let cached = {
        let mut cache = broker.uri_cache.lock().expect("broker cache lock");
        let fresh = cache.get(&key).filter(|(t, issuer)| {
            OffsetDateTime::now_utc() < t.issued + (t.expiration - t.issued) * 0.8
                && issued_by_current(issuer)
        });
        match fresh {
            Some((t, _)) => Some(t.clone()),
            None => {
                cache.remove(&key);
                None
            }
        }
    };
    let triple = match cached {
        Some(t) => {
            // Authorization is checked on every request, cached or not.
            if let Err(e) = snapshot.access.authorize_broker(&caller, &profile) {
                return error(http::StatusCode::FORBIDDEN, "Forbidden", &e.to_string());
            }
            t
        }
        None => match broker.issue(&caller, &profile, None, None).await {
            Ok(t) => {
                if let Some(p) = &current {
                    broker
                        .uri_cache
                        .lock()
                        .expect("broker cache lock")
                        .insert(key, (t.clone(), Arc::downgrade(p)));
                }
                t
            }
            Err(GatewayError::Access(e @ AccessError::BrokerDenied { .. })) => {
                return error(http::StatusCode::FORBIDDEN, "Forbidden", &e.to_string())
            }
            Err(e) => {
                let status = e.into_status();
                return error(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    status.message(),
                );
            }
        },
    };
    let body = axum::Json(serde_json::json!({
        "Code": "Success",
        "AccessKeyId": triple.key.access_key_id(),
        "AccessKeySecret": triple.key.access_key_secret().expose(),
        "SecurityToken": triple.key.security_token().map(|s| s.expose()).unwrap_or_default(),
        "Expiration": rfc3339(triple.expiration),
    }));
    (
        [(http::header::CACHE_CONTROL, crate::server::NO_STORE.1)],
        body,
    )
        .into_response()
}

fn error(status: http::StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"Code": code, "Message": message})),
    )
        .into_response()
}
