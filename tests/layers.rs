//! The server's layering, checked on its source: every module of `src/` names only modules of
//! its own layer or of layers below it (and the leaves every layer may use). The order is the
//! one `src/lib.rs` documents in its "Layout" section.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

/// Layers, lowest first.
const LAYERS: &[&str] = &[
    "reactor",
    "transport",
    "session",
    "store",
    "hub",
    "cluster",
    "node",
    "engineio",
    "commands",
    "socketio",
    "http",
    "runtime",
    "testing",
];

/// Modules any layer may use; they use no layer themselves.
const LEAVES: &[&str] = &["clock", "config", "stats", "panic", "queue"];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == module)
}

/// Every `crate::<module>` named in code (comments skipped), with its line.
fn named_modules(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((n + 1, name));
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_names_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut upward = Vec::new();
    let mut checked = 0;
    for path in &paths {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let top = top.trim_end_matches(".rs");
        let source = std::fs::read_to_string(path).unwrap();
        for (line, name) in named_modules(&source) {
            if name == top || name.is_empty() {
                continue;
            }
            checked += 1;
            let ok = if LEAVES.contains(&top) {
                // A leaf uses only other leaves.
                LEAVES.contains(&name.as_str())
            } else if ["lib", "main"].contains(&top) || LEAVES.contains(&name.as_str()) {
                true
            } else {
                match (rank(top), rank(&name)) {
                    (Some(me), Some(them)) => them <= me,
                    // Crate-root items (`crate::Config`, `crate::start`, ...) are re-exports.
                    (Some(_), None) => {
                        name.chars().next().is_some_and(char::is_uppercase)
                            || ["start", "mint", "mint_with_exp"].contains(&name.as_str())
                    }
                    (None, _) => panic!(
                        "{} is in no layer: add it to LAYERS or LEAVES",
                        rel.display()
                    ),
                }
            };
            if !ok {
                upward.push(format!("{}:{line}: crate::{name}", rel.display()));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} references found: the scan is broken"
    );
    assert!(
        upward.is_empty(),
        "modules naming a layer above them:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_scan_sees_code_and_skips_comments() {
    let found = named_modules(
        "use crate::hub::Hub; // crate::runtime\n/// crate::http\nlet x = crate::node::Ctx::new();",
    );
    let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["hub", "node"]);
}
