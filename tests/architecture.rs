//! The house rules about structure, checked on the sources themselves so they cannot drift:
//! module dependencies inside each crate go one way, no non-test source file grows past 600
//! lines, and the pure cores build without the heavy drivers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's library crates, by folder.
const CRATES: [&str; 5] = ["connector", "eventlog", "processors", "store", "topics"];

/// Longest non-test source file allowed.
const MAX_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's text without its test code: test-only files are empty, and a file's trailing
/// `#[cfg(test)]` modules are cut off.
fn non_test_code(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name == "tests.rs" || name == "conformance.rs" || name.ends_with("_tests.rs") {
        return String::new();
    }
    let text = fs::read_to_string(path).expect("a readable source file");
    let inline_test_module = text
        .match_indices("\n#[cfg(test)]\nmod ")
        .find(|(at, marker)| {
            let line = text[at + marker.len()..].lines().next().unwrap_or_default();
            line.trim_end().ends_with('{')
        });
    match inline_test_module {
        Some((at, _)) => text[..at].to_owned(),
        None => text,
    }
}

/// The top-level module of `crate/src` that `path` belongs to (`lib` for lib.rs).
fn top_module(src: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(src).expect("a file under src");
    let first = relative
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// Top-level modules named in `code` as `crate::<module>` (or `super::<module>` from a
/// top-level file, which means the same).
fn referenced(code: &str, top_level_file: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut prefixes = vec!["crate::"];
    if top_level_file {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (at, _) in code.match_indices(prefix) {
            let preceded_by_ident = code[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded_by_ident {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').collect()
            } else {
                vec![rest]
            };
            for name in names {
                let ident: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if ident.chars().next().is_some_and(char::is_lowercase) {
                    found.insert(ident);
                }
            }
        }
    }
    found
}

/// Every edge `from → to` between top-level modules of one crate, with the file it is seen in.
fn module_graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top_module(&src, file);
        let top_level_file = file.parent() == Some(src.as_path());
        for to in referenced(&non_test_code(file), top_level_file) {
            if to != from && modules.contains(&to) && from != "lib" {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn module_dependencies_go_one_way_in_every_crate() {
    for krate in CRATES.iter().copied().chain(["."]) {
        let graph = module_graph(krate);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "modules of {krate} import each other: {}",
                cycle.join(" → ")
            );
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        referenced("use crate::{fanout, registry::Outbound};", true),
        ["fanout", "registry"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
}

#[test]
fn no_source_file_over_600_lines() {
    let mut too_long = Vec::new();
    for krate in CRATES.iter().copied().chain(["."]) {
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        for file in files {
            let lines = non_test_code(&file).lines().count();
            if lines > MAX_LINES {
                too_long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(too_long.is_empty(), "over {MAX_LINES} lines: {too_long:?}");
}

/// The normal dependencies of `package` as `cargo tree` lists them.
fn dependency_tree(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--offline", "-e", "normal", "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn pure_cores_build_without_the_drivers() {
    for package in ["topics", "processors", "connector"] {
        let tree = dependency_tree(package);
        for driver in ["rdkafka", "scylla"] {
            assert!(
                !tree.lines().any(|l| l.contains(&format!(" {driver} v"))),
                "{package} depends on {driver}:\n{tree}"
            );
        }
    }
    let contract = dependency_tree("topics");
    for runtime in ["tokio", "rusqlite"] {
        assert!(
            !contract
                .lines()
                .any(|l| l.contains(&format!(" {runtime} v"))),
            "the contract (topics) depends on {runtime}"
        );
    }
}
