//! gRPC metadata: `grpc-timeout` (`server::parse_grpc_timeout`), `cache-control`
//! (`cache::Freshness::parse`), the `x-ack-*` keys (`server::call_context`) and
//! `authorization` (`access::Access::authenticate`).
//!
//! Input: metadata entries (keys from the ones the gateway reads, values any bytes a header
//! may hold), then client-certificate names. Properties: no panic; `parse_grpc_timeout`
//! accepts exactly the gRPC grammar (1 to 8 ASCII digits and a unit of `H M S m u n`) and
//! computes its duration; `no-cache`/`no-store` always win in `cache-control`, and a `max-age`
//! is at least a second; a call context carries the metadata's values (or fails naming the
//! key whose value is not text, or whose profile name is outside its alphabet); a bearer token authenticates exactly its caller.

use super::inputs::{short_bytes, short_text};
use super::Unstructured;
use ack_gateway::access::{token_hash, Access, LocalAccess};
use ack_gateway::cache::Freshness;
use ack_gateway::config::access::CallerConfig;
use ack_gateway::server::{call_context, parse_grpc_timeout};
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

const KEYS: &[&str] = &[
    "x-ack-profile",
    "x-ack-region",
    "grpc-timeout",
    "cache-control",
    "authorization",
    "x-ack-other",
];

const VALUES: &[&str] = &[
    "1S",
    "99999999H",
    "100000000S",
    "0n",
    "5m",
    "no-cache",
    "max-age=0",
    "max-age=30, no-store",
    "Bearer ci-token-0123456789",
    "bearer  ci-token-0123456789 ",
    "default",
    "cn-beijing",
];

const TOKEN: &str = "ci-token-0123456789";
const CALLER: &str = "ci";
const TLS_NAME: &str = "client.example";

/// The gRPC grammar of `grpc-timeout`, written out another way (bytes, nanoseconds in a
/// `u128`) than the gateway's parser, as the oracle it is checked against.
pub fn grpc_timeout_reference(v: &str) -> Option<Duration> {
    let (unit, digits) = v.as_bytes().split_last()?;
    if !(1..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u128, |n, d| n * 10 + u128::from(d - b'0'));
    let nanos_per_unit: u128 = match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    let nanos = n * nanos_per_unit;
    Some(Duration::new(
        u64::try_from(nanos / 1_000_000_000).ok()?,
        (nanos % 1_000_000_000) as u32,
    ))
}

fn access() -> Access {
    let caller = CallerConfig {
        name: CALLER.to_string(),
        token_sha256: vec![token_hash(TOKEN)],
        tls_names: vec![TLS_NAME.to_string()],
        profiles: vec!["*".to_string()],
        operations: vec!["*".to_string()],
        secret_operations: Vec::new(),
        broker: Vec::new(),
        journal_all: false,
    };
    Access::new(
        &LocalAccess::Off,
        &BTreeMap::from([(CALLER.to_string(), caller)]),
    )
}

pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = check_unstructured(&mut u);
}

fn check_unstructured(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let mut md = MetadataMap::new();
    let mut given: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for _ in 0..u.arbitrary::<u8>()? % 6 {
        let key = KEYS[usize::from(u.arbitrary::<u8>()?) % KEYS.len()];
        let value: &[u8] = match u.arbitrary::<u8>()? {
            0 => VALUES[usize::from(u.arbitrary::<u8>()?) % VALUES.len()].as_bytes(),
            _ => short_bytes(u)?,
        };
        if let Ok(v) = MetadataValue::try_from(value) {
            md.insert(MetadataKey::from_static(key), v);
            given.insert(key, value.to_vec());
        }
    }
    let text = |key: &str| given.get(key).map(|v| std::str::from_utf8(v).ok());

    match call_context(&md) {
        Ok(ctx) => {
            let as_text = |key: &str| text(key).map(|v| v.expect("text").to_string());
            assert_eq!(
                Some(ctx.profile),
                as_text("x-ack-profile").or(Some("default".to_string()))
            );
            assert_eq!(ctx.region, as_text("x-ack-region"));
            assert_eq!(
                ctx.deadline,
                as_text("grpc-timeout").and_then(|v| parse_grpc_timeout(&v))
            );
            assert_eq!(
                ctx.cache_control,
                as_text("cache-control").map_or(Freshness::Any, |v| Freshness::parse(&v))
            );
        }
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            let key = status
                .message()
                .split(':')
                .next()
                .expect("a key first")
                .to_string();
            assert!(KEYS.contains(&key.as_str()), "{}", status.message());
            // Metadata text is visible ASCII (and spaces): other bytes are refused; a profile
            // name is 1 to 64 letters, digits, `-`, `_` and `.`.
            let value = &given[key.as_str()];
            let allowed = |b: &u8| match key.as_str() {
                "x-ack-profile" => b.is_ascii_alphanumeric() || b"-_.".contains(b),
                _ => (0x20..0x7f).contains(b) || *b == b'\t',
            };
            let profile_len_ok = key != "x-ack-profile" || (1..=64).contains(&value.len());
            assert!(
                !(value.iter().all(allowed) && profile_len_ok),
                "{key}: {value:?} refused"
            );
        }
    }

    for value in given
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
    {
        check_text(&value);
    }
    let free = short_text(u)?;
    check_text(&free);

    let mut names = Vec::new();
    for _ in 0..u.arbitrary::<u8>()? % 3 {
        names.push(if u.arbitrary::<u8>()? == 0 {
            TLS_NAME.to_string()
        } else {
            short_text(u)?
        });
    }
    let access = access();
    let authorization = text("authorization").flatten();
    match access.authenticate(authorization, &names) {
        Ok(caller) => {
            assert_eq!(caller, CALLER);
            match authorization {
                Some(v) => {
                    let token = v
                        .strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                        .expect("a bearer value");
                    assert_eq!(token.trim(), TOKEN);
                }
                None => assert!(names.iter().any(|n| n == TLS_NAME)),
            }
        }
        Err(e) => {
            let known_name = authorization.is_none() && names.iter().any(|n| n == TLS_NAME);
            assert!(!known_name, "{e}");
            // A presented bearer token is never quoted. (A refused client certificate's names
            // are: they are the caller's own, and any text may be a name.)
            if authorization.is_some() {
                assert!(!e.to_string().contains(TOKEN), "{e}");
            }
        }
    }
    Ok(())
}

/// One metadata value: the timeout grammar, and cache-control.
fn check_text(value: &str) {
    assert_eq!(
        parse_grpc_timeout(value),
        grpc_timeout_reference(value),
        "grpc-timeout `{value}`"
    );
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    let no_cache = parts
        .iter()
        .any(|p| p.eq_ignore_ascii_case("no-cache") || p.eq_ignore_ascii_case("no-store"));
    match Freshness::parse(value) {
        Freshness::NoCache => {}
        _ if no_cache => panic!("`{value}` asks for no cache"),
        Freshness::MaxAge(age) => assert!(age >= Duration::from_secs(1)),
        Freshness::Any => {}
    }
}

/// Each listed value under each key, and a full set.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for k in 0..KEYS.len() as u8 {
        for v in 0..VALUES.len() as u8 {
            out.push(vec![1, k, 0, v, 0, 0]);
        }
    }
    out.push(vec![4, 0, 0, 10, 1, 0, 11, 2, 0, 0, 4, 0, 8, 0, 1, 0]);
    out
}
