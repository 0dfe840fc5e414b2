//! ExplainCall: a call taken through the request path up to signing — authorization, profile,
//! region, mapping, a credential, the signature — and answered instead of sent.

use super::policy::message_of;
use super::{CallContext, Front, Gateway, Path};
use crate::error::GatewayError;
use crate::table::{Operation, Style};
use crate::translate::{self, InvalidField};
use prost_reflect::DynamicMessage;

/// What replaces a secret value in an explained request.
pub const REDACTED: &str = "<redacted>";

/// The request a call would send, with its secret values redacted.
#[derive(Debug, Clone)]
pub struct Explained {
    pub method: String,
    pub url: String,
    /// Sorted by name.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `v1`, `v3` or `rpc`.
    pub signature_version: &'static str,
    pub canonical_request: String,
    pub string_to_sign: String,
    pub region: String,
}

impl Gateway {
    /// The request `op` would send for `request` (JSON, proto field names), signed as a real
    /// call would be, with nothing sent upstream. The caller needs the right to call `op`.
    pub async fn explain(
        &self,
        op: &Operation,
        ctx: &CallContext,
        request: serde_json::Value,
    ) -> Result<Explained, GatewayError> {
        let Front {
            service,
            profile,
            region,
        } = self.front(op, ctx, Path::Explain)?;
        let msg = DynamicMessage::deserialize(message_of(service, op, "Request")?, request)
            .map_err(|e| InvalidField::new("request", e.to_string()))?;
        let call = translate::build_call(op, &msg, &self.limits)?;
        let credential = profile.credential(self.request_timeout).await?;
        let key = &credential.key;
        let signed = self.sign(op, service, &call, &profile, &region, key)?;

        let token = key.security_token().map(|t| t.expose().to_string());
        let redact_token = |text: &str| match &token {
            Some(t) if !t.is_empty() => text.replace(t.as_str(), REDACTED),
            _ => text.to_string(),
        };
        let mut headers: Vec<(String, String)> = signed
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                let value = match name.as_str() {
                    "authorization" => redact_signature(&value),
                    "x-acs-security-token" => REDACTED.to_string(),
                    _ => value,
                };
                (name.as_str().to_string(), value)
            })
            .collect();
        headers.sort();
        let (signature_version, canonical_request, string_to_sign) = match &signed.signed_over {
            Some(over) => (
                over.version.as_str(),
                over.canonical_request
                    .as_ref()
                    .map(|c| redact_token(c.expose()))
                    .unwrap_or_default(),
                redact_token(over.string_to_sign.expose()),
            ),
            None => ("rpc", String::new(), String::new()),
        };
        let url = match op.style {
            Style::Rpc => redact_query(&signed.url, &["Signature", "SecurityToken"]),
            Style::Roa => signed.url.clone(),
        };
        Ok(Explained {
            method: signed.method.to_string(),
            url,
            headers,
            body: signed
                .body
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            signature_version,
            canonical_request,
            string_to_sign,
            region,
        })
    }
}

/// An `Authorization` value without its signature: `acs AK:<redacted>` (V1) or
/// `…,Signature=<redacted>` (V3).
fn redact_signature(value: &str) -> String {
    if let Some(i) = value.find("Signature=") {
        return format!("{}Signature={REDACTED}", &value[..i]);
    }
    match value.rsplit_once(':') {
        Some((head, _)) => format!("{head}:{REDACTED}"),
        None => REDACTED.to_string(),
    }
}

/// A URL with the values of the named query parameters redacted.
fn redact_query(url: &str, names: &[&str]) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if names.contains(&k) => format!("{k}={REDACTED}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_tokens_are_redacted() {
        assert_eq!(
            redact_signature("acs LTAIid:c2lnbmF0dXJl"),
            "acs LTAIid:<redacted>"
        );
        assert_eq!(
            redact_signature(
                "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host;x-acs-date,Signature=abcdef"
            ),
            "ACS3-HMAC-SHA256 Credential=id,SignedHeaders=host;x-acs-date,Signature=<redacted>"
        );
        assert_eq!(
            redact_query(
                "https://sts.aliyuncs.com/?Action=AssumeRole&Signature=abc%3D&SecurityToken=tok&X=1",
                &["Signature", "SecurityToken"]
            ),
            "https://sts.aliyuncs.com/?Action=AssumeRole&Signature=<redacted>&SecurityToken=<redacted>&X=1"
        );
        assert_eq!(redact_query("https://h/x", &["Signature"]), "https://h/x");
    }
}
