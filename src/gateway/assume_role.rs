//! A direct STS `AssumeRole` through the gateway hands its caller a credential, so it is held
//! to the broker's rules: the role must be one the caller may broker (a `ram_role_arn` profile
//! of that role, signed by the profile the call uses, listed in the caller's `broker`), and the
//! duration at most `[broker] max_duration`. Anything else is refused before it is sent; a
//! request is never altered to fit.

use super::Snapshot;
use crate::access::AccessError;
use crate::error::GatewayError;
use crate::translate::InvalidField;
use prost_reflect::{DynamicMessage, Value};

/// The duration STS gives a credential when the request names none.
const STS_DEFAULT_SECONDS: u64 = 3600;

/// Whether `caller` may send `request` (an `AssumeRoleRequest`) with `profile`'s credential.
pub(super) fn authorize(
    snapshot: &Snapshot,
    caller: &str,
    profile: &str,
    request: &DynamicMessage,
) -> Result<(), GatewayError> {
    let access = &snapshot.access;
    if access.insecure_local() {
        return Ok(());
    }
    let field = |name: &str| request.get_field_by_name(name).map(|v| v.into_owned());
    let role_arn = match field("role_arn") {
        Some(Value::String(arn)) if !arn.is_empty() => arn,
        _ => return Err(InvalidField::new("role_arn", "is required").into()),
    };
    // A role the caller could obtain from the broker: same role, same signer.
    let brokerable = snapshot.vault.role_profiles().any(|(name, role)| {
        role.role_arn == role_arn
            && role.source_profile == profile
            && access.authorize_broker(caller, name).is_ok()
    });
    if !brokerable {
        return Err(AccessError::AssumeRoleDenied {
            caller: caller.to_string(),
            profile: profile.to_string(),
            role_arn,
        }
        .into());
    }
    let max = access.broker_max_duration().as_secs();
    // An unset field reads as its default (0): only a set one is the request's duration.
    let seconds = match field("duration_seconds") {
        Some(Value::I64(s)) if request.has_field_by_name("duration_seconds") => {
            u64::try_from(s).unwrap_or(0)
        }
        _ => STS_DEFAULT_SECONDS,
    };
    if seconds > max {
        return Err(InvalidField::new(
            "duration_seconds",
            format!(
                "{seconds} s is longer than this gateway's [broker] max_duration ({max} s){}",
                if request.has_field_by_name("duration_seconds") {
                    ""
                } else {
                    " (unset, STS gives 3600 s): set duration_seconds"
                }
            ),
        )
        .into());
    }
    Ok(())
}
