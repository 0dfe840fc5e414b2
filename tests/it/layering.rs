//! The architecture's rules, checked: the gateway's top-level modules depend on each other one
//! way, tier by tier (through the `crate::…` paths their code names; test code, `tests.rs`
//! files, is not counted); only the listed files read secret bytes (`expose()`); every source
//! file opens with its documentation (`//!`), as rust-analyzer's tidy tests check theirs. That
//! the simulator shares nothing with the gateway but the table and the signers is Cargo's to
//! enforce: `crates/ack-simulator` cannot name the gateway's modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its non-test code names as `crate::module`.
fn dependencies(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let top_level = |name: &str| name.trim_end_matches(".rs").to_string();
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .expect("src")
        .filter_map(|e| e.ok())
        .map(|e| top_level(&e.file_name().to_string_lossy()))
        .filter(|m| m != "main" && m != "lib")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if path.extension().is_none_or(|e| e != "rs") || name.as_deref() == Some("tests.rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let module = top_level(
                &relative
                    .components()
                    .next()
                    .expect("a component")
                    .as_os_str()
                    .to_string_lossy(),
            );
            if !modules.contains(&module) {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let named = graph.entry(module.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let rest = &text[i + "crate::".len()..];
                let mut names = Vec::new();
                if let Some(group) = rest.strip_prefix('{') {
                    let group = &group[..group.find('}').unwrap_or(0)];
                    names.extend(
                        group
                            .split(',')
                            .map(|n| n.trim().split("::").next().unwrap_or("").to_string()),
                    );
                } else {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    names.push(rest[..end].to_string());
                }
                for n in names {
                    if n != module && modules.contains(&n) {
                        named.insert(n);
                    }
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one (depth-first, bounded by the graph's size).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().cloned().unwrap_or_default();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn top_level_modules_depend_on_each_other_one_way() {
    let graph = dependencies(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 20, "the modules were found: {graph:?}");
    // The walk sees what it must: the request path names the vault, the signer and the cache.
    assert!(graph["gateway"].contains("vault") && graph["gateway"].contains("cache"));
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(
        cycles.is_empty(),
        "modules that reach back to themselves:\n{}",
        cycles.join("\n")
    );
    // Two of them, named: the error classification and the metrics need none of the modules
    // that raise errors or keep counters.
    for (module, must_not) in [
        ("error", ["vault", "access", "ratelimit", "gateway"]),
        ("metrics", ["gateway", "watch", "vault", "error"]),
    ] {
        for m in must_not {
            assert!(
                !graph[module].contains(m),
                "`{module}` needs `{m}`: {:?}",
                graph[module]
            );
        }
    }
}

/// The gateway's top-level modules by tier: a module may name modules of its own tier or of a
/// lower one, never of a higher one. A new module must be placed here.
const TIERS: &[(&str, &[&str])] = &[
    // What everything may use: generated bindings, the error classification, the mapping to
    // HTTP, metrics and tracing setup.
    (
        "foundations",
        &["proto", "telemetry", "translate", "error", "metrics"],
    ),
    ("configuration", &["config", "listener"]),
    // What a call consults: access rules, shared state, the cache, budgets, the HTTP client,
    // the credential vault.
    (
        "state",
        &[
            "access",
            "shared",
            "cache",
            "ratelimit",
            "upstream",
            "vault",
            "writes",
        ],
    ),
    ("request path", &["gateway"]),
    // What serves calls: the HTTP edge, the gRPC routes, the gateway's own services, reload and
    // the admin listener.
    (
        "services",
        &["edge", "server", "broker", "watch", "reload", "admin"],
    ),
    // What puts it together: the composition root and the command line.
    ("composition", &["app", "cli"]),
];

#[test]
fn modules_name_only_their_own_tier_or_lower_ones() {
    let graph = dependencies(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let tier_of = |m: &str| TIERS.iter().position(|(_, ms)| ms.contains(&m));
    let unplaced: Vec<&String> = graph.keys().filter(|m| tier_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "modules without a tier: {unplaced:?}");
    let mut upward = Vec::new();
    for (module, names) in &graph {
        let here = tier_of(module).expect("placed");
        for name in names {
            if tier_of(name).is_some_and(|there| there > here) {
                upward.push(format!(
                    "{module} ({}) names {name} ({})",
                    TIERS[here].0,
                    TIERS[tier_of(name).expect("placed")].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "upward dependencies:\n{}",
        upward.join("\n")
    );
}

/// Every Rust file under `dirs` (recursively), as paths relative to the repository root.
fn rust_files(dirs: &[&str]) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(
                    path.strip_prefix(root)
                        .expect("under the root")
                        .to_path_buf(),
                );
            }
        }
    }
    out.sort();
    out
}

/// The source directories: the gateway's and every crate's.
fn source_dirs() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec!["src".to_string()];
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .filter_map(|e| e.ok())
    {
        dirs.push(format!(
            "crates/{}/src",
            entry.file_name().to_string_lossy()
        ));
    }
    dirs
}

#[test]
fn every_source_file_opens_with_its_documentation() {
    let dirs = source_dirs();
    let mut dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    dirs.extend(["benches", "tests/it", "examples"]);
    let files = rust_files(&dirs);
    assert!(files.len() > 100, "the sources were found: {}", files.len());
    let undocumented: Vec<String> = files
        .iter()
        // A `tests.rs` is documented where its parent declares it (`#[cfg(test)] mod tests;`).
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(f))
                .unwrap_or_default();
            !text.starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "files that do not open with `//!`: {undocumented:?}"
    );
}

/// The files whose code reads secret bytes (`Secret::expose`), each with why. Everything else
/// handles secrets only as `Secret`, whose `Debug` and `Display` redact.
const EXPOSE_ALLOWED: &[(&str, &str)] = &[
    ("crates/ack-signer/src/secret.rs", "the type itself"),
    (
        "crates/ack-signer/src/lib.rs",
        "the signing key's HMAC schedule",
    ),
    (
        "crates/ack-signer/src/roa.rs",
        "the security token header of a signed ROA request",
    ),
    (
        "crates/ack-signer/src/rpc.rs",
        "the signature and the security token parameter",
    ),
    (
        "crates/ack-signer/src/v3.rs",
        "the V3 signing key and the security token header",
    ),
    (
        "crates/ack-simulator/src/auth.rs",
        "the simulator checks a presented security token",
    ),
    (
        "crates/ack-simulator/src/serve.rs",
        "the simulator's TLS private key, for its listener",
    ),
    (
        "src/vault/sts.rs",
        "the vault's STS client reads the triples STS issues",
    ),
    (
        "src/broker.rs",
        "hands a triple to the authorized caller it is issued for",
    ),
    (
        "src/gateway/attempts.rs",
        "the call's own secret and token, to withhold them from upstream errors",
    ),
    (
        "src/gateway/explain.rs",
        "the call's token, to redact it from the explained request",
    ),
    (
        "src/config/redis.rs",
        "the Redis URL (it may hold a password), checked when loaded",
    ),
    ("src/shared.rs", "the Redis URL and password, to connect"),
    (
        "src/app.rs",
        "the generated local token, hashed for the access rules",
    ),
    (
        "src/main.rs",
        "prints the generated local token, or the standalone simulator's throwaway key, once",
    ),
];

#[test]
fn only_the_listed_files_read_secret_bytes() {
    let dirs = source_dirs();
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let readers: BTreeSet<String> = rust_files(&dirs)
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .filter(|f| {
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(f))
                .is_ok_and(|text| text.contains(".expose()"))
        })
        .map(|f| f.display().to_string())
        .collect();
    let allowed: BTreeSet<String> = EXPOSE_ALLOWED.iter().map(|(f, _)| f.to_string()).collect();
    let unlisted: Vec<&String> = readers.difference(&allowed).collect();
    assert!(
        unlisted.is_empty(),
        "files that read secret bytes without being listed (with a reason) in EXPOSE_ALLOWED: {unlisted:?}"
    );
    let stale: Vec<&String> = allowed.difference(&readers).collect();
    assert!(
        stale.is_empty(),
        "listed files that no longer read secret bytes: {stale:?}"
    );
}

/// The functions a file defines at its top level (not methods, not in a `mod` block).
fn top_level_functions(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let rest = ["pub(crate) ", "pub(super) ", "pub "]
                .iter()
                .find_map(|p| line.strip_prefix(p))
                .unwrap_or(line);
            let rest = rest.strip_prefix("async ").unwrap_or(rest);
            let name = rest.strip_prefix("fn ")?;
            let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
            Some(name[..end].to_string())
        })
        .collect()
}

/// The names a file reaches through `super::` (in `use` lists and paths), outside its inline
/// test module.
fn names_from_super(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut names = BTreeSet::new();
    for (i, _) in code.match_indices("super::") {
        let after = &code[i + "super::".len()..];
        if after.starts_with("super::") {
            continue; // a grandparent's
        }
        let part = match after.strip_prefix('{') {
            Some(list) => &list[..list.find('}').unwrap_or(list.len())],
            None => {
                &after[..after
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(after.len())]
            }
        };
        // In a list, only the first segment of each entry is the parent's.
        for entry in part.split(',') {
            let first = entry.trim().split("::").next().unwrap_or("");
            let first = first.split_whitespace().next().unwrap_or("");
            if !first.is_empty() {
                names.insert(first.to_string());
            }
        }
    }
    names
}

/// The hubs stay thin: a child module (`a/b.rs`) never calls back into functions of its parent
/// file (`a.rs` or `a/mod.rs`); what two children share lives in a sibling module both use.
/// The parent's types are fine (a child implements or uses its parent's main types).
#[test]
fn children_call_no_functions_of_their_parent_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = source_dirs();
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    let mut checked = 0;
    for file in rust_files(&dirs) {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let under_tests = file.components().any(|c| c.as_os_str() == "tests");
        if matches!(name, "tests.rs" | "mod.rs" | "lib.rs" | "main.rs") || under_tests {
            continue;
        }
        let dir = file.parent().expect("in a folder");
        let parent = [dir.with_extension("rs"), dir.join("mod.rs")]
            .into_iter()
            .find(|p| root.join(p).is_file());
        let Some(parent) = parent else { continue };
        let parent_text = std::fs::read_to_string(root.join(&parent)).expect("parent");
        let functions = top_level_functions(&parent_text);
        let text = std::fs::read_to_string(root.join(&file)).expect("child");
        checked += 1;
        for used in names_from_super(&text) {
            if functions.contains(&used) {
                found.push(format!(
                    "{} uses {}::{used}",
                    file.display(),
                    parent.display()
                ));
            }
        }
    }
    assert!(checked > 50, "child modules were found: {checked}");
    assert!(
        found.is_empty(),
        "children that call functions of their parent file (move them to a sibling):\n{}",
        found.join("\n")
    );
}

/// Each name has one meaning: no two files of the gateway and its crates declare a top-level
/// type (struct, enum, trait or type alias) of the same name. (Associated types inside impls,
/// and test modules, are not declarations of the codebase's vocabulary.)
#[test]
fn no_two_types_share_a_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = source_dirs();
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let mut declared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&dirs) {
        let under_tests = file.components().any(|c| c.as_os_str() == "tests");
        if file.file_name().is_some_and(|n| n == "tests.rs") || under_tests {
            continue;
        }
        let text = std::fs::read_to_string(root.join(&file)).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for line in code.lines() {
            let rest = ["pub(crate) ", "pub(super) ", "pub "]
                .iter()
                .find_map(|p| line.strip_prefix(p))
                .unwrap_or(line);
            let Some(name) = ["struct ", "enum ", "trait ", "type "]
                .iter()
                .find_map(|k| rest.strip_prefix(k))
            else {
                continue;
            };
            let end = name
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(name.len());
            declared
                .entry(name[..end].to_string())
                .or_default()
                .insert(file.display().to_string());
        }
    }
    assert!(declared.len() > 100, "types were found: {}", declared.len());
    let shared: Vec<String> = declared
        .iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(name, files)| format!("{name}: {files:?}"))
        .collect();
    assert!(
        shared.is_empty(),
        "types declared under the same name in several files (rename one):\n{}",
        shared.join("\n")
    );
}
