//! The layering ARCHITECTURE.md promises, checked on the source: every module (file) of the
//! library imports only modules of its own layer or lower ones, and the modules' imports form
//! no cycle. A new module must be given a layer here (and in ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, lowest first, each a list of module paths (a path covers its submodules unless a
/// more specific path is listed elsewhere).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary and pure cores",
        &[
            "analytics",
            "callback",
            "callback::hours",
            "callback::limits",
            "callback::number",
            "callback::text",
            "calls",
            "calls::matcher",
            "clock",
            "config",
            "live::protocol",
            "metrics",
            "sim",
        ],
    ),
    ("stores and the bus", &["store", "live::bus"]),
    ("what the service shares", &["app"]),
    (
        "the domain's services",
        &[
            "calls::ingest",
            "callback::service",
            "callback::status",
            "jobs",
            "pbx",
            "plugins",
            "reaper",
            "reload",
            "reports",
            "sim::fit",
        ],
    ),
    ("the edges", &["live", "web"]),
];

/// The layer of `module`: its longest listed prefix's.
fn layer(module: &str) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for (i, (_, paths)) in LAYERS.iter().enumerate() {
        for p in *paths {
            let covers = module == *p || module.starts_with(&format!("{p}::"));
            if covers && best.is_none_or(|(len, _)| p.len() > len) {
                best = Some((p.len(), i));
            }
        }
    }
    best.map_or_else(|| panic!("module {module} has no layer: add it to LAYERS (and to ARCHITECTURE.md)"), |b| b.1)
}

/// Every module of the library (not the binary: `main.rs`, `cli/`) and its source.
fn modules(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.first().is_some_and(|p| p == "cli" || p == "main") {
                continue;
            }
            // A module's unit tests in a file of their own (`<module>/tests.rs`) are test code, as
            // an in-file `#[cfg(test)]` module is: not part of the layering.
            if parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The source without its tests, comments, and string and character literals.
fn code(src: &str) -> String {
    let src = src.split("#[cfg(test)]").next().unwrap_or(src);
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        let after_ident = prev.is_alphanumeric() || prev == '_';
        prev = c;
        match c {
            // A raw string: r"..." or r#"..."#, quotes inside and all.
            'r' if !after_ident && matches!(chars.peek(), Some('"' | '#')) => {
                let mut hashes = 0;
                while chars.peek() == Some(&'#') {
                    chars.next();
                    hashes += 1;
                }
                if chars.next() != Some('"') {
                    out.push('r');
                    continue;
                }
                let mut run: Option<usize> = None;
                for c in chars.by_ref() {
                    run = match (c, run) {
                        ('"', _) => Some(0),
                        ('#', Some(n)) => Some(n + 1),
                        _ => None,
                    };
                    if run == Some(hashes) {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            // A character literal ('x', '\'', '"'), not a lifetime ('a).
            '\'' => {
                let mut ahead = chars.clone();
                match (ahead.next(), ahead.next()) {
                    (Some('\\'), _) => {
                        // The backslash and the character it escapes, then up to the closing quote.
                        chars.next();
                        chars.next();
                        for c in chars.by_ref() {
                            if c == '\'' {
                                break;
                            }
                        }
                        out.push_str("' '");
                    }
                    (Some(_), Some('\'')) => {
                        chars.next();
                        chars.next();
                        out.push_str("' '");
                    }
                    _ => out.push(c),
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// The paths a `use` tree names: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let head = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut items) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .flat_map(expand)
        .map(|p| if p == "self" { head.to_owned() } else { format!("{head}::{p}") })
        .collect()
}

/// The modules `module` imports.
fn imports(module: &str, src: &str, all: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = code(src);
    let here: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    let children: BTreeSet<&str> = all
        .keys()
        .filter_map(|m| m.strip_prefix(&format!("{module}{}", if module.is_empty() { "" } else { "::" })))
        .filter(|rest| !rest.is_empty() && !rest.contains("::"))
        .collect();
    let mut paths: Vec<String> = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let boundary = rest[..i].chars().last().is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let Some(end) = rest[i..].find(';') else { break };
        if boundary {
            paths.extend(expand(&rest[i + 4..i + end]));
        }
        rest = &rest[i + 4..];
    }
    // Paths written in place: `crate::a::b`, `super::a`, `child::item`.
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let mut j = i;
            while j < bytes.len() && (ident(bytes[j]) || (bytes[j] == b':' && bytes.get(j + 1) == Some(&b':'))) {
                j += if bytes[j] == b':' { 2 } else { 1 };
            }
            let path = &code[i..j];
            // A path that ends in `::` heads a `use` group, which the `use` reading expands.
            if path.contains("::") && !path.ends_with("::") {
                paths.push(path.to_owned());
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    let mut out = BTreeSet::new();
    for path in paths {
        let mut segs: Vec<&str> = path.split("::").collect();
        let mut base: Vec<&str> = match segs.first().copied() {
            Some("crate") => {
                segs.remove(0);
                Vec::new()
            }
            Some("super") => {
                segs.remove(0);
                here[..here.len().saturating_sub(1)].to_vec()
            }
            Some("self") => {
                segs.remove(0);
                here.clone()
            }
            Some(first) if children.contains(first) => here.clone(),
            _ => continue,
        };
        base.extend(segs);
        // The longest prefix that is a module.
        while !base.is_empty() {
            let m = base.join("::");
            if all.contains_key(&m) {
                if m != module && !m.is_empty() {
                    out.insert(m);
                }
                break;
            }
            base.pop();
        }
    }
    out
}

#[test]
fn modules_import_only_their_layer_and_below_and_form_no_cycle() {
    let all = modules(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let graph: BTreeMap<&str, BTreeSet<String>> =
        all.iter().map(|(m, src)| (m.as_str(), imports(m, src, &all))).collect();
    assert!(graph["web"].contains("live::ws"), "the check sees imports: {:?}", graph["web"]);
    assert!(graph["pbx"].contains("pbx::callpool"), "the check sees a child's items: {:?}", graph["pbx"]);
    let mut upward = Vec::new();
    for (m, deps) in &graph {
        if m.is_empty() {
            continue;
        }
        for d in deps {
            if layer(d) > layer(m) {
                upward.push(format!("{m} ({}) imports {d} ({})", LAYERS[layer(m)].0, LAYERS[layer(d)].0));
            }
        }
    }
    assert!(upward.is_empty(), "imports against the layers:\n{}", upward.join("\n"));
    // Depth-first search for a cycle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<&str, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(true) => return None,
            Some(false) => {
                let start = path.iter().position(|p| *p == m).unwrap_or(0);
                return Some(path[start..].iter().map(|s| s.to_string()).chain([m.to_owned()]).collect());
            }
            None => {}
        }
        state.insert(m, false);
        path.push(m);
        for d in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(d, graph, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(m, true);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut state, &mut Vec::new()) {
            panic!("modules import each other: {}", cycle.join(" → "));
        }
    }
}
