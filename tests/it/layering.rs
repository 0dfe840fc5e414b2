//! The crate's top-level modules depend on each other one way: no module reaches, through the
//! `crate::…` paths its code names, back to itself. Test code (`tests.rs` files) is not counted.

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
