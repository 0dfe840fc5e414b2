use super::*;

fn caller(name: &str, token: &str, profiles: &[&str], ops: &[&str]) -> CallerConfig {
    CallerConfig {
        name: name.into(),
        token_sha256: vec![token_hash(token)],
        tls_names: vec![format!("{name}.svc")],
        profiles: profiles.iter().map(|s| s.to_string()).collect(),
        operations: ops.iter().map(|s| s.to_string()).collect(),
        broker: vec!["role".into()],
    }
}

fn access() -> Access {
    let mut callers = BTreeMap::new();
    callers.insert(
        "dash".to_string(),
        caller(
            "dash",
            "tok-dash",
            &["default"],
            &["Describe*", "ListTagResources"],
        ),
    );
    Access::new(&LocalAccess::Off, &callers)
}

#[test]
fn patterns_match_as_globs() {
    assert!(matches("Describe*", "DescribeClusterDetail"));
    assert!(!matches("Describe*", "DeleteCluster"));
    assert!(matches("*", "Anything"));
    assert!(matches("*Cluster*", "ScaleOutCluster"));
    assert!(matches("Exact", "Exact"));
    assert!(!matches("Exact", "Exactly"));
    assert!(matches("Get*Status", "GetUpgradeStatus"));
}

#[test]
fn tokens_and_certificate_names_authenticate() {
    let a = access();
    assert_eq!(
        a.authenticate(Some("Bearer tok-dash"), &[]),
        Ok("dash".into())
    );
    assert!(matches!(
        a.authenticate(Some("Bearer nope"), &[]),
        Err(AccessError::Unauthenticated(_))
    ));
    assert_eq!(
        a.authenticate(None, &["dash.svc".into()]),
        Ok("dash".into())
    );
    assert!(a.authenticate(None, &[]).is_err());
}

#[test]
fn authorization_is_deny_by_default_and_names_everything() {
    let a = access();
    assert!(a
        .authorize("dash", "default", "DescribeClusterDetail")
        .is_ok());
    let err = a
        .authorize("dash", "default", "DeleteCluster")
        .expect_err("denied");
    let text = err.to_string();
    assert!(
        text.contains("dash") && text.contains("default") && text.contains("DeleteCluster"),
        "{text}"
    );
    assert!(a
        .authorize("dash", "prod", "DescribeClusterDetail")
        .is_err());
    assert!(a
        .authorize("stranger", "default", "DescribeClusterDetail")
        .is_err());
    assert!(a.authorize_broker("dash", "role").is_ok());
    assert!(a.authorize_broker("dash", "default").is_err());
}

#[test]
fn insecure_local_mode_allows_everything_as_local() {
    let a = Access::new(&LocalAccess::Insecure, &BTreeMap::new());
    assert_eq!(a.authenticate(None, &[]), Ok(LOCAL_CALLER.into()));
    assert!(a.authorize(LOCAL_CALLER, "any", "DeleteCluster").is_ok());
}
