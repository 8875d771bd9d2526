//! The module rules of ARCHITECTURE.md that a compiler does not check: imports inside
//! `src/train/`, `src/kernels/`, `src/curate/`, `src/pipeline/`, `src/bench/` and `src/cli/`
//! run one way (no cycle, `use` groups included); no function there or in the viewer grows
//! past 120 lines, and no file of the command line past 400.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The module a file is (`recipe/fixmatch.rs` → `recipe::fixmatch`, `recipe/mod.rs` →
/// `recipe`, the area's `mod.rs` → ``).
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// Which sibling modules each module of `src/<area>/` names (through `super::`,
/// `crate::<area>::` or `self::`), comments left out.
fn imports(area: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(area);
    let files = sources(&root);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&root, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(&root, file);
        let parent = me
            .rsplit_once("::")
            .map_or(String::new(), |(p, _)| p.to_string());
        let code: String = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let mut named = BTreeSet::new();
        let prefixes = [
            (format!("crate::{area}::"), String::new()),
            // `super` is the parent module, whichever file holds the module.
            ("super::".to_string(), parent.clone()),
        ];
        for (prefix, base) in &prefixes {
            for (at, _) in code.match_indices(prefix.as_str()) {
                for name in names_after(&code[at + prefix.len()..]) {
                    // The longest module path this names.
                    let mut path = base.clone();
                    for part in name.split("::").filter(|p| !p.is_empty()) {
                        let next = if path.is_empty() {
                            part.to_string()
                        } else {
                            format!("{path}::{part}")
                        };
                        if modules.contains(&next) {
                            path = next;
                        } else {
                            break;
                        }
                    }
                    if !path.is_empty() && path != me && !me.starts_with(&format!("{path}::")) {
                        named.insert(path);
                    }
                }
            }
        }
        graph.insert(me, named);
    }
    graph
}

/// The paths a `use` names after a prefix: `a::b` for `a::b::C`, and each of a group's
/// (`{a, b::c, d::{e, f}}` → `a`, `b::c`, `d::e`, `d::f`; `self` in a group is its head).
fn names_after(rest: &str) -> Vec<String> {
    let head: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let after = &rest[head.len()..];
    if !after.starts_with('{') {
        return vec![head];
    }
    // The group's text up to its closing brace.
    let mut depth = 0;
    let mut end = after.len();
    for (i, c) in after.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let inner = &after[1..end];
    // Split at the group's own commas (not those of nested groups).
    let (mut items, mut depth, mut from) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[from..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .flat_map(|item| {
            if item == "self" {
                return vec![head.trim_end_matches(':').to_string()];
            }
            names_after(item)
                .into_iter()
                .map(|n| format!("{head}{n}"))
                .collect()
        })
        .collect()
}

/// A cycle in `graph`, if any, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn a_use_group_names_each_of_its_paths() {
    assert_eq!(
        names_after("plan::{make_plan, tiled};"),
        ["plan::make_plan", "plan::tiled"]
    );
    assert_eq!(
        names_after("{floor::calibrate, run::{Progress, Sink}, self};"),
        ["floor::calibrate", "run::Progress", "run::Sink", ""]
    );
    assert_eq!(names_after("score::ScoreSetup;"), ["score::ScoreSetup"]);
}

#[test]
fn imports_in_train_kernels_curate_pipeline_bench_and_cli_run_one_way() {
    for area in ["train", "kernels", "curate", "pipeline", "bench", "cli"] {
        let graph = imports(area);
        assert!(graph.len() > 3, "{area}: modules found: {graph:?}");
        assert!(
            graph.values().any(|named| !named.is_empty()),
            "{area}: no import found: {graph:?}"
        );
        if let Some(found) = cycle(&graph) {
            panic!("src/{area}/: import cycle {}", found.join(" → "));
        }
    }
    // The rules ARCHITECTURE.md states, checked by name.
    let train = imports("train");
    assert!(
        train.values().all(|named| !named.contains("trainer")),
        "{train:?}"
    );
    let kernels = imports("kernels");
    assert!(
        kernels["ops"].is_empty(),
        "ops is a leaf: {:?}",
        kernels["ops"]
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn no_function_in_the_library_areas_the_cli_or_the_viewer_is_longer_than_120_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = [
        "src/train",
        "src/curate",
        "src/pipeline",
        "src/bench",
        "src/cli",
        "app/src",
    ];
    let files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|dir| sources(&root.join(dir)))
        .collect();
    assert!(files.len() > 60, "{files:?}");
    let mut long = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn "]
                .iter()
                .any(|p| trimmed.starts_with(p));
            if !is_fn {
                continue;
            }
            let close = format!("{}}}", " ".repeat(indent));
            let Some(len) = lines[start..].iter().position(|l| *l == close) else {
                continue; // a declaration without a body
            };
            if len + 1 > 120 {
                long.push(format!(
                    "{}:{} ({} lines)",
                    file.display(),
                    start + 1,
                    len + 1
                ));
            }
        }
    }
    assert!(long.is_empty(), "functions longer than 120 lines: {long:?}");
}

#[test]
fn no_file_of_the_command_line_is_longer_than_400_lines() {
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let files = sources(&cli);
    assert!(files.len() > 10, "{files:?}");
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|&(_, lines)| lines > 400)
        .map(|(f, lines)| format!("{} ({lines} lines)", f.display()))
        .collect();
    assert!(
        long.is_empty(),
        "src/cli parses, calls the library and draws: {long:?}"
    );
}
