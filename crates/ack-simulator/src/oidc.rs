//! STS AssumeRoleWithOIDC: unsigned; the OIDC token is the proof. Tokens are registered with
//! `Simulator::add_oidc_token`, standing in for the OIDC provider's signature check.

use super::handlers::{self, Answer};
use super::{ApiError, Request, SimSettings};

pub fn assume_role_with_oidc(
    s: &SimSettings,
    params: &[(String, String)],
    request_id: &str,
) -> Answer {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let token = get("OIDCToken").ok_or_else(|| {
        ApiError::new(
            400,
            "MissingOIDCToken",
            "OIDCToken is mandatory for this action.",
        )
    })?;
    let provider = get("OIDCProviderArn").ok_or_else(|| {
        ApiError::new(
            400,
            "MissingOIDCProviderArn",
            "OIDCProviderArn is mandatory for this action.",
        )
    })?;
    let (registered_provider, account) = s
        .oidc_tokens
        .lock()
        .expect("oidc lock")
        .get(token)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                400,
                "AuthenticationFail.OIDCToken.Invalid",
                "The OIDC token is invalid.",
            )
        })?;
    if registered_provider != provider {
        return Err(ApiError::new(
            400,
            "AuthenticationFail.OIDCToken.IssuerMismatch",
            "The OIDC token was not issued by this provider.",
        ));
    }
    let request = Request {
        request_id: request_id.to_string(),
        account,
        path_params: Default::default(),
        query: params.to_vec(),
        body: Default::default(),
    };
    handlers::assume_role(&request, s)
}
