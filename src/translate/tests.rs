use super::*;
use crate::proto;
use crate::table::builtin;
use prost_reflect::DynamicMessage;
use serde_json::json;

fn request(op: &str, value: serde_json::Value) -> DynamicMessage {
    let desc = proto::message(&format!("alibabacloud.cs.v20151215.{op}Request")).expect("message");
    DynamicMessage::deserialize(desc, value).expect("request JSON fits the message")
}

fn call(op: &str, value: serde_json::Value) -> Result<HttpCall, InvalidField> {
    let table = builtin();
    build_call(
        table.operation("cs", op).expect("op"),
        &request(op, value),
        &RequestLimits::default(),
    )
}

#[test]
fn path_query_and_body_go_where_the_table_says() {
    let c = call(
        "DeleteCluster",
        json!({"cluster_id": "c1", "retain_resources": ["sg-1", "sg-2"], "keep_slb": false}),
    )
    .expect("valid");
    assert_eq!(c.method, "DELETE");
    assert_eq!(c.encoded_path, "/clusters/c1");
    assert!(c.query.contains(&("keep_slb".into(), "false".into())));
    assert!(c
        .query
        .contains(&("retain_resources".into(), r#"["sg-1","sg-2"]"#.into())));
    assert_eq!(c.body, None);
}

#[test]
fn unset_fields_are_absent_and_zero_values_are_sent() {
    let c = call(
        "ScaleOutCluster",
        json!({"cluster_id": "c1", "count": 0, "key_pair": "", "cloud_monitor_flags": false,
               "vswitch_ids": ["v"], "worker_instance_types": ["t"],
               "worker_system_disk_category": "cloud", "worker_system_disk_size": 40}),
    )
    .expect("valid");
    let body: serde_json::Value =
        serde_json::from_slice(c.body.as_deref().expect("body")).expect("json");
    assert_eq!(body["count"], json!(0));
    assert_eq!(body["cloud_monitor_flags"], json!(false));
    assert_eq!(body["key_pair"], json!(""));
    assert!(body.get("cpu_policy").is_none());
    assert!(body.get("worker_data_disks").is_none());
    assert!(
        body.get("ClusterId").is_none(),
        "path fields stay out of the body"
    );
}

#[test]
fn missing_path_parameter_is_named() {
    let err = call("DescribeClusterDetail", json!({})).expect_err("must fail");
    assert_eq!(err.field, "cluster_id");
}

#[test]
fn dot_segments_are_refused_and_reserved_characters_encoded() {
    let err = call("DescribeClusterDetail", json!({"cluster_id": ".."})).expect_err("refused");
    assert_eq!(err.field, "cluster_id");
    let c = call(
        "DescribeClusterDetail",
        json!({"cluster_id": "a/b?c#d ../e"}),
    )
    .expect("valid");
    assert_eq!(c.encoded_path, "/clusters/a%2Fb%3Fc%23d%20..%2Fe");
    assert_eq!(c.decoded_path, "/clusters/a/b?c#d ../e");
}

#[test]
fn a_path_value_naming_a_later_placeholder_is_signed_as_sent() {
    // Once, `{nodepool_id}` in the cluster id was replaced again by the node pool id in the
    // signed path only, so the signature covered another path than the one sent.
    let c = call(
        "DescribeClusterNodePoolDetail",
        json!({"cluster_id": "{nodepool_id}", "nodepool_id": "np-1"}),
    )
    .expect("valid");
    assert_eq!(c.encoded_path, "/clusters/%7Bnodepool_id%7D/nodepools/np-1");
    assert_eq!(c.decoded_path, "/clusters/{nodepool_id}/nodepools/np-1");
}

#[test]
fn bare_array_bodies_and_comma_joined_queries() {
    let c = call(
        "UnInstallClusterAddons",
        json!({"cluster_id": "c1", "addons": [{"name": "nginx-ingress-controller", "cleanup_cloud_resources": true}]}),
    )
    .expect("valid");
    assert_eq!(
        String::from_utf8(c.body.expect("body")).expect("utf8"),
        r#"[{"cleanup_cloud_resources":true,"name":"nginx-ingress-controller"}]"#
    );
    let c = call(
        "CleanUserPermissions",
        json!({"uid": "u1", "cluster_ids": ["a", "b"]}),
    )
    .expect("valid");
    assert!(c.query.contains(&("ClusterIds".into(), "a,b".into())));
}

#[test]
fn responses_of_every_shape_decode() {
    let table = builtin();
    let decode = |op: &str, body: &str| {
        let o = table.operation("cs", op).expect("op");
        let d = proto::message(&format!("alibabacloud.cs.v20151215.{op}Response")).expect("desc");
        decode_response(o, &d, body.as_bytes()).expect("decodes")
    };
    let m = decode(
        "DescribeClusters",
        r#"[{"cluster_id":"c1","size":3,"unknown_new_field":1}]"#,
    );
    let items = m.get_field_by_name("items").expect("items");
    assert_eq!(items.as_list().expect("list").len(), 1);
    let m = decode(
        "DescribeClusterAddonsVersion",
        r#"{"nginx":{"version":"1.2","can_upgrade":true}}"#,
    );
    assert!(m.has_field_by_name("entries"));
    let m = decode("DescribeClusterAttachScripts", "curl http://x | bash");
    assert_eq!(
        m.get_field_by_name("body").expect("body").as_str(),
        Some("curl http://x | bash")
    );
    let m = decode("CancelClusterUpgrade", "");
    assert_eq!(m.fields().count(), 0);
    // Loose upstream typing is fitted, not fatal: a number for a string, a string for a bool.
    let m = decode(
        "DescribeClusterDetail",
        r#"{"cluster_id": 42, "deletion_protection": "true", "size": "3"}"#,
    );
    assert_eq!(
        m.get_field_by_name("cluster_id").expect("f").as_str(),
        Some("42")
    );
    assert_eq!(
        m.get_field_by_name("deletion_protection")
            .expect("f")
            .as_bool(),
        Some(true)
    );
}

#[test]
fn well_typed_answers_decode_straight_and_as_the_fitting_path_decodes_them() {
    let table = builtin();
    let mut checked = 0;
    for op in table
        .operations()
        .filter(|o| o.response.kind == crate::table::ResponseKind::Object)
    {
        let Some(sample) = crate::simulator::sample::response(op, "REQ-1") else {
            continue;
        };
        let package = &table.service(&op.service).expect("service").package;
        let desc =
            proto::message(&format!("{package}.{}Response", op.name)).expect("response message");
        let body = serde_json::to_vec(&sample).expect("json");
        let straight = response::decode_well_typed(&desc, &body)
            .unwrap_or_else(|| panic!("{}: the simulator's answer is well typed", op.name));
        let fitted = response::decode_fitted(op, &desc, &body).expect("fits");
        assert_eq!(straight, fitted, "{}", op.name);
        checked += 1;
    }
    assert!(checked > 100, "only {checked} operations answer objects");
}

#[test]
fn loosely_typed_answers_take_the_fitting_path() {
    let desc =
        proto::message("alibabacloud.cs.v20151215.DescribeClusterDetailResponse").expect("desc");
    for loose in [
        r#"{"cluster_id": 42}"#,
        r#"{"deletion_protection": "true"}"#,
        r#"{"tags": {"key": "k", "value": "v"}}"#,
    ] {
        assert!(
            response::decode_well_typed(&desc, loose.as_bytes()).is_none(),
            "{loose}"
        );
    }
    // Trailing garbage after a valid object is not accepted by the straight path either.
    assert!(response::decode_well_typed(&desc, br#"{"cluster_id": "c1"} x"#).is_none());
}

#[test]
fn limits_name_the_field_and_never_shorten_a_value() {
    let table = builtin();
    let limits = RequestLimits {
        max_path_param_bytes: 4,
        max_query_value_bytes: 6,
        max_url_bytes: 40,
        max_repeated_items: 2,
        max_json_depth: 2,
        ..RequestLimits::default()
    };
    let build = |op: &str, value: serde_json::Value| {
        build_call(
            table.operation("cs", op).expect("op"),
            &request(op, value),
            &limits,
        )
    };
    let refused = |r: Result<HttpCall, InvalidField>| r.expect_err("refused");

    assert!(build("DescribeClusterDetail", json!({"cluster_id": "abcd"})).is_ok());
    let e = refused(build(
        "DescribeClusterDetail",
        json!({"cluster_id": "abcde"}),
    ));
    assert_eq!(e.field, "cluster_id");
    assert_eq!(e.reason, "is 5 bytes, over the gateway's limit of 4");

    // A list sent as one JSON-encoded query value is measured as serialised.
    let e = refused(build(
        "DeleteCluster",
        json!({"cluster_id": "c1", "retain_resources": ["a", "b"]}),
    ));
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        (
            "retain_resources",
            "is 9 bytes, over the gateway's limit of 6"
        )
    );
    let e = refused(build(
        "DeleteCluster",
        json!({"cluster_id": "c1", "retain_resources": ["a", "b", "c"]}),
    ));
    assert_eq!(e.field, "retain_resources");
    assert!(e.reason.contains("3 items"), "{}", e.reason);

    // Depth: the field's own object is one level.
    assert!(build(
        "CreateClusterDiagnosis",
        json!({"cluster_id": "c1", "target": {"a": {"b": 1}}})
    )
    .is_ok());
    let e = refused(build(
        "CreateClusterDiagnosis",
        json!({"cluster_id": "c1", "target": {"a": {"b": [1]}}}),
    ));
    assert_eq!(e.field, "target");
    assert!(e.reason.contains("limit of 2 levels"), "{}", e.reason);

    // The URL: each value fits, together they do not; the largest share is named.
    let e = refused(build(
        "DescribeClustersV1",
        json!({"name": "nnnnnn", "cluster_type": "tttttt", "profile": "pp", "region_id": "r"}),
    ));
    assert_eq!(e.field, "cluster_type");
    assert!(e.reason.starts_with("makes the URL"), "{}", e.reason);
}
