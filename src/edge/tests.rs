use super::*;

fn request(method: Method, content_type: Option<&str>) -> Request<()> {
    let mut builder = Request::builder().method(method).uri("/pkg.Service/Method");
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    builder.body(()).expect("request")
}

#[test]
fn the_content_type_chooses_the_protocol() {
    use connect::{Codec, Kind};
    let cases = [
        (Some("application/grpc"), Protocol::Grpc),
        (Some("application/grpc+proto"), Protocol::Grpc),
        (Some("application/grpc-web"), Protocol::GrpcWeb),
        (Some("application/grpc-web-text+proto"), Protocol::GrpcWeb),
        (
            Some("application/json"),
            Protocol::Connect(Kind::Unary(Codec::Json)),
        ),
        (
            Some("application/json; charset=utf-8"),
            Protocol::Connect(Kind::Unary(Codec::Json)),
        ),
        (
            Some("application/proto"),
            Protocol::Connect(Kind::Unary(Codec::Proto)),
        ),
        (
            Some("application/connect+json"),
            Protocol::Connect(Kind::Stream(Codec::Json)),
        ),
        (
            Some("Application/Connect+Proto"),
            Protocol::Connect(Kind::Stream(Codec::Proto)),
        ),
        (Some("text/plain"), Protocol::Other),
        (None, Protocol::Other),
    ];
    for (content_type, expected) in cases {
        assert_eq!(
            protocol(&request(Method::POST, content_type)),
            expected,
            "{content_type:?}"
        );
    }
    assert_eq!(protocol(&request(Method::GET, None)), Protocol::Page);
}

#[test]
fn cors_is_off_without_origins() {
    assert!(cors_layer(&[]).is_none());
    assert!(cors_layer(&["https://ui.example".to_string()]).is_some());
}
