use super::*;
use crate::secret::Secret;
use crate::{roa, v3, SigningKey};

const TOKEN: &str = "CAIStoken-secret-value";

fn key() -> SigningKey {
    SigningKey::new("id", Secret::new("secret"), Some(Secret::new(TOKEN)))
}

fn v1(path: &str, query: &[(String, String)], extra: &[(&str, &str)]) -> String {
    let mut headers: Vec<(String, String)> = vec![
        ("accept".into(), "application/json".into()),
        ("date".into(), "Mon, 30 Nov 2026 00:00:00 GMT".into()),
        ("x-acs-security-token".into(), TOKEN.into()),
        ("x-acs-signature-nonce".into(), "n".into()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    roa::string_to_sign(&roa::RoaRequest {
        method: "GET",
        path,
        query,
        headers: &headers,
    })
}

fn quote_v1(sts: &str) -> String {
    format!("The request signature does not conform to Aliyun standards. server string to sign is:{sts}")
}

#[test]
fn the_same_string_to_sign_means_the_secret_is_wrong() {
    let sts = v1("/clusters/c1", &[], &[]);
    let ours = Signed {
        version: SignatureVersion::V1,
        string_to_sign: &sts,
        canonical_request: None,
    };
    assert_eq!(diagnose(&ours, &quote_v1(&sts)), Diagnosis::SecretMismatch);
    assert_eq!(
        diagnose(
            &ours,
            "The request signature does not conform to Aliyun standards."
        ),
        Diagnosis::Unknown
    );
}

#[test]
fn a_different_string_to_sign_names_the_first_differing_part_never_a_value() {
    let ours_text = v1(
        "/clusters/c1",
        &[("page".into(), "1".into())],
        &[("x-acs-a", "1")],
    );
    let ours = Signed {
        version: SignatureVersion::V1,
        string_to_sign: &ours_text,
        canonical_request: None,
    };
    let cases = [
        (
            v1(
                "/clusters/c2",
                &[("page".into(), "1".into())],
                &[("x-acs-a", "1")],
            ),
            "the path",
        ),
        (
            v1(
                "/clusters/c1",
                &[("page".into(), "2".into())],
                &[("x-acs-a", "1")],
            ),
            "the query parameter `page`",
        ),
        (
            v1(
                "/clusters/c1",
                &[("page".into(), "1".into())],
                &[("x-acs-a", "2")],
            ),
            "the value of the header `x-acs-a`",
        ),
        (
            v1("/clusters/c1", &[("page".into(), "1".into())], &[]),
            "the header `x-acs-a` (signed by the gateway, absent from what the server signed)",
        ),
        (
            v1(
                "/clusters/c1",
                &[("page".into(), "1".into())],
                &[("x-acs-a", "1"), ("x-acs-b", "x")],
            ),
            "the header `x-acs-b` (signed by the server, not by the gateway)",
        ),
        (ours_text.replacen("GET", "PUT", 1), "the HTTP method"),
    ];
    for (theirs, part) in cases {
        let d = diagnose(&ours, &quote_v1(&theirs));
        assert_eq!(
            d,
            Diagnosis::Canonicalization {
                part: part.to_string()
            },
            "{part}"
        );
        if let Diagnosis::Canonicalization { part } = d {
            assert!(!part.contains(TOKEN) && !part.contains("c2"), "{part}");
        }
    }
}

#[test]
fn v3_compares_canonical_requests_when_quoted() {
    let key = key();
    let sign = |path: &str, content: &str| {
        let headers = v3::base_headers(
            v3::HeaderInputs {
                host: "h",
                action: "A",
                version: "2015-12-15",
                date: "2026-11-30T00:00:00Z",
                nonce: "n",
                body: Some(content.as_bytes()),
            },
            &key,
            &Default::default(),
        );
        v3::sign(
            &v3::V3Request {
                method: "POST",
                path,
                query: &[],
                headers: &headers,
            },
            &key,
        )
    };
    let mine = sign("/clusters/c1", "{}");
    let ours = Signed {
        version: SignatureVersion::V3,
        string_to_sign: &mine.string_to_sign,
        canonical_request: Some(&mine.canonical_request),
    };
    let quote = |s: &v3::V3Signature| {
        format!(
            "Mismatch. server string to sign is:{} server canonical request is:{}",
            s.string_to_sign, s.canonical_request
        )
    };
    assert_eq!(diagnose(&ours, &quote(&mine)), Diagnosis::SecretMismatch);
    assert_eq!(
        diagnose(&ours, &quote(&sign("/clusters/c2", "{}"))),
        Diagnosis::Canonicalization {
            part: "the path".into()
        }
    );
    assert_eq!(
        diagnose(&ours, &quote(&sign("/clusters/c1", "[]"))),
        Diagnosis::Canonicalization {
            part: "the value of the header `x-acs-content-sha256`".into()
        }
    );
    // Only the string to sign quoted: equal means the secret; else it cannot say where.
    let sts_only =
        |s: &v3::V3Signature| format!("Mismatch. server string to sign is:{}", s.string_to_sign);
    assert_eq!(diagnose(&ours, &sts_only(&mine)), Diagnosis::SecretMismatch);
    assert!(matches!(
        diagnose(&ours, &sts_only(&sign("/x", "{}"))),
        Diagnosis::Canonicalization { .. }
    ));
}

#[test]
fn a_header_line_quoted_where_the_query_should_be_is_not_named() {
    // Once, a server text with the token's header line in the query's place was narrowed to
    // "the query parameter `x-acs-security-token:<token>`".
    let ours = format!(
        "GET\n/clusters\n\nhost:h\nx-acs-security-token:{TOKEN}\n\nhost;x-acs-security-token\n{}",
        v3::EMPTY_SHA256
    );
    let mut lines: Vec<&str> = ours.split('\n').collect();
    lines.swap(2, 4);
    let theirs = lines.join("\n");
    let signed = Signed {
        version: SignatureVersion::V3,
        string_to_sign: "ACS3-HMAC-SHA256\nours",
        canonical_request: Some(&ours),
    };
    let message = format!(
        "The request signature does not conform to Aliyun standards. server string to sign is:ACS3-HMAC-SHA256\ntheirs server canonical request is:{theirs}"
    );
    let diagnosis = diagnose(&signed, &message);
    assert_eq!(
        diagnosis,
        Diagnosis::Canonicalization {
            part: "the query (a parameter that quotes a signed header)".into()
        }
    );
    assert!(!format!("{diagnosis:?}").contains(TOKEN));
}
