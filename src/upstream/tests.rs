use super::*;

fn answer(status: u16, content_type: &str, body: &str) -> RawResponse {
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = content_type.parse() {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    RawResponse {
        status,
        headers,
        body: Bytes::from(body.to_string()),
    }
}

#[test]
fn an_html_page_is_named_by_its_title_never_quoted() {
    let page = format!(
        "<html><head><TITLE>503 Service\nTemporarily Unavailable</TITLE></head><body>{}</body></html>",
        "<p>x</p>".repeat(500)
    );
    let (code, message) = error_code_and_message(&answer(503, "text/html", &page));
    assert_eq!(code, "");
    assert_eq!(
        message,
        format!(
            "an HTML page (503 Service Temporarily Unavailable), {} bytes",
            page.len()
        )
    );
    // Without a title, or with one cut off, or in a multi-byte text: still short, no panic.
    for page in ["<html><body>oops</body>", "<title>never closed", "<title>é"] {
        let (_, message) = error_code_and_message(&answer(502, "", page));
        assert!(message.starts_with("an HTML page"), "{message}");
    }
}

#[test]
fn other_text_is_cut_to_its_first_line() {
    let text = format!(
        "\n\nupstream connect error\u{7}{}\nsecond line",
        "x".repeat(500)
    );
    let (_, message) = error_code_and_message(&answer(502, "text/plain", &text));
    assert_eq!(message.chars().count(), EXCERPT_CHARS);
    assert!(message.starts_with("upstream connect error x"), "{message}");
}

#[test]
fn a_redirect_names_its_target_without_the_query() {
    let mut resp = answer(302, "", "");
    resp.headers.insert(
        http::header::LOCATION,
        http::HeaderValue::from_static("https://cs.example/roa?Signature=abc&x=1"),
    );
    let e = api_error("cs.example", &resp, &[]);
    let UpstreamError::Api { message, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(
        &**message,
        "a redirect to https://cs.example/roa, not followed (check the endpoint)"
    );
    assert_eq!(e.code(), tonic::Code::Internal);
}

#[test]
fn presented_names_are_shown_bare() {
    assert_eq!(presented_name("DnsName(\"cs.example\")"), "cs.example");
    assert_eq!(presented_name("IpAddress(10.0.0.1)"), "10.0.0.1");
    assert_eq!(presented_name("plain"), "plain");
    assert_eq!(presented_name(")("), ")(");
}
