use super::*;
use crate::proto;

#[test]
fn every_code_has_the_specified_name_and_http_status() {
    // The Connect protocol specification's table.
    let table = [
        (Code::Cancelled, "canceled", 499),
        (Code::Unknown, "unknown", 500),
        (Code::InvalidArgument, "invalid_argument", 400),
        (Code::DeadlineExceeded, "deadline_exceeded", 504),
        (Code::NotFound, "not_found", 404),
        (Code::AlreadyExists, "already_exists", 409),
        (Code::PermissionDenied, "permission_denied", 403),
        (Code::ResourceExhausted, "resource_exhausted", 429),
        (Code::FailedPrecondition, "failed_precondition", 400),
        (Code::Aborted, "aborted", 409),
        (Code::OutOfRange, "out_of_range", 400),
        (Code::Unimplemented, "unimplemented", 501),
        (Code::Internal, "internal", 500),
        (Code::Unavailable, "unavailable", 503),
        (Code::DataLoss, "data_loss", 500),
        (Code::Unauthenticated, "unauthenticated", 401),
    ];
    for (code, name, http) in table {
        assert_eq!(connect_code(code), name);
        assert_eq!(http_status(code).as_u16(), http, "{name}");
    }
}

#[test]
fn connect_timeout_becomes_a_grpc_timeout() {
    let timeout = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(
            "connect-timeout-ms",
            HeaderValue::from_str(v).expect("value"),
        );
        grpc_timeout(&h)
    };
    assert_eq!(
        timeout("1500").expect("valid"),
        Some(HeaderValue::from_static("1500m"))
    );
    assert_eq!(
        timeout("9999999999").expect("valid"),
        Some(HeaderValue::from_static("9999999S"))
    );
    for bad in ["", "-1", "1.5", "12345678901", "ten"] {
        let status = timeout(bad).expect_err(bad);
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}");
        assert!(status.message().contains("connect-timeout-ms"), "{bad}");
    }
    assert_eq!(grpc_timeout(&HeaderMap::new()).expect("none"), None);
}

#[test]
fn a_server_streaming_request_is_exactly_one_envelope_compressed_only_when_declared() {
    const LIMIT: usize = 1 << 20;
    let one = envelope(0, b"abc");
    assert_eq!(
        single_envelope(one.clone(), false, LIMIT).expect("one"),
        Bytes::from_static(b"abc")
    );
    let mut two = BytesMut::from(&one[..]);
    two.extend_from_slice(&one);
    assert_eq!(
        single_envelope(two.freeze(), false, LIMIT)
            .expect_err("two")
            .code(),
        Code::InvalidArgument
    );
    let packed = envelope(COMPRESSED, &compression::gzip(b"abc"));
    assert_eq!(
        single_envelope(packed.clone(), false, LIMIT)
            .expect_err("compressed, undeclared")
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        single_envelope(packed, true, LIMIT).expect("gzip"),
        Bytes::from_static(b"abc")
    );
    assert_eq!(
        single_envelope(Bytes::from_static(b"\0\0"), false, LIMIT)
            .expect_err("short")
            .code(),
        Code::InvalidArgument
    );
}

#[test]
fn frames_split_anywhere_are_reassembled() {
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&frame(b"first"));
    wire.extend_from_slice(&frame(b""));
    wire.extend_from_slice(&frame(b"third message"));
    let wire = wire.freeze();
    for split in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..split]);
        let mut got = Vec::new();
        while let Some(m) = take_frame(&mut buf).expect("well formed") {
            got.push(m);
        }
        buf.extend_from_slice(&wire[split..]);
        while let Some(m) = take_frame(&mut buf).expect("well formed") {
            got.push(m);
        }
        assert_eq!(
            got,
            vec![&b"first"[..], &b""[..], &b"third message"[..]],
            "split at {split}"
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn json_requests_take_proto_and_json_names_and_name_unknown_fields() {
    let desc = proto::message("ackgateway.v1.WatchTaskRequest").expect("descriptor");
    let by_proto_name = json_to_proto(&desc, br#"{"task_id":"T-1"}"#).expect("proto name");
    let by_json_name = json_to_proto(&desc, br#"{"taskId":"T-1"}"#).expect("json name");
    assert_eq!(by_proto_name, by_json_name);
    assert!(!by_proto_name.is_empty());
    assert_eq!(
        json_to_proto(&desc, b"  ").expect("empty body"),
        Bytes::new()
    );
    let unknown = json_to_proto(&desc, br#"{"task":"T-1"}"#).expect_err("unknown field");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("'task'"),
        "{}",
        unknown.message()
    );
    let bad = json_to_proto(&desc, br#"{"task_id": 5}"#).expect_err("wrong type");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let trailing = json_to_proto(&desc, br#"{} {}"#).expect_err("trailing");
    assert_eq!(trailing.code(), Code::InvalidArgument);
}

#[test]
fn error_json_carries_code_message_and_readable_details() {
    use tonic_types::{ErrorDetails, StatusExt as _};
    let status = Status::with_error_details(
        Code::NotFound,
        "ErrorClusterNotFound: no such cluster",
        ErrorDetails::with_error_info(
            "ErrorClusterNotFound",
            "cs.aliyuncs.com",
            [("request_id".to_string(), "R-1".to_string())],
        ),
    );
    let json = error_json(&status);
    assert_eq!(json["code"], "not_found");
    assert_eq!(json["message"], "ErrorClusterNotFound: no such cluster");
    let detail = &json["details"][0];
    assert_eq!(detail["type"], "google.rpc.ErrorInfo");
    assert!(!detail["value"].as_str().expect("value").ends_with('='));
    assert_eq!(detail["debug"]["reason"], "ErrorClusterNotFound");
    assert_eq!(detail["debug"]["metadata"]["request_id"], "R-1");
    let plain = error_json(&Status::unavailable(""));
    assert_eq!(plain, serde_json::json!({"code": "unavailable"}));
}
