//! The text format: buckets are cumulative and end with `+Inf`, label values are escaped.

use super::*;

#[test]
fn histogram_buckets_are_cumulative_and_counted() {
    let v = HistogramVec::default();
    v.observe("DescribeClusterDetail", "OK", Duration::from_millis(3));
    v.observe("DescribeClusterDetail", "OK", Duration::from_millis(200));
    v.observe("DescribeClusterDetail", "OK", Duration::from_secs(60));
    v.observe(
        "DescribeClusterDetail",
        "NOT_FOUND",
        Duration::from_millis(1),
    );
    let snap = v.snapshot();
    let (buckets, count, sum) = &snap[&("DescribeClusterDetail".to_string(), "OK".to_string())];
    assert_eq!(*count, 3);
    assert!((sum - 60.203).abs() < 1e-6, "{sum}");
    // 3 ms falls in le=0.005, 200 ms in le=0.25; 60 s only in +Inf.
    let at = |le: f64| buckets[BUCKETS.iter().position(|b| *b == le).expect("bucket")];
    assert_eq!(at(0.001), 0);
    assert_eq!(at(0.005), 1);
    assert_eq!(at(0.1), 1);
    assert_eq!(at(0.25), 2);
    assert_eq!(at(30.0), 2);
    let (_, not_found, _) = &snap[&("DescribeClusterDetail".to_string(), "NOT_FOUND".to_string())];
    assert_eq!(*not_found, 1);
}

#[test]
fn histogram_text_has_buckets_sum_and_count() {
    let v = HistogramVec::default();
    v.observe("ScaleOutCluster", "503", Duration::from_millis(20));
    let mut t = Text::default();
    t.histogram("h_seconds", "help", ("operation", "status"), &v.snapshot());
    let text = t.0;
    assert!(text.contains("# TYPE h_seconds histogram\n"), "{text}");
    assert!(
        text.contains(
            "h_seconds_bucket{operation=\"ScaleOutCluster\",status=\"503\",le=\"0.01\"} 0\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "h_seconds_bucket{operation=\"ScaleOutCluster\",status=\"503\",le=\"0.025\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "h_seconds_bucket{operation=\"ScaleOutCluster\",status=\"503\",le=\"+Inf\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("h_seconds_count{operation=\"ScaleOutCluster\",status=\"503\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("h_seconds_sum{operation=\"ScaleOutCluster\",status=\"503\"} 0.02\n"),
        "{text}"
    );
}

#[test]
fn label_values_are_escaped() {
    let mut t = Text::default();
    t.labelled_counter("c_total", "help", "profile", &[("a\"b\\c\nd".into(), 2.0)]);
    assert!(
        t.0.contains("c_total{profile=\"a\\\"b\\\\c\\nd\"} 2\n"),
        "{}",
        t.0
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
