//! The text format: buckets are cumulative and end with `+Inf`, label values are escaped, and
//! the families that only count show every label value from the start.

use super::*;

#[test]
fn histogram_buckets_are_cumulative_and_counted() {
    let m = Metrics::default();
    m.rpc("DescribeClusterDetail", "OK", Duration::from_millis(3));
    m.rpc("DescribeClusterDetail", "OK", Duration::from_millis(200));
    m.rpc("DescribeClusterDetail", "OK", Duration::from_secs(60));
    m.rpc(
        "DescribeClusterDetail",
        "NOT_FOUND",
        Duration::from_millis(1),
    );
    let text = Scrape::new(&m).render();
    let line = |le: &str| {
        format!(
            "ack_gateway_rpc_duration_seconds_bucket{{code=\"OK\",operation=\"DescribeClusterDetail\",le=\"{le}\"}}"
        )
    };
    let value = |le: &str| -> u64 {
        let prefix = line(le);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .trim()
            .parse()
            .expect("a count")
    };
    // 3 ms falls in le=0.005, 200 ms in le=0.25; 60 s only in +Inf.
    assert_eq!(value("0.001"), 0);
    assert_eq!(value("0.005"), 1);
    assert_eq!(value("0.1"), 1);
    assert_eq!(value("0.25"), 2);
    assert_eq!(value("30"), 2);
    assert_eq!(value("+Inf"), 3);
    assert!(
        text.contains(
            "ack_gateway_rpc_duration_seconds_count{code=\"OK\",operation=\"DescribeClusterDetail\"} 3\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ack_gateway_rpc_duration_seconds_sum{code=\"OK\",operation=\"DescribeClusterDetail\"} 60.203\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ack_gateway_rpcs_total{code=\"NOT_FOUND\",operation=\"DescribeClusterDetail\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ack_gateway_rpc_duration_seconds histogram\n"),
        "{text}"
    );
}

#[test]
fn upstream_attempts_are_counted_by_status() {
    let m = Metrics::default();
    m.upstream("ScaleOutCluster", "503", Duration::from_millis(20));
    let text = Scrape::new(&m).render();
    assert!(
        text.contains(
            "ack_gateway_upstream_requests_total{operation=\"ScaleOutCluster\",status=\"503\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "ack_gateway_upstream_duration_seconds_bucket{operation=\"ScaleOutCluster\",status=\"503\",le=\"0.025\"} 1\n"
        ),
        "{text}"
    );
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::default();
    let mut s = Scrape::new(&m);
    s.labelled_counter("c_total", "help", "profile", [("a\"b\\c\nd", 2)]);
    let text = s.render();
    assert!(
        text.contains("c_total{profile=\"a\\\"b\\\\c\\nd\"} 2\n"),
        "{text}"
    );
}

#[test]
fn counting_families_show_every_label_from_the_start() {
    let text = Scrape::new(&Metrics::default()).render();
    for label in crate::signer::diagnosis::Diagnosis::LABELS {
        assert!(
            text.contains(&format!(
                "ack_gateway_signature_diagnoses_total{{diagnosis=\"{label}\"}} 0\n"
            )),
            "{text}"
        );
    }
    for reason in CONNECTION_CLOSE_REASONS {
        assert!(
            text.contains(&format!(
                "ack_gateway_grpc_connections_closed_total{{reason=\"{reason}\"}}"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "ack_gateway_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[test]
fn every_code_has_its_canonical_name() {
    assert_eq!(crate::error::code_name(tonic::Code::Ok), "OK");
    assert_eq!(crate::error::code_name(tonic::Code::NotFound), "NOT_FOUND");
    assert_eq!(
        crate::error::code_name(tonic::Code::Unauthenticated),
        "UNAUTHENTICATED"
    );
}
