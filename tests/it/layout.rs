//! The shape of the source tree (issue 28): no two modules import each other, directly or through others, so
//! the modules stand in layers, each importing only ones below it; and no command imports another. Read from
//! the sources as text: every `crate::` path outside a `#[cfg(test)] mod tests` and outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of `src/` (`commands::fleet`, `ec2`, ...; not `main`) and the modules its own code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new("src").to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut named = BTreeMap::new();
    for path in files {
        let mut parts: Vec<String> = path
            .strip_prefix("src")
            .unwrap()
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["main"] {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let mut paths = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':')
                    .collect();
                paths.insert(path.trim_end_matches(':').to_string());
            }
        }
        named.insert(parts.join("::"), paths);
    }
    // Each path names the longest module it starts with.
    let modules: BTreeSet<String> = named.keys().cloned().collect();
    named
        .iter()
        .map(|(module, paths)| {
            let deps = paths
                .iter()
                .filter_map(|p| {
                    let parts: Vec<&str> = p.split("::").collect();
                    (1..=parts.len()).rev().map(|k| parts[..k].join("::")).find(|m| modules.contains(m))
                })
                .filter(|d| d != module)
                .collect();
            (module.clone(), deps)
        })
        .collect()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.len() > 20 && graph["agent"].contains("reconcile"), "the sources were read: {graph:?}");
    for start in graph.keys() {
        // Every module reachable from `start`; `start` among them is a circle.
        let mut seen = BTreeSet::new();
        let mut path: BTreeMap<String, String> = BTreeMap::new();
        let mut todo = vec![start.clone()];
        while let Some(m) = todo.pop() {
            for d in &graph[&m] {
                if seen.insert(d.clone()) {
                    path.insert(d.clone(), m.clone());
                    todo.push(d.clone());
                }
            }
        }
        if seen.contains(start) {
            let mut circle = vec![start.clone()];
            let mut at = path[start].clone();
            while &at != start && circle.len() <= graph.len() {
                circle.push(at.clone());
                at = path[&at].clone();
            }
            circle.reverse();
            panic!("an import circle through {start}: {start} -> {}", circle.join(" -> "));
        }
    }
}

#[test]
fn no_command_imports_another() {
    for (module, deps) in imports() {
        if let Some(command) = module.strip_prefix("commands::") {
            let own = command.split("::").next().unwrap();
            let others: Vec<&String> = deps
                .iter()
                .filter(|d| d.starts_with("commands::") && !d.starts_with(&format!("commands::{own}")))
                .collect();
            assert!(others.is_empty(), "{module} imports {others:?}: what two commands share goes below them");
        }
    }
}
