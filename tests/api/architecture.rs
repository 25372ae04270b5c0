//! The layout is the architecture (docs/architecture.md), kept so by these checks: top-level modules depend on
//! each other in one direction only, down the map in `lib.rs`; `src/` holds at most 20 entries; no source file
//! runs past 500 lines; and the UserID rule lives in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/login/service.rs` → `login`, `src/cli.rs` → `cli`).
fn top_level(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Which top-level modules each one names (`crate::x`), outside comments.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let from = top_level(&file);
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != from {
                    deps.entry(from.clone()).or_default().insert(name);
                }
            }
        }
        deps.entry(from).or_default();
    }
    deps
}

#[test]
fn top_level_modules_depend_on_each_other_one_way() {
    let deps = dependencies();
    // Kahn's algorithm: whatever cannot be ordered is on a cycle.
    let mut left = deps.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, to)| to.iter().all(|t| !left.contains_key(t)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for m in leaves {
            left.remove(&m);
        }
    }
    assert!(
        left.is_empty(),
        "these top-level modules import each other in a loop: {left:#?}"
    );
}

/// The top-level modules in the order of the map in `lib.rs`'s doc comment (its table, top down).
fn map_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut order = Vec::new();
    for row in lib.lines().filter(|l| l.starts_with("//! | ")) {
        let Some(modules) = row.split('|').nth(2) else {
            continue;
        };
        for name in modules.split("[`").skip(1) {
            order.push(name.split('`').next().unwrap().to_owned());
        }
    }
    order
}

#[test]
fn modules_import_only_those_below_them_on_the_map() {
    let deps = dependencies();
    let order = map_order();
    let mut on_map: Vec<&String> = order.iter().filter(|m| *m != "client").collect();
    on_map.sort();
    let mut modules: Vec<&String> = deps
        .keys()
        .filter(|m| !["lib", "main", "client"].contains(&m.as_str()))
        .collect();
    modules.sort();
    assert_eq!(
        on_map, modules,
        "lib.rs's map names every top-level module once"
    );
    let rank = |m: &str| order.iter().position(|o| o == m);
    let upward: Vec<String> = deps
        .iter()
        .flat_map(|(from, to)| to.iter().map(move |t| (from, t)))
        .filter(|(from, to)| matches!((rank(from), rank(to)), (Some(f), Some(t)) if t <= f))
        .map(|(from, to)| format!("{from} imports {to}, which the map puts above it"))
        .collect();
    assert!(upward.is_empty(), "{upward:#?}");
}

#[test]
fn src_holds_at_most_twenty_entries_and_no_long_file() {
    let entries = std::fs::read_dir(src()).unwrap().count();
    assert!(entries <= 20, "src/ holds {entries} entries");
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 500).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 500 lines: {long:#?}");
}

#[test]
fn the_user_id_rule_lives_in_one_place() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    // The rule's mark: the reserved prefixes it refuses.
    let holders: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| l.contains("\"@TLS#\""))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].ends_with("model/ids.rs"), "{holders:?}");
}
