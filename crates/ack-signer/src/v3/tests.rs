use super::*;
use crate::secret::Secret;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    name: String,
    access_key_id: String,
    access_key_secret: String,
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: Option<String>,
    canonical_request: String,
    string_to_sign: String,
    signature: String,
    authorization: String,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("../../vectors/v3.json")).expect("vectors parse")
}

fn key(v: &Vector) -> SigningKey {
    let token = v
        .headers
        .get("x-acs-security-token")
        .cloned()
        .map(Secret::new);
    SigningKey::new(
        v.access_key_id.clone(),
        Secret::new(v.access_key_secret.clone()),
        token,
    )
}

#[test]
fn reproduces_every_official_v3_vector() {
    let vectors = vectors();
    assert!(vectors.len() >= 10, "all vectors loaded");
    for v in &vectors {
        let query: Vec<(String, String)> = v.query.clone().into_iter().collect();
        let headers: Vec<(&String, &String)> = v.headers.iter().collect();
        let req = V3Request {
            method: &v.method,
            path: &v.path,
            query: &query,
            headers: &headers,
        };
        let signed = sign(&req, &key(v));
        assert_eq!(signed.canonical_request, v.canonical_request, "{}", v.name);
        assert_eq!(signed.string_to_sign, v.string_to_sign, "{}", v.name);
        assert_eq!(
            signature(&signed.string_to_sign, &key(v)),
            v.signature,
            "{}",
            v.name
        );
        assert_eq!(signed.authorization, v.authorization, "{}", v.name);
        let body_hash = v
            .body
            .as_deref()
            .map_or_else(|| EMPTY_SHA256.to_string(), |b| sha256_hex(b.as_bytes()));
        assert_eq!(
            Some(&body_hash),
            v.headers.get("x-acs-content-sha256"),
            "{}",
            v.name
        );
        let parsed = parse_authorization(&signed.authorization).expect("parses");
        assert_eq!(parsed.credential, v.access_key_id);
        assert_eq!(parsed.signature, v.signature);
    }
}

#[test]
fn base_headers_rebuild_the_vectors_headers() {
    // From the vector's inputs, the gateway's own headers sign identically (they add only the
    // unsigned `accept`).
    for v in vectors() {
        let extra: BTreeMap<String, String> = v
            .headers
            .iter()
            .filter(|(k, _)| {
                k.starts_with("x-acs-")
                    && ![
                        "x-acs-action",
                        "x-acs-version",
                        "x-acs-date",
                        "x-acs-signature-nonce",
                        "x-acs-content-sha256",
                        "x-acs-accesskey-id",
                        "x-acs-security-token",
                    ]
                    .contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let headers = base_headers(
            HeaderInputs {
                host: &v.headers["host"],
                action: &v.headers["x-acs-action"],
                version: &v.headers["x-acs-version"],
                date: &v.headers["x-acs-date"],
                nonce: &v.headers["x-acs-signature-nonce"],
                body: v.body.as_deref().map(str::as_bytes),
            },
            &key(&v),
            &extra,
        );
        let mut signed_only: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| is_signed(k))
            .cloned()
            .collect();
        signed_only.sort();
        let mut want: Vec<(String, String)> = v.headers.clone().into_iter().collect();
        want.sort();
        assert_eq!(signed_only, want, "{}", v.name);
        assert!(headers
            .iter()
            .all(|(k, _)| k != "date" && k != "content-md5"));
        let query: Vec<(String, String)> = v.query.clone().into_iter().collect();
        let signed = sign(
            &V3Request {
                method: &v.method,
                path: &v.path,
                query: &query,
                headers: &headers,
            },
            &key(&v),
        );
        assert_eq!(signed.authorization, v.authorization, "{}", v.name);
    }
}

#[test]
fn signs_without_a_body_with_a_body_and_with_a_bare_array_body() {
    let key = SigningKey::new("id", Secret::new("secret"), None);
    let sign_body = |body: Option<&[u8]>| {
        let headers = base_headers(
            HeaderInputs {
                host: "cs.cn-hangzhou.aliyuncs.com",
                action: "TagResources",
                version: "2015-12-15",
                date: "2026-11-30T00:00:00Z",
                nonce: "n",
                body,
            },
            &key,
            &BTreeMap::new(),
        );
        sign(
            &V3Request {
                method: "POST",
                path: "/tags",
                query: &[],
                headers: &headers,
            },
            &key,
        )
    };
    let none = sign_body(None);
    assert!(none.canonical_request.ends_with(EMPTY_SHA256));
    assert!(!none.canonical_request.contains("content-type"));
    let object = sign_body(Some(br#"{"a":1}"#));
    assert!(object
        .canonical_request
        .ends_with(&sha256_hex(br#"{"a":1}"#)));
    assert!(object
        .canonical_request
        .contains("content-type:application/json; charset=utf-8\n"));
    let array = sign_body(Some(br#"[{"key":"env"}]"#));
    assert!(array
        .canonical_request
        .ends_with(&sha256_hex(br#"[{"key":"env"}]"#)));
    let empty = sign_body(Some(b""));
    assert!(empty.canonical_request.ends_with(EMPTY_SHA256));
    assert!(empty.canonical_request.contains("content-type"));
    let all = [none, object, array, empty];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a.authorization, b.authorization, "the body is signed");
        }
    }
}

#[test]
fn malformed_authorizations_do_not_parse() {
    for bad in [
        "",
        "acs id:sig",
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=b",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=b,Signature=c,Extra=d",
        "ACS3-HMAC-SHA256 Credential=a;SignedHeaders=b;Signature=c",
    ] {
        assert_eq!(parse_authorization(bad), None, "{bad}");
    }
}
