//! What a configuration resolves to, for people (`ack-gateway check-config`): listeners,
//! endpoints, profiles, callers and limits.
//!
//! Invariant: never a secret. Profiles show their type, region and key id, never the secret or
//! token; callers show how many token hashes they have, never the hashes (a hash of a short
//! token can be brute-forced); endpoint URLs lose any password.

use super::access::AuthMode;
use super::{Config, CredentialConfig, SimulatorMode};
use std::fmt::{self, Display, Formatter};
use std::time::Duration;

/// Displays a configuration without its secrets.
pub struct Summary<'a>(pub &'a Config);

impl Config {
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

impl Display for Summary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if let Some(file) = &c.source_file {
            writeln!(f, "configuration: {} (valid)", file.display())?;
        }
        writeln!(f, "listen:")?;
        writeln!(f, "  grpc: {}", c.listen)?;
        writeln!(
            f,
            "  admin: {} (/metrics, /healthz, /readyz)",
            c.admin_listen
        )?;
        match c.broker.listen {
            Some(addr) => writeln!(f, "  broker: {addr} (/v1/credentials/{{profile}})")?,
            None => writeln!(f, "  broker: off")?,
        }
        let mode = match c.auth.mode {
            AuthMode::Auto => "auto",
            AuthMode::Enforce => "enforce",
            AuthMode::InsecureLocal => "insecure_local",
        };
        writeln!(
            f,
            "auth: mode {mode}{}",
            if c.insecure_local() {
                " (insecure local: AUTHENTICATION IS OFF, every call is caller `local`, allowed everything)"
            } else {
                ""
            }
        )?;
        match &c.auth.tls {
            Some(tls) => {
                write!(
                    f,
                    "  tls: cert {}, key {}",
                    tls.cert_file.display(),
                    tls.key_file.display()
                )?;
                match &tls.client_ca_file {
                    Some(ca) => writeln!(f, ", client CA {} (mutual TLS)", ca.display())?,
                    None => writeln!(f)?,
                }
            }
            None => writeln!(f, "  tls: off")?,
        }
        let simulator = match c.simulator.mode {
            SimulatorMode::Auto => "auto",
            SimulatorMode::Always => "always",
            SimulatorMode::Never => "never",
        };
        writeln!(
            f,
            "simulator: {simulator}{}",
            if c.wants_simulator() {
                " (the embedded simulator will serve the default profile)"
            } else {
                ""
            }
        )?;

        writeln!(f, "endpoints:")?;
        let table = crate::table::builtin();
        for (key, info) in &table.table.services {
            match c.endpoints.get(key) {
                Some(url) => {
                    let mut shown = url.clone();
                    if shown.password().is_some() {
                        let _ = shown.set_password(Some("redacted"));
                    }
                    writeln!(f, "  {key}: {shown}")?;
                }
                None => writeln!(f, "  {key}: https://{} (default)", info.endpoint)?,
            }
        }
        writeln!(
            f,
            "upstream: connect timeout {}, request timeout {}, answers up to {} bytes",
            secs(c.upstream.connect_timeout),
            secs(c.upstream.request_timeout),
            c.upstream.max_response_bytes
        )?;
        match &c.upstream.ca {
            Some(ca) => writeln!(
                f,
                "  trusted CAs: built-in roots + {} from {}",
                ca.certs.len(),
                ca.path.display()
            )?,
            None => writeln!(f, "  trusted CAs: built-in roots")?,
        }

        writeln!(f, "profiles:")?;
        if c.profiles.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for p in c.profiles.values() {
            write!(f, "  {}: ", p.name)?;
            match &p.credential {
                CredentialConfig::AccessKey { access_key_id, .. } => {
                    write!(f, "access_key, key id {access_key_id}, secret set")?
                }
                CredentialConfig::Sts {
                    access_key_id,
                    expiration,
                    ..
                } => {
                    write!(
                        f,
                        "sts, key id {access_key_id}, secret and token set, expires {}",
                        expiration.map_or("(not given)".into(), rfc3339)
                    )?;
                }
                CredentialConfig::RamRoleArn(role) => write!(
                    f,
                    "ram_role_arn, role {}, signed by profile `{}`, session {}, duration {}, refresh {} before expiry{}{}",
                    role.role_arn,
                    role.source_profile,
                    role.role_session_name,
                    secs(role.duration),
                    secs(role.refresh_before),
                    if role.policy.is_some() { ", session policy set" } else { "" },
                    if role.external_id.is_some() { ", external id set" } else { "" },
                )?,
                CredentialConfig::OidcRoleArn {
                    role,
                    oidc_provider_arn,
                    oidc_token_file,
                } => write!(
                    f,
                    "oidc_role_arn, role {}, provider {}, token file {}, session {}, duration {}, refresh {} before expiry{}",
                    role.role_arn,
                    oidc_provider_arn,
                    oidc_token_file.display(),
                    role.role_session_name,
                    secs(role.duration),
                    secs(role.refresh_before),
                    if role.policy.is_some() { ", session policy set" } else { "" },
                )?,
            }
            write!(
                f,
                ", region {}",
                p.region
                    .as_deref()
                    .unwrap_or("(none: calls must send x-ack-region)")
            )?;
            if !p.acs_headers.is_empty() {
                let names: Vec<&str> = p.acs_headers.keys().map(String::as_str).collect();
                write!(f, ", headers {}", names.join(", "))?;
            }
            if let Some(when) = p.when_busy {
                let word = match when {
                    super::writes::WhenBusy::Wait => "wait",
                    super::writes::WhenBusy::Fail => "fail",
                };
                write!(f, ", writes to a busy cluster: {word}")?;
            }
            writeln!(f)?;
        }

        match c.http.compress_min_bytes {
            Some(min) => writeln!(
                f,
                "compression: gzip for clients that accept it, messages of {min} bytes or more"
            )?,
            None => writeln!(
                f,
                "compression: off (compressed requests are still accepted)"
            )?,
        }
        writeln!(f, "callers:")?;
        if c.callers.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for caller in c.callers.values() {
            let mut how = Vec::new();
            if !caller.token_sha256.is_empty() {
                how.push(format!(
                    "{} bearer token hash(es) (elided)",
                    caller.token_sha256.len()
                ));
            }
            if !caller.tls_names.is_empty() {
                how.push(format!(
                    "client certificate {}",
                    caller.tls_names.join(", ")
                ));
            }
            writeln!(
                f,
                "  {}: {}; profiles {}; operations {}; broker {}",
                caller.name,
                how.join(", "),
                list(&caller.profiles),
                list(&caller.operations),
                list(&caller.broker)
            )?;
            if !caller.secret_operations.is_empty() {
                writeln!(
                    f,
                    "    secret_operations {}",
                    list(&caller.secret_operations)
                )?;
            }
            // What the grants reach, from the operation table: secret-bearing operations by
            // name, so a wildcard that reaches one is seen.
            let (mut reads, mut writes, mut secret) = (0, 0, Vec::new());
            for op in table.operations() {
                if !caller.grants(&op.name, op.policy.secrets) {
                    continue;
                }
                if op.policy.secrets {
                    secret.push(op.name.as_str());
                } else if op.policy.read {
                    reads += 1;
                } else {
                    writes += 1;
                }
            }
            writeln!(
                f,
                "    reaches {} of {} operations: {reads} reads, {writes} writes, {} whose answers carry secrets{}{}",
                reads + writes + secret.len(),
                table.operations().count(),
                secret.len(),
                if secret.is_empty() { "" } else { ": " },
                secret.join(", ")
            )?;
        }

        let t = &c.traffic;
        writeln!(
            f,
            "limits: {} concurrent calls, {} upstream requests in flight per host, requests up to {} bytes",
            t.max_concurrent_calls, t.max_inflight_per_host, c.limits.max_request_bytes
        )?;
        let r = &c.limits.request;
        writeln!(
            f,
            "request limits: path values {} bytes, query values {} bytes, URL {} bytes, headers {} bytes, {} items per list or map, {} levels of nesting",
            r.max_path_param_bytes,
            r.max_query_value_bytes,
            r.max_url_bytes,
            r.max_header_bytes,
            r.max_repeated_items,
            r.max_json_depth
        )?;
        let (h, g) = (&c.limits.http, &c.limits.grpc);
        writeln!(
            f,
            "connection limits: HTTP listeners {} connections each, request heads within {}; gRPC {} connections ({} per peer address), handshakes within {}, request bodies within {} (+1 s per {} bytes), idle connections closed after {}, {} streams per connection, headers up to {} bytes, keepalive {} (timeout {}), connection age {}",
            h.max_connections,
            secs(h.header_read_timeout),
            g.max_connections,
            g.max_connections_per_peer,
            secs(g.handshake_timeout),
            secs(g.request_body_timeout),
            g.request_body_min_rate,
            g.max_connection_idle.map_or("never".to_string(), secs),
            g.max_concurrent_streams,
            g.max_header_list_bytes,
            secs(g.keepalive_interval),
            secs(g.keepalive_timeout),
            g.max_connection_age.map_or("unlimited".to_string(), secs)
        )?;
        writeln!(
            f,
            "cache: up to {} bytes{}",
            t.cache_max_bytes,
            t.cache_ttl
                .map(|ttl| format!(", every TTL {}", secs(ttl)))
                .unwrap_or_default()
        )?;
        let rate = |r: Option<super::traffic::Rate>| {
            r.map_or("unlimited".to_string(), |r| {
                format!("{}/s (burst {})", r.per_second, r.burst)
            })
        };
        writeln!(
            f,
            "rate limits: caller {}, upstream per account and operation {}, longest wait {}",
            rate(t.caller_rate),
            rate(t.upstream_rate),
            secs(t.max_wait)
        )?;
        writeln!(
            f,
            "retries: {} attempts, backoff {} to {}",
            t.max_attempts,
            secs(t.retry_base),
            secs(t.retry_max_backoff)
        )
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
