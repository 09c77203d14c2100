//! The dependency direction of the crate's top-level modules, checked from the source: a
//! reference to `crate::<module>` (in a `use`, a `use crate::{...}` group or a path) from a
//! module that must not know `<module>` fails this test, naming the file and line.
//!
//! ```text
//!   cli ──► everything            (the only module that knows them all; nothing imports it)
//!   agent ──► listener, job, vm, … (what `run` does; only cli imports it)
//!   listener ──► job, client, protocol, …
//!   job ──► vm, protocol, expr, … (not listener, cli, localsvc)
//!   vm ──► image, …               (not job)
//!   client, protocol ──► …        (not job, listener, vm, cli, localsvc)
//!   actions ──► workflow, protocol, expr (not job, listener, vm, cli, localsvc)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules it must not reference.
fn forbidden() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let wire = ["job", "listener", "vm", "cli", "localsvc"];
    let mut rules: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    rules.insert("protocol", wire.into());
    rules.insert("client", wire.into());
    // Action manifests (and later the action cache) serve the job runtime; they know no job.
    rules.insert("actions", wire.into());
    rules.insert("job", ["listener", "cli", "localsvc"].into());
    rules.insert("vm", ["job", "listener", "cli", "localsvc"].into());
    rules
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/job/x.rs` → `job`, `src/errors.rs` → `errors`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of a line without its `//` comment (string contents are kept: a `crate::` inside a
/// string literal is rare enough in this crate to count).
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules `text` (a file's code, comments removed) references through `crate::`,
/// with the 1-based line of each reference.
fn references(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::") {
        let at = from + i;
        from = at + "crate::".len();
        // `ghrunner_vm_crate::` or `$crate::` are not ours.
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) || c == '$')
        {
            continue;
        }
        let rest = &text[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::b, c, d::{e, f}}`: the first name of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (offset, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        let name: String = group[offset..]
                            .chars()
                            .take_while(|&c| is_ident(c))
                            .collect();
                        found.push((name, line_of(from + 1 + offset)));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                found.push((name, line_of(at)));
            }
        }
    }
    found
}

#[test]
fn modules_depend_only_in_the_allowed_direction() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "only {} source files under {}",
        files.len(),
        src.display()
    );

    let rules = forbidden();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text.lines().map(|l| format!("{}\n", code(l))).collect();
        for (target, line) in references(&code) {
            if target == module {
                continue;
            }
            edges.insert((module.clone(), target.clone()));
            let must_not = rules
                .get(module.as_str())
                .is_some_and(|f| f.contains(target.as_str()));
            let imports_cli = target == "cli" && module != "main";
            let imports_agent = target == "agent" && module != "cli";
            if must_not || imports_cli || imports_agent {
                violations.push(format!(
                    "{}:{line}: `{module}` must not reference `crate::{target}`",
                    file.strip_prefix(src.parent().unwrap()).unwrap().display()
                ));
            }
        }
    }
    // The scan sees the edges that must exist, so a broken parser cannot pass silently.
    for (from, to) in [
        ("cli", "agent"),
        ("agent", "listener"),
        ("listener", "job"),
        ("job", "vm"),
        ("client", "protocol"),
        ("actions", "protocol"),
    ] {
        assert!(
            edges.contains(&(from.to_owned(), to.to_owned())),
            "the scan found no {from} → {to} reference; edges: {edges:?}"
        );
    }
    assert!(
        violations.is_empty(),
        "dependency back-edges:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reference_scanner_reads_paths_and_groups() {
    let text = "use crate::job::x;\nuse crate::{vm::{a, b}, protocol, expr::e};\nlet y = crate::cli::run();\n$crate::no; my_crate::no;\n";
    let found = references(text);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["job", "vm", "protocol", "expr", "cli"]);
    assert_eq!(found[4].1, 3, "line numbers are 1-based");
    assert_eq!(code("use crate::a; // crate::b"), "use crate::a; ");
}
