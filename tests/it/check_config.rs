//! `ack-gateway check-config`, run as the built binary: it prints what a configuration
//! resolves to without any secret, and fails with the errors on an invalid one.

use std::process::Command;

const SECRET: &str = "Inline-AccessKey-Secret-0123456789";
const FILE_SECRET: &str = "Mounted-File-Secret-9876543210";
const ENV_SECRET: &str = "Env-Var-Secret-ABCDEFGHIJ";
const TOKEN: &str = "Env-Security-Token-KLMNOPQRST";
const TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn check_config(dir: &std::path::Path, toml: &str) -> (bool, String, String) {
    let file = dir.join("config.toml");
    std::fs::write(&file, toml).expect("config written");
    let out = Command::new(env!("CARGO_BIN_EXE_ack-gateway"))
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .env("CHECK_CONFIG_SECRET", ENV_SECRET)
        .env("CHECK_CONFIG_TOKEN", TOKEN)
        // The process environment must not add a profile of its own.
        .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
        .env_remove("ALIBABA_CLOUD_ROLE_ARN")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER")
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("utf8"),
        String::from_utf8(out.stderr).expect("utf8"),
    )
}

#[test]
fn check_config_prints_the_resolved_config_without_secrets() {
    let dir = crate::support::scratch_dir("check-config-valid");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, FILE_SECRET).expect("secret written");
    let toml = format!(
        r#"
listen = "0.0.0.0:50051"
[admin]
listen = "0.0.0.0:9464"
[endpoints]
cs = "https://user:endpoint-password@asapi.example.internal/roa"
[profiles.inline]
type = "access_key"
access_key_id = "LTAIinlineKeyId"
access_key_secret = "{SECRET}"
region = "cn-hangzhou"
[profiles.mounted]
type = "access_key"
access_key_id = "LTAImountedKeyId"
access_key_secret = {{ file = "{file}" }}
[profiles.temporary]
type = "sts"
access_key_id = "STS.tempKeyId"
access_key_secret = {{ env = "CHECK_CONFIG_SECRET" }}
security_token = {{ env = "CHECK_CONFIG_TOKEN" }}
expiration = "2030-01-01T00:00:00Z"
region = "cn-beijing"
[profiles.role]
type = "ram_role_arn"
source_profile = "inline"
role_arn = "acs:ram::1234567890123456:role/ack-platform"
external_id = "external-id-value"
[auth]
mode = "enforce"
[callers.dashboard]
token_sha256 = ["{TOKEN_HASH}"]
profiles = ["inline"]
operations = ["Describe*"]
"#,
        file = secret_file.display()
    );
    let (ok, stdout, stderr) = check_config(&dir, &toml);
    assert!(ok, "{stderr}");
    for expected in [
        "grpc: 0.0.0.0:50051",
        "admin: 0.0.0.0:9464",
        "inline: access_key, key id LTAIinlineKeyId",
        "mounted: access_key, key id LTAImountedKeyId",
        "temporary: sts, key id STS.tempKeyId",
        "expires 2030-01-01T00:00:00Z",
        "role: ram_role_arn, role acs:ram::1234567890123456:role/ack-platform",
        "signed by profile `inline`",
        "dashboard: 1 bearer token hash(es) (elided)",
        "asapi.example.internal/roa",
        "auth: mode enforce",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    for secret in [
        SECRET,
        FILE_SECRET,
        ENV_SECRET,
        TOKEN,
        TOKEN_HASH,
        "endpoint-password",
        "external-id-value",
    ] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} printed:\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_fails_with_every_error_and_no_secret() {
    let dir = crate::support::scratch_dir("check-config-invalid");
    let toml = format!(
        r#"
listen = "not-an-address"
[profiles.inline]
type = "access_key"
access_key_id = "LTAIinlineKeyId"
access_key_secret = "{SECRET}"
region = "Not A Region"
[profiles.role]
type = "ram_role_arn"
source_profile = "missing"
role_arn = "acs:ram::1:role/r"
"#
    );
    let (ok, stdout, stderr) = check_config(&dir, &toml);
    assert!(!ok, "an invalid config must fail:\n{stdout}");
    for key in [
        "listen",
        "profiles.inline.region",
        "profiles.role.source_profile",
    ] {
        assert!(stderr.contains(key), "{key} not reported:\n{stderr}");
    }
    // A syntax error on the line holding the secret names the place, not the line.
    let (ok, _, stderr) = check_config(
        &dir,
        &format!("[profiles.p]\ntype = \"access_key\"\naccess_key_secret = \"{SECRET}\" junk\n"),
    );
    assert!(!ok);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(
        !stderr.contains(SECRET) && !stdout.contains(SECRET),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
