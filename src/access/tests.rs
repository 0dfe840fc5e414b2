use super::*;

fn caller(name: &str, token: &str, profiles: &[&str], ops: &[&str]) -> CallerConfig {
    CallerConfig {
        journal_all: false,
        name: name.into(),
        token_sha256: vec![token_hash(token)],
        tls_names: vec![format!("{name}.svc")],
        profiles: profiles.iter().map(|s| s.to_string()).collect(),
        operations: ops.iter().map(|s| s.to_string()).collect(),
        secret_operations: Vec::new(),
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
        .authorize("dash", "default", "DescribeClusterDetail", false)
        .is_ok());
    let err = a
        .authorize("dash", "default", "DeleteCluster", false)
        .expect_err("denied");
    let text = err.to_string();
    assert!(
        text.contains("dash") && text.contains("default") && text.contains("DeleteCluster"),
        "{text}"
    );
    assert!(a
        .authorize("dash", "prod", "DescribeClusterDetail", false)
        .is_err());
    assert!(a
        .authorize("stranger", "default", "DescribeClusterDetail", false)
        .is_err());
    assert!(a.authorize_broker("dash", "role").is_ok());
    assert!(a.authorize_broker("dash", "default").is_err());
}

#[test]
fn insecure_local_mode_allows_everything_as_local() {
    let a = Access::new(&LocalAccess::Insecure, &BTreeMap::new());
    assert_eq!(a.authenticate(None, &[]), Ok(LOCAL_CALLER.into()));
    assert!(a
        .authorize(LOCAL_CALLER, "any", "DeleteCluster", false)
        .is_ok());
}

#[test]
fn a_wildcard_never_grants_an_operation_whose_answer_carries_secrets() {
    let table = crate::table::builtin();
    let secret_ops: Vec<&str> = table
        .operations()
        .filter(|op| op.policy.secrets)
        .map(|op| op.name.as_str())
        .collect();
    assert!(secret_ops.contains(&"DescribeClusterUserKubeconfig"));
    assert!(secret_ops.contains(&"AssumeRole"));
    let mut callers = BTreeMap::new();
    for (name, ops, secret) in [
        ("reader", vec!["Describe*", "List*", "Get*"], vec![]),
        ("everything", vec!["*"], vec![]),
        (
            "kube",
            vec!["Describe*", "DescribeClusterUserKubeconfig"],
            vec![],
        ),
        ("secrets", vec!["Describe*"], vec!["Describe*Kubeconfig"]),
    ] {
        let mut c = caller(name, name, &["*"], &ops);
        c.secret_operations = secret.into_iter().map(String::from).collect();
        callers.insert(name.to_string(), c);
    }
    let a = Access::new(&LocalAccess::Off, &callers);
    for op in &secret_ops {
        for caller in ["reader", "everything"] {
            assert!(
                a.authorize(caller, "p", op, true).is_err(),
                "{caller} reaches {op}"
            );
        }
    }
    assert!(a
        .authorize("reader", "p", "DescribeClusterDetail", false)
        .is_ok());
    // An exact name, or a pattern of `secret_operations`, grants one.
    assert!(a
        .authorize("kube", "p", "DescribeClusterUserKubeconfig", true)
        .is_ok());
    assert!(a
        .authorize("kube", "p", "DescribeClusterV2UserKubeconfig", true)
        .is_err());
    assert!(a
        .authorize("secrets", "p", "DescribeClusterV2UserKubeconfig", true)
        .is_ok());
    assert!(a
        .authorize("secrets", "p", "DescribeClusterAttachScripts", true)
        .is_err());
}

#[test]
fn configured_callers_end_insecure_local_mode() {
    let mut callers = BTreeMap::new();
    callers.insert("dash".to_string(), caller("dash", "tok", &["*"], &["*"]));
    let a = Access::new(&LocalAccess::Insecure, &callers);
    assert!(!a.insecure_local());
    assert!(a.authenticate(None, &[]).is_err());
    assert!(a
        .authorize(LOCAL_CALLER, "any", "DeleteCluster", false)
        .is_err());
}
