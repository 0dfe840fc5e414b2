use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn empty_config_wants_the_simulator() {
    let c = Config::load(None, &env(&[])).expect("valid");
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert!(c.profiles.is_empty());
    assert!(c.wants_simulator());
}

#[test]
fn official_environment_variables_define_the_default_profile() {
    let c = Config::load(
        None,
        &env(&[
            (env::ACCESS_KEY_ID, "LTAIid"),
            (env::ACCESS_KEY_SECRET, "sec"),
            (env::SECURITY_TOKEN, "tok"),
            (env::REGION_ID, "cn-beijing"),
            (env::LISTEN, "127.0.0.1:6000"),
            (env::CS_ENDPOINT, "http://127.0.0.1:9000/roa"),
        ]),
    )
    .expect("valid");
    let p = &c.profiles["default"];
    assert_eq!(p.region.as_deref(), Some("cn-beijing"));
    assert!(matches!(p.credential, CredentialConfig::Sts { .. }));
    assert_eq!(c.listen.port(), 6000);
    assert_eq!(c.endpoints["cs"].path(), "/roa");
    assert!(!c.wants_simulator());
}

#[test]
fn unknown_keys_are_named() {
    let err = Config::load(Some("listen = \"127.0.0.1:1\"\nlisen = 3\n"), &env(&[]))
        .expect_err("invalid");
    assert!(err.to_string().contains("lisen"), "{err}");
    let err = Config::load(
        Some("[profiles.a]\ntype = \"access_key\"\naccess_key_id = \"x\"\naccess_key_secret = \"y\"\nregoin = \"cn\"\n"),
        &env(&[]),
    )
    .expect_err("invalid");
    assert!(err.to_string().contains("regoin"), "{err}");
}

#[test]
fn every_invalid_value_is_reported_with_its_key() {
    let text = r#"
listen = "nowhere"
[upstream]
request_timeout = "5 parsecs"
[endpoints]
cs = "ftp://x"
[profiles.p]
type = "access_key"
access_key_id = "x"
access_key_secret = { env = "NOPE" }
region = "CN HANGZHOU"
"#;
    let err = Config::load(Some(text), &env(&[]))
        .expect_err("invalid")
        .to_string();
    for key in [
        "listen",
        "upstream.request_timeout",
        "endpoints.cs",
        "profiles.p.access_key_secret",
        "profiles.p.region",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[test]
fn secrets_come_from_env_or_files_and_never_print() {
    let dir = std::env::temp_dir().join(format!("ackgw-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("secret");
    std::fs::write(&file, "from-file-secret\n").expect("write");
    let text = format!(
        "[profiles.a]\ntype = \"access_key\"\naccess_key_id = \"x\"\naccess_key_secret = {{ file = \"{}\" }}\n[profiles.b]\ntype = \"access_key\"\naccess_key_id = \"y\"\naccess_key_secret = {{ env = \"B_SECRET\" }}\n",
        file.display()
    );
    let c = Config::load(Some(&text), &env(&[("B_SECRET", "from-env-secret")])).expect("valid");
    let CredentialConfig::AccessKey {
        access_key_secret, ..
    } = &c.profiles["a"].credential
    else {
        panic!("access key profile")
    };
    assert_eq!(access_key_secret.expose(), "from-file-secret");
    let printed = format!("{c:?}");
    assert!(!printed.contains("from-file-secret") && !printed.contains("from-env-secret"));
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn admin_listener_from_file_env_or_default() {
    let c = Config::load(None, &env(&[])).expect("valid");
    assert_eq!(c.admin_listen.to_string(), DEFAULT_ADMIN_LISTEN);
    let file = "[admin]\nlisten = \"0.0.0.0:9100\"\n";
    let c = Config::load(Some(file), &env(&[])).expect("valid");
    assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9100");
    let c =
        Config::load(Some(file), &env(&[(env::ADMIN_LISTEN, "127.0.0.1:9200")])).expect("valid");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9200");
    let err = Config::load(Some("[admin]\nlisten = \"nowhere\"\n"), &env(&[])).expect_err("bad");
    assert!(err.to_string().contains("admin.listen"), "{err}");
}

#[test]
fn a_toml_error_names_the_place_but_never_quotes_the_line() {
    // The line is malformed, and holds an inline secret.
    let text = "[profiles.p]\ntype = \"access_key\"\naccess_key_id = \"id\"\naccess_key_secret = \"inline-secret-value\" oops\n";
    let err = Config::load(Some(text), &env(&[])).expect_err("malformed");
    let msg = err.to_string();
    assert!(msg.contains("line 4"), "{msg}");
    assert!(!msg.contains("inline-secret-value"), "{msg}");
}

#[test]
fn a_misplaced_secret_is_not_quoted_by_the_type_error() {
    // An `access_key_secret` in `[profiles]` itself reads as a profile that is a string; an
    // unknown profile type is an unknown variant. Neither error quotes the value.
    for text in [
        "[profiles]\naccess_key_secret = \"inline-secret-placed-wrong\"\n",
        "[profiles.p]\ntype = \"inline-secret-placed-wrong\"\n",
        "[profiles.p]\ntype = \"access_key\"\naccess_key_id = \"id\"\naccess_key_secret = 5\n",
    ] {
        let err = Config::load(Some(text), &env(&[])).expect_err("invalid");
        let msg = err.to_string();
        assert!(!msg.contains("inline-secret-placed-wrong"), "{msg}");
        assert!(msg.contains("line "), "{msg}");
    }
    let err =
        Config::load(Some("[profiles.p]\ntype = \"nope\"\n"), &env(&[])).expect_err("invalid");
    // The expected names stay.
    assert!(err.to_string().contains("`access_key`"), "{err}");
}

#[test]
fn request_limits_have_defaults_and_bad_values_name_their_key() {
    let c = Config::load(None, &env(&[])).expect("valid");
    assert_eq!(c.limits.request, crate::translate::RequestLimits::default());
    assert_eq!(c.limits.request.max_path_param_bytes, 1024);

    let c = Config::load(
        Some("[limits]\nmax_path_param_bytes = 64\nmax_json_depth = 4\n"),
        &env(&[]),
    )
    .expect("valid");
    assert_eq!(c.limits.request.max_path_param_bytes, 64);
    assert_eq!(c.limits.request.max_json_depth, 4);

    let text = r#"
[limits]
max_url_bytes = 70000
max_repeated_items = 0
max_header_bytes = 1000
[profiles.a]
type = "access_key"
access_key_id = "x"
access_key_secret = "y"
[profiles.a.acs_headers]
x-acs-organizationid = "3"
"#;
    let err = Config::load(Some(text), &env(&[])).expect_err("invalid");
    let text = err.to_string();
    for key in [
        "limits.max_url_bytes: must be at most 65534",
        "limits.max_repeated_items: must be greater than 0",
        "limits.max_header_bytes: must be more than 2048",
        "profiles.a.acs_headers:",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
    let err = Config::load(Some("[limits]\nmax_path_bytes = 1\n"), &env(&[])).expect_err("unknown");
    assert!(err.to_string().contains("max_path_bytes"), "{err}");
}

#[test]
fn connection_limits_have_defaults_and_bad_values_name_their_key() {
    let c = Config::load(None, &env(&[])).expect("valid");
    assert_eq!(c.limits.http, limits::HttpLimits::default());
    assert_eq!(c.limits.grpc, limits::GrpcLimits::default());
    assert_eq!(c.limits.grpc.max_concurrent_streams, 200);
    assert_eq!(c.limits.grpc.max_connection_age, None);

    let c = Config::load(
        Some(
            "[limits]\nhttp_header_read_timeout = \"300ms\"\nhttp_max_connections = 8\n\
              grpc_max_concurrent_streams = 10\ngrpc_max_header_list_bytes = 4096\n\
              grpc_keepalive_interval = \"5s\"\ngrpc_keepalive_timeout = \"2s\"\n\
              grpc_max_connection_age = \"1h\"\n\
              grpc_max_connections = 50\ngrpc_handshake_timeout = \"2s\"\n\
              grpc_max_connection_idle = \"off\"\n",
        ),
        &env(&[]),
    )
    .expect("valid");
    assert_eq!(
        c.limits.http.header_read_timeout,
        Duration::from_millis(300)
    );
    assert_eq!(c.limits.http.max_connections, 8);
    assert_eq!(c.limits.grpc.max_concurrent_streams, 10);
    assert_eq!(c.limits.grpc.max_header_list_bytes, 4096);
    assert_eq!(c.limits.grpc.keepalive_interval, Duration::from_secs(5));
    assert_eq!(c.limits.grpc.keepalive_timeout, Duration::from_secs(2));
    assert_eq!(
        c.limits.grpc.max_connection_age,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(c.limits.grpc.max_connections, 50);
    assert_eq!(c.limits.grpc.handshake_timeout, Duration::from_secs(2));
    assert_eq!(c.limits.grpc.max_connection_idle, None);

    let err = Config::load(
        Some(
            "[limits]\nhttp_header_read_timeout = \"0s\"\nhttp_max_connections = 0\n\
              grpc_max_concurrent_streams = 0\ngrpc_keepalive_timeout = \"soon\"\n",
        ),
        &env(&[]),
    )
    .expect_err("invalid");
    let text = err.to_string();
    for key in [
        "limits.http_header_read_timeout: must be greater than 0",
        "limits.http_max_connections: must be greater than 0",
        "limits.grpc_max_concurrent_streams: must be greater than 0",
        "limits.grpc_keepalive_timeout:",
    ] {
        assert!(text.contains(key), "{key} in {text}");
    }
}

#[test]
fn a_profile_may_say_what_its_writes_do_when_their_cluster_is_busy() {
    let profile = |when: &str| {
        format!(
            "[profiles.p]\ntype = \"access_key\"\naccess_key_id = \"x\"\naccess_key_secret = \"y\"\n{when}"
        )
    };
    let c = Config::load(Some(&profile("when_busy = \"wait\"\n")), &env(&[])).expect("valid");
    assert_eq!(c.profiles["p"].when_busy, Some(writes::WhenBusy::Wait));
    assert!(
        c.summary()
            .to_string()
            .contains("writes to a busy cluster: wait"),
        "check-config shows it"
    );
    let c = Config::load(Some(&profile("")), &env(&[])).expect("valid");
    assert_eq!(
        c.profiles["p"].when_busy, None,
        "unset: [idempotency] decides"
    );
    let err = Config::load(Some(&profile("when_busy = \"later\"\n")), &env(&[]))
        .expect_err("not a choice");
    assert!(
        err.to_string()
            .contains("profiles.p.when_busy: `later` is not `wait` or `fail`"),
        "{err}"
    );
}
