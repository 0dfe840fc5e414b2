//! The example configuration in `deploy/` stays valid.

use ack_gateway::config::Config;
use std::collections::HashMap;

#[test]
fn example_config_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/config.example.toml"
    ))
    .expect("example config exists");
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("TEMP_ACCESS_KEY_SECRET".into(), "s".into());
    env.insert("TEMP_SECURITY_TOKEN".into(), "t".into());
    env.insert("APSARA_SECRET".into(), "a".into());
    let err =
        Config::load(Some(&text), &env).expect_err("the mounted secret file does not exist here");
    let msg = err.to_string();
    assert!(msg.contains("profiles.default.access_key_secret"), "{msg}");
    assert_eq!(
        err.0.len(),
        1,
        "only the missing secret file is reported: {msg}"
    );
}

// --- The Kubernetes manifests and the Dockerfile agree with the code ---

use ack_gateway::config::{Env, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// Every manifest in `deploy/kubernetes`, by kind.
fn manifests() -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(format!("{DEPLOY}/kubernetes")).expect("manifests") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            // redis/: an optional single-instance Redis, applied on its own.
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let doc: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
        let kind = doc["kind"].as_str().expect("kind").to_string();
        assert!(out.insert(kind.clone(), doc).is_none(), "two {kind}s");
    }
    out
}

fn port(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("number")
}

/// The file system of a pod: the mounted Secret's keys, nothing else.
struct Pod(HashMap<PathBuf, String>);

impl Env for Pod {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        self.0.get(path).cloned().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "not mounted in the pod")
        })
    }
}

#[test]
fn kubernetes_manifests_match_the_codes_ports_probes_and_config() {
    let m = manifests();
    let kustomization = &m["Kustomization"];
    let mut listed: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("file"))
        .collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(format!("{DEPLOY}/kubernetes"))
        .expect("dir")
        .map(|e| e.expect("entry"))
        .filter(|e| !e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files, "the kustomization lists every manifest");

    // The optional Redis is applied on its own, and its Service is what the Secret names.
    let redis_dir = format!("{DEPLOY}/kubernetes/redis");
    let redis_service: Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{redis_dir}/service.yaml")).expect("redis service"),
    )
    .expect("YAML");
    let redis_url = m["Secret"]["stringData"]["redis_url"]
        .as_str()
        .expect("the Secret holds the Redis URL");
    let service_host = format!(
        "{}.{}.svc:{}",
        redis_service["metadata"]["name"].as_str().expect("name"),
        redis_service["metadata"]["namespace"]
            .as_str()
            .expect("namespace"),
        redis_service["spec"]["ports"][0]["port"]
            .as_u64()
            .expect("port")
    );
    assert_eq!(redis_url, format!("redis://{service_host}"));

    let deployment = &m["Deployment"];
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let container_port = |name: &str| -> u64 {
        c["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no {name} port"))
    };
    let grpc = container_port("grpc");
    let admin = container_port("admin");
    assert_eq!(grpc, port(DEFAULT_LISTEN));
    assert_eq!(admin, port(DEFAULT_ADMIN_LISTEN));

    // gRPC probes on the gRPC port; readiness asks for the API the vault's readiness drives.
    let cs = ack_gateway::table::builtin()
        .grpc_service_name("cs")
        .expect("cs service");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(c[probe]["grpc"]["port"].as_u64(), Some(grpc), "{probe}");
    }
    assert_eq!(
        c["readinessProbe"]["grpc"]["service"].as_str(),
        Some(cs.as_str())
    );
    assert!(
        c["livenessProbe"]["grpc"]["service"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "liveness asks for the overall status"
    );

    // The Service exposes both ports by name.
    let service = &m["Service"];
    for p in service["spec"]["ports"].as_sequence().expect("ports") {
        let target = p["targetPort"].as_str().expect("named target");
        assert_eq!(p["port"].as_u64(), Some(container_port(target)));
    }
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // The config file the container is started with is the ConfigMap's, and it is valid with
    // the Secret mounted where the Deployment mounts it.
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    assert_eq!(args[..2], ["serve", "--config"]);
    let config_path = Path::new(args[2]);
    let mount = |volume_kind: &str, name_key: &str, object: &Value| -> PathBuf {
        let volume = pod["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .find(|v| v[volume_kind][name_key] == object["metadata"]["name"])
            .unwrap_or_else(|| panic!("no {volume_kind} volume"));
        let mount = c["volumeMounts"]
            .as_sequence()
            .expect("mounts")
            .iter()
            .find(|vm| vm["name"] == volume["name"])
            .expect("mounted");
        PathBuf::from(mount["mountPath"].as_str().expect("path"))
    };
    let config_map = &m["ConfigMap"];
    let config_dir = mount("configMap", "name", config_map);
    assert_eq!(config_path.parent(), Some(config_dir.as_path()));
    let file_name = config_path.file_name().expect("file").to_string_lossy();
    let toml = config_map["data"][file_name.as_ref()]
        .as_str()
        .expect("the ConfigMap holds the config file");
    let secret = &m["Secret"];
    let keys_dir = mount("secret", "secretName", secret);
    let files = secret["stringData"]
        .as_mapping()
        .expect("stringData")
        .iter()
        .map(|(k, v)| {
            (
                keys_dir.join(k.as_str().expect("key")),
                v.as_str().expect("value").to_string(),
            )
        })
        .collect();
    let config = ack_gateway::config::Config::load(Some(toml), &Pod(files))
        .unwrap_or_else(|e| panic!("the ConfigMap's config: {e}"));
    assert_eq!(u64::from(config.listen.port()), grpc);
    assert_eq!(u64::from(config.admin_listen.port()), admin);
    assert!(
        config.listen.ip().is_unspecified(),
        "reachable by the kubelet"
    );
    assert!(
        config.admin_listen.ip().is_unspecified(),
        "reachable by Prometheus"
    );
    assert!(!config.wants_simulator() && !config.insecure_local());
    assert!(config.redis.is_some(), "the replicas share state");
    let annotations = &pod_annotations(deployment);
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(admin.to_string().as_str())
    );

    // RRSA: the pod runs as the annotated service account.
    let account = &m["ServiceAccount"];
    assert!(
        account["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(
        m["Namespace"]["metadata"]["labels"]["pod-identity.alibabacloud.com/injection"].as_str(),
        Some("on")
    );

    // Disruptions and scaling target this Deployment; a drain can always proceed.
    let pdb = &m["PodDisruptionBudget"];
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let hpa = &m["HorizontalPodAutoscaler"];
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let min_replicas = hpa["spec"]["minReplicas"].as_u64().expect("min");
    assert!(pdb["spec"]["minAvailable"].as_u64().expect("min available") < min_replicas);

    // Non-root, as the image's user.
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    let uid = security["runAsUser"].as_u64().expect("uid");
    assert_ne!(uid, 0);

    let dockerfile = std::fs::read_to_string(format!("{DEPLOY}/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains(&format!("EXPOSE {grpc} {admin}")),
        "{dockerfile}"
    );
    assert!(dockerfile.contains(&format!("USER {uid}:{uid}")));
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains(&format!(
        r#"CMD ["serve", "--config", "{}"]"#,
        config_path.display()
    )));
}

fn pod_annotations(deployment: &Value) -> serde_yaml::Mapping {
    deployment["spec"]["template"]["metadata"]["annotations"]
        .as_mapping()
        .expect("annotations")
        .clone()
}
