//! What the write path reads from a request: its fingerprint (the operation and its fields as
//! sorted JSON), its JSON for outcome checks, and the client token a key sets.

use crate::error::GatewayError;
use crate::table::Operation;
use crate::writes::keys::KeyScope;
use prost_reflect::{DynamicMessage, Value};

/// The name of an operation's outcome check read.
pub(super) fn check_name(op: &Operation) -> String {
    op.policy
        .outcome_check
        .as_ref()
        .map_or_else(String::new, |c| c.read.clone())
}

/// The request as JSON (proto field names, keys sorted): what fingerprints and checks read.
pub(super) fn json_of(msg: &DynamicMessage) -> Result<serde_json::Value, GatewayError> {
    super::super::policy::message_json(msg, "a request")
}

/// The request's fingerprint: the operation and the request's fields (as sorted JSON, so two
/// encodings of the same message agree).
pub(super) fn fingerprint(op: &Operation, msg: &DynamicMessage) -> String {
    let json = json_of(msg).map(|v| v.to_string()).unwrap_or_default();
    crate::shared::digest(&[&op.service, &op.name, &json])
}

/// Sets the request's client token from the key, unless the caller set one: the same key
/// (caller, profile, key) gives the same token, so the cloud drops a resend.
pub(super) fn set_client_token(msg: &mut DynamicMessage, field: &str, scope: &KeyScope) {
    let set = msg
        .get_field_by_name(field)
        .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    if !set {
        let token = format!(
            "ackgw-{}",
            crate::shared::digest(&[&scope.caller, &scope.profile, &scope.key])
        );
        msg.set_field_by_name(field, Value::String(token));
    }
}
