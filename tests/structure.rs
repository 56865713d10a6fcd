//! The layout holds what docs/ARCHITECTURE.md says: each level uses only the levels below it
//! (the engine never reaches into the network, layers never into the models), and no import
//! circle ties a folder together — the one pair allowed is a layer's GPU file and its CPU
//! twin (`dense.rs` ↔ `dense_cpu.rs`: the definition builds its twins, the twin reads the
//! definition). Read from the sources: `crate::` and `super::` paths between modules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Every module of the library (not the binary), by path (`nn::layers::dense`), with its
/// source minus its unit tests.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    walk(&path, root, out);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut name: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if name.last().is_some_and(|n| n == "mod" || n == "lib") {
                name.pop();
            }
            let mut src = fs::read_to_string(&path).expect("read source");
            if let Some(at) = src.find("#[cfg(test)]\nmod tests") {
                src.truncate(at);
            }
            out.insert(name.join("::"), src);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The modules each module names through `crate::…` or `super::…` (the longest known prefix).
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .map(|i| parts[..i].join("::"))
            .rfind(|p| mods.contains_key(p))
    };
    let mut out = BTreeMap::new();
    for (name, src) in mods {
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
        let mut to = BTreeSet::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", parent.to_string())] {
            for (at, _) in src.match_indices(prefix) {
                if src[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
                {
                    continue;
                }
                let tail: String = src[at + prefix.len()..]
                    .chars()
                    .take_while(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == ':'
                    })
                    .collect();
                let full = if base.is_empty() {
                    tail.trim_end_matches(':').to_string()
                } else {
                    format!("{base}::{}", tail.trim_end_matches(':'))
                };
                if let Some(t) = resolve(&full) {
                    if &t != name {
                        to.insert(t);
                    }
                }
            }
        }
        out.insert(name.clone(), to);
    }
    out
}

fn reachable(from: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for t in &edges[&m] {
            if seen.insert(t.clone()) {
                stack.push(t.clone());
            }
        }
    }
    seen
}

#[test]
fn the_module_graph_is_read() {
    // A guard on the reader itself: known edges must be found, or the tests below pass vacuously.
    let e = edges(&modules());
    assert!(
        e["nn::sequential"].contains("nn::registry"),
        "{:?}",
        e["nn::sequential"]
    );
    assert!(e["nn::layers::dense_cpu"].contains("nn::layers::dense"));
    assert!(e.len() > 40, "{} modules", e.len());
}

#[test]
fn no_import_circle_but_a_layer_and_its_cpu_twin() {
    let e = edges(&modules());
    let reach: BTreeMap<&String, BTreeSet<String>> =
        e.keys().map(|m| (m, reachable(m, &e))).collect();
    let mut circles = BTreeSet::new();
    for (m, r) in &reach {
        let circle: BTreeSet<&String> = r
            .iter()
            .filter(|t| reach[t].contains(m.as_str()))
            .chain(std::iter::once(*m))
            .collect();
        if circle.len() > 1 {
            circles.insert(circle.into_iter().cloned().collect::<Vec<_>>());
        }
    }
    let twins = |c: &Vec<String>| {
        c.len() == 2 && c[0].starts_with("nn::layers::") && c[1] == format!("{}_cpu", c[0])
    };
    let bad: Vec<_> = circles.iter().filter(|c| !twins(c)).collect();
    assert!(bad.is_empty(), "import circles: {bad:#?}");
}

#[test]
fn each_level_uses_only_the_levels_below_it() {
    let e = edges(&modules());
    let engine = |m: &str| !m.is_empty() && !m.starts_with("nn") && !m.starts_with("internal");
    let model = |m: &str| {
        m.starts_with("nn::sequential")
            || [
                "nn::reference",
                "nn::batch_plan",
                "nn::step",
                "nn::describe",
                "nn::registry",
            ]
            .contains(&m)
    };
    for (m, to) in &e {
        // `crate::X` through the root's re-exports names no level.
        for t in to.iter().filter(|t| !t.is_empty()) {
            assert!(
                !engine(m) || engine(t),
                "the engine's {m} imports {t} (a higher level)"
            );
            assert!(
                !(m.starts_with("nn::layers") || m == "nn::layer") || !model(t),
                "layer module {m} imports {t} (a model-level module)"
            );
        }
    }
}
