use super::*;

#[test]
fn classification_follows_the_documented_table() {
    let cases = [
        (400, "InvalidParameter.ClusterId", Code::InvalidArgument),
        (400, "MissingParameter", Code::InvalidArgument),
        (403, "Forbidden.RAM", Code::PermissionDenied),
        (403, "SignatureDoesNotMatch", Code::Unauthenticated),
        (404, "InvalidAccessKeyId.NotFound", Code::Unauthenticated),
        (400, "InvalidSecurityToken.Expired", Code::Unauthenticated),
        (404, "ErrorClusterNotFound", Code::NotFound),
        (400, "Throttling.User", Code::ResourceExhausted),
        (429, "", Code::ResourceExhausted),
        (500, "ServerError", Code::Unavailable),
        (503, "ServiceUnavailable", Code::Unavailable),
        (409, "ErrorClusterStatus", Code::FailedPrecondition),
        (302, "", Code::Internal),
        (301, "SomethingNotFound", Code::Internal),
    ];
    for (status, code, want) in cases {
        assert_eq!(classify(status, code), want, "{status} {code}");
    }
}

#[test]
fn scrub_removes_secrets_and_string_to_sign() {
    let m = scrub(
        "bad token CAIStoken123 server string to sign is: GET\nx-acs-security-token:CAIStoken123",
        &["CAIStoken123"],
    );
    assert!(!m.contains("CAIStoken123"), "{m}");
    assert!(m.contains("omitted"));
}

#[test]
fn api_errors_carry_error_info_and_request_id() {
    let e = GatewayError::Upstream(UpstreamError::Api {
        host: "cs.cn-hangzhou.aliyuncs.com".into(),
        status: 404,
        code: "ErrorClusterNotFound".into(),
        message: "cluster c1 not found".into(),
        request_id: Some("REQ-1".into()),
        retry_after: None,
        diagnosis: None,
    });
    let status = e.into_status();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status
            .metadata()
            .get("x-acs-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("REQ-1")
    );
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(info.reason, "ErrorClusterNotFound");
    assert_eq!(info.domain, "cs.cn-hangzhou.aliyuncs.com");
    assert_eq!(
        info.metadata.get("http_status").map(String::as_str),
        Some("404")
    );
}

#[test]
fn scrub_withholds_encoded_and_partial_quotes_of_a_secret() {
    use base64::Engine as _;
    let secret = "Kx9sQ2mP7vLw3RtYz8bN";
    let token = "CAIS/token+with=special&chars/0123456789";
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let percent = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    for quoted in [
        percent(token),
        percent(secret),
        b64.encode(secret),
        b64.encode(token),
        b64url.encode(format!("prefix:{token}")),
        b64.encode(format!("ab{secret}")),
        secret[..10].to_string(),
        secret[6..].to_string(),
        hex,
        format!("key={}&x=1", percent(&token[..12])),
    ] {
        let message = format!("The signature for {quoted} does not match.");
        let scrubbed = scrub(&message, &[secret, token]);
        assert!(!scrubbed.contains(&quoted), "{quoted} in {scrubbed}");
        assert!(scrubbed.contains("**REDACTED**"), "{scrubbed}");
        assert!(scrubbed.starts_with("The signature for"), "{scrubbed}");
    }
    // Ordinary words and ids stay.
    let plain = "cluster c82e6987e2961451182edacd74faf is not found (ErrorClusterNotFound)";
    assert_eq!(scrub(plain, &[secret, token]), plain);
}
