//! Server reflection v1 (the Python test covers v1alpha): services listed, files with their
//! documentation, unknown symbols NOT_FOUND.

use crate::support::Harness;
use prost::Message as _;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn ask(h: &Harness, request: MessageRequest) -> MessageResponse {
    try_ask(h, request).await.expect("an answer")
}

async fn try_ask(h: &Harness, request: MessageRequest) -> Result<MessageResponse, tonic::Status> {
    let mut client = ServerReflectionClient::new(h.channel.clone());
    let outbound = tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut answers = client
        .server_reflection_info(outbound)
        .await
        .expect("reflection stream")
        .into_inner();
    Ok(answers
        .message()
        .await?
        .expect("one message")
        .message_response
        .expect("a response"))
}

#[tokio::test]
async fn reflection_v1_lists_services_and_serves_documented_files() {
    let h = Harness::embedded().await;
    let MessageResponse::ListServicesResponse(list) =
        ask(&h, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "alibabacloud.cs.v20151215.ContainerService",
        "alibabacloud.sts.v20150401.Sts",
        "alibabacloud.ehpc.v20180412.Ehpc",
        "ackgateway.v1.WatchService",
        "ackgateway.v1.ExplainService",
        "ackgateway.v1.CredentialBrokerService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }

    let MessageResponse::FileDescriptorResponse(files) = ask(
        &h,
        MessageRequest::FileContainingSymbol(
            "alibabacloud.cs.v20151215.ContainerService.DescribeClusterDetail".into(),
        ),
    )
    .await
    else {
        panic!("not a file descriptor response");
    };
    let file = prost_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
        .expect("a file descriptor");
    let service = &file.service[0];
    assert!(service
        .method
        .iter()
        .any(|m| m.name() == "DescribeClusterDetail"));
    // The documentation travels with the file: clients can show it.
    let comments = file.source_code_info.expect("documentation kept").location;
    assert!(
        comments
            .iter()
            .any(|l| l.leading_comments().contains("cluster")),
        "no documentation comments"
    );

    let unknown = try_ask(
        &h,
        MessageRequest::FileContainingSymbol("no.such.Symbol".into()),
    )
    .await
    .expect_err("an unknown symbol is an error");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
