//! The module layout stays layered: in the server and the client, no module imports a module
//! that imports it back, directly or through others. Checked on the sources: every
//! `crate::a::b`, `super::a` and `self::a` path outside comments and test modules is an edge
//! to the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Module path (`chat::hub`) → file, for every module but tests and binaries.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            if parts.iter().any(|p| p == "tests" || p == "bin") {
                continue;
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The code of a module without comments and without its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `prefix` path in `code`, as its `::`-separated lower-case words.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let words: Vec<String> = rest
            .split("::")
            .map_while(|w| {
                let word: String = w
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                (!word.is_empty() && word.len() == w.len().min(word.len())).then_some(word)
            })
            .collect();
        out.push(words);
    }
    out
}

/// The longest module named by a prefix of `words` under `base`.
fn resolve(
    modules: &BTreeMap<String, PathBuf>,
    base: &[String],
    words: &[String],
) -> Option<String> {
    (0..=words.len()).rev().find_map(|k| {
        let name = base
            .iter()
            .chain(&words[..k])
            .cloned()
            .collect::<Vec<_>>()
            .join("::");
        modules.contains_key(&name).then_some(name)
    })
}

fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(root);
    let mut edges = BTreeMap::new();
    for (name, path) in &modules {
        let code = code(path);
        let me: Vec<String> = name
            .split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let parent = &me[..me.len().saturating_sub(1)];
        let mut targets = BTreeSet::new();
        for words in paths_after(&code, "crate::") {
            targets.extend(resolve(&modules, &[], &words));
        }
        for words in paths_after(&code, "super::") {
            targets.extend(resolve(&modules, parent, &words));
        }
        for words in paths_after(&code, "self::") {
            targets.extend(resolve(&modules, &me, &words));
        }
        targets.remove(name);
        targets.remove("");
        edges.insert(name.clone(), targets);
    }
    edges
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    edges: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let here = path.last().unwrap().clone();
    for next in &edges[&here] {
        if next == start {
            return Some(path.clone());
        }
        if path.contains(next) || !edges.contains_key(next) {
            continue;
        }
        path.push(next.clone());
        if let Some(cycle) = cycle_from(edges, start, path) {
            return Some(cycle);
        }
        path.pop();
    }
    None
}

fn assert_acyclic(crate_src: &str) {
    let edges = graph(&repo_root().join(crate_src));
    assert!(edges.len() > 5, "{crate_src}: modules not found");
    for start in edges.keys() {
        if let Some(cycle) = cycle_from(&edges, start, &mut vec![start.clone()]) {
            panic!(
                "{crate_src}: import cycle {} -> {start}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn server_modules_import_no_cycle() {
    assert_acyclic("crates/server/src");
}

#[test]
fn client_modules_import_no_cycle() {
    assert_acyclic("crates/client/src");
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::thing;\n").unwrap();
    std::fs::write(
        dir.path().join("b.rs"),
        "pub fn thing() { crate::a::other(); }\n",
    )
    .unwrap();
    let edges = graph(dir.path());
    assert!(
        cycle_from(&edges, "a", &mut vec!["a".to_owned()]).is_some(),
        "{edges:?}"
    );
}
