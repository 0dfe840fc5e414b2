//! The signing dispatch: a mapped call signed as its operation's style (ROA or RPC) and its
//! profile's signature version say, at the upstream's estimated time.

use super::Gateway;
use crate::error::GatewayError;
use crate::table::{Operation, ServiceInfo, Style};
use crate::translate;
use crate::upstream::{self, prepare};

impl Gateway {
    /// Signs a mapped call as the operation's style and the profile's signature version say,
    /// with a fresh nonce and the upstream's estimated time.
    pub(super) fn sign(
        &self,
        op: &Operation,
        service: &ServiceInfo,
        call: &translate::HttpCall,
        profile: &crate::vault::Profile,
        region: &str,
        key: &crate::signer::SigningKey,
    ) -> Result<upstream::SignedRequest, GatewayError> {
        let base = self.upstream.base_url(&op.service, service, region);
        let now = self.upstream.clock().now();
        let signed = match op.style {
            Style::Roa => prepare::roa(
                &prepare::RoaCall {
                    base: &base,
                    prefix: &self.upstream.path_prefix(&op.service),
                    call,
                    action: &op.name,
                    version: &service.version,
                    region,
                    acs_headers: &profile.acs_headers,
                    signature: profile.signature,
                },
                key,
                now,
            ),
            Style::Rpc => prepare::rpc(
                &base,
                op,
                call,
                op.version.as_deref().unwrap_or(&service.version),
                region,
                key,
                now,
            ),
        }?;
        // What the endpoint and the signature added must fit.
        self.limits.signed(signed.url.len(), &signed.headers)?;
        Ok(signed)
    }
}
