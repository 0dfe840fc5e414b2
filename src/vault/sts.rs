//! The vault's STS client: AssumeRole (RPC-signed with a source credential) and
//! AssumeRoleWithOIDC (unsigned; the OIDC token is the proof), over the gateway's upstream.

use crate::error::UpstreamError;
use crate::secret::Secret;
use crate::signer::SigningKey;
use crate::table::OperationTable;
use crate::translate::HttpCall;
use crate::upstream::prepare;
use crate::upstream::{self, SignedRequest, Upstream};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// How long one STS call may take.
const STS_TIMEOUT: Duration = Duration::from_secs(10);
const STS_VERSION: &str = "2015-04-01";
/// Region used for the STS endpoint when a profile names none.
const DEFAULT_STS_REGION: &str = "cn-hangzhou";

/// A temporary credential from STS.
#[derive(Debug, Clone)]
pub struct IssuedTriple {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Secret,
    pub expiration: OffsetDateTime,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StsError {
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("STS answered without usable credentials: {0}")]
    BadAnswer(String),
    #[error("cannot read the OIDC token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// What to ask STS for.
#[derive(Debug, Clone)]
pub struct AssumeRequest<'a> {
    pub role_arn: &'a str,
    pub role_session_name: &'a str,
    pub duration: Duration,
    pub policy: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub region: Option<&'a str>,
}

#[derive(Clone)]
pub struct StsClient {
    upstream: Upstream,
    table: Arc<OperationTable>,
}

impl std::fmt::Debug for StsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StsClient")
    }
}

// === impl StsClient ===

impl StsClient {
    pub fn new(upstream: Upstream, table: Arc<OperationTable>) -> Self {
        StsClient { upstream, table }
    }

    fn base(&self, region: Option<&str>) -> Result<String, StsError> {
        let info = self
            .table
            .service("sts")
            .ok_or_else(|| StsError::Other("the table has no STS service".into()))?;
        Ok(self
            .upstream
            .base_url("sts", info, region.unwrap_or(DEFAULT_STS_REGION)))
    }

    fn params(req: &AssumeRequest<'_>) -> Vec<(String, String)> {
        let mut p = vec![
            ("RoleArn".to_string(), req.role_arn.to_string()),
            (
                "RoleSessionName".to_string(),
                req.role_session_name.to_string(),
            ),
            (
                "DurationSeconds".to_string(),
                req.duration.as_secs().to_string(),
            ),
        ];
        if let Some(policy) = req.policy {
            p.push(("Policy".to_string(), policy.to_string()));
        }
        if let Some(id) = req.external_id {
            p.push(("ExternalId".to_string(), id.to_string()));
        }
        p
    }

    /// STS AssumeRole, signed with `source`.
    pub async fn assume_role(
        &self,
        source: &SigningKey,
        req: &AssumeRequest<'_>,
    ) -> Result<IssuedTriple, StsError> {
        let op = self
            .table
            .operation("sts", "AssumeRole")
            .ok_or_else(|| StsError::Other("the table has no AssumeRole".into()))?;
        let call = HttpCall {
            method: op.method.clone(),
            encoded_path: "/".into(),
            decoded_path: "/".into(),
            query: Self::params(req),
            body: None,
        };
        let base = self.base(req.region)?;
        let signed = prepare::rpc(
            &base,
            op,
            &call,
            STS_VERSION,
            req.region.unwrap_or(DEFAULT_STS_REGION),
            source,
            self.upstream.clock().now(),
        )
        .map_err(|e| StsError::Other(e.to_string()))?;
        let secrets = [source.access_key_secret().expose()];
        self.send(signed, &secrets).await
    }

    /// STS AssumeRoleWithOIDC: the token file is read at every call (it is rotated).
    pub async fn assume_role_with_oidc(
        &self,
        provider_arn: &str,
        token_file: &std::path::Path,
        req: &AssumeRequest<'_>,
    ) -> Result<IssuedTriple, StsError> {
        let token =
            tokio::fs::read_to_string(token_file)
                .await
                .map_err(|e| StsError::TokenFile {
                    path: token_file.display().to_string(),
                    reason: e.to_string(),
                })?;
        let token = Secret::new(token.trim());
        let timestamp = OffsetDateTime::now_utc()
            .format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .expect("timestamps always format");
        let mut params = vec![
            ("Action".to_string(), "AssumeRoleWithOIDC".to_string()),
            ("Version".to_string(), STS_VERSION.to_string()),
            ("Format".to_string(), "JSON".to_string()),
            ("Timestamp".to_string(), timestamp),
            ("SignatureNonce".to_string(), crate::signer::new_nonce()),
            ("OIDCProviderArn".to_string(), provider_arn.to_string()),
            ("OIDCToken".to_string(), token.expose().to_string()),
        ];
        params.extend(Self::params(req));
        let base = self.base(req.region)?;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let host = url::Url::parse(&base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        // The token travels in the body, never in the URL.
        let signed = SignedRequest {
            method: http::Method::POST,
            url: format!("{base}/"),
            host,
            headers,
            body: Some(upstream::encode_query(&params).into_bytes()),
            signed_over: None,
        };
        self.send(signed, &[token.expose()]).await
    }

    async fn send(
        &self,
        signed: SignedRequest,
        secrets: &[&str],
    ) -> Result<IssuedTriple, StsError> {
        let host = signed.host.clone();
        let resp = self.upstream.send(signed, STS_TIMEOUT).await?;
        if !(200..300).contains(&resp.status) {
            return Err(upstream::api_error(&host, &resp, secrets).into());
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|e| StsError::BadAnswer(format!("not JSON: {e}")))?;
        let c = &v["Credentials"];
        let text = |k: &str| {
            c[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| StsError::BadAnswer(format!("Credentials.{k} is missing")))
        };
        let expiration = OffsetDateTime::parse(
            &text("Expiration")?,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|e| StsError::BadAnswer(format!("Credentials.Expiration: {e}")))?;
        Ok(IssuedTriple {
            access_key_id: text("AccessKeyId")?,
            access_key_secret: Secret::new(text("AccessKeySecret")?),
            security_token: Secret::new(text("SecurityToken")?),
            expiration,
        })
    }
}
