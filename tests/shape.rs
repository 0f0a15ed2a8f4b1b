//! The shape of the edge and handlers crates (issue 21), run by `cargo test` with no servers: no
//! two modules import each other, directly or around a loop, and no file is over 500 lines
//! unless [`LONG_FILES`] names it with a reason.
//!
//! The module graph is read from the sources: every `use` tree and every path written
//! `crate::…`, `super::…`, `self::…` or starting with a child module's name, each resolved
//! through the `use` declarations of the module it names (so `super::Conn`, re-exported by a
//! parent from a child, points at the child). A node is a top-level module (`fanout`), or one
//! level deeper inside a directory module (`runtime::key`); a `tests` module counts as its
//! parent. Declaring a child (`mod key;`) is no import.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The source trees whose modules must form no loop.
const CRATES: &[&str] = &["edge/src", "handlers/src"];

/// Most lines of a file in those trees, unless [`LONG_FILES`] names it.
const MAX_LINES: usize = 500;

/// Files allowed past [`MAX_LINES`], each with its reason (paths from the repository root).
const LONG_FILES: &[(&str, &str)] = &[(
    "handlers/src/collab/tests.rs",
    "one table of cases per collab command, beside the domain they test",
)];

/// A module path inside one crate: `[]` is the crate root, `["runtime", "key"]` is
/// `crate::runtime::key`.
type ModPath = Vec<String>;

/// One source file, by its module path and text.
struct Source {
    file: String,
    module: ModPath,
    text: String,
}

/// Reads every `.rs` file under `root` (relative to the repository), with its module path.
fn read_tree(root: &str) -> Vec<Source> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join(root);
    let mut files = Vec::new();
    collect_rs(&base, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&base).expect("under the root");
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            Source {
                file: format!("{root}/{}", relative.display()),
                module: module_of(relative),
                text,
            }
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `runtime/key.rs` → `runtime::key`; `runtime/mod.rs` → `runtime`; `lib.rs` → the root.
fn module_of(relative: &Path) -> ModPath {
    let mut parts: ModPath = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") || parts == ["lib"] {
        parts.pop();
    }
    parts
}

/// Rust source without comments, strings and character literals (each string becomes `""`),
/// cut into identifiers, `::` and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize, s: &str| {
        s.chars()
            .enumerate()
            .all(|(k, c)| chars.get(i + k) == Some(&c))
    };
    while i < chars.len() {
        let c = chars[i];
        if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            while i < chars.len() {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(chars.get(i + 1), Some('"') | Some('#')) {
            // Identifiers are read whole below, so an `r` here starts a token.
            // A raw string `r#"…"#`, or the identifier `r#type` when no quote follows.
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                i += 1 + hashes;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            i += 2 + hashes;
            while i < chars.len() && !at(i, &close) {
                i += 1;
            }
            i += close.len();
            out.push("\"\"".to_string());
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push("\"\"".to_string());
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if chars.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if at(i, "::") {
            out.push("::".to_string());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_ident_token(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// A path written in a module: where it was written (the file's module plus any inline
/// `mod x { … }` around it), its segments, and for a `use` leaf the name it brings in.
#[derive(Debug, Clone)]
struct Written {
    module: ModPath,
    segments: Vec<String>,
    /// `Some(name)` for a `use` that is not a glob: the name it binds in `module`.
    binds: Option<String>,
}

/// Every path written in `source`.
fn paths(source: &Source) -> Vec<Written> {
    let toks = tokens(&source.text);
    let mut out = Vec::new();
    let mut inline: Vec<String> = Vec::new();
    let mut blocks: Vec<bool> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        let here = || -> ModPath { source.module.iter().chain(&inline).cloned().collect() };
        let t = toks[i].as_str();
        if t == "mod" && toks.get(i + 2).is_some_and(|t| t == "{") {
            pending_mod = Some(toks[i + 1].clone());
            i += 2;
        } else if t == "{" {
            blocks.push(pending_mod.is_some());
            inline.extend(pending_mod.take());
            i += 1;
        } else if t == "}" {
            if blocks.pop() == Some(true) {
                inline.pop();
            }
            i += 1;
        } else if t == "use" {
            i = use_tree(&toks, i + 1, Vec::new(), &here(), &mut out);
        } else if is_ident_token(t)
            && toks.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || toks[i - 1] != "::")
        {
            let mut segments = vec![t.to_string()];
            let mut j = i + 1;
            while toks.get(j).is_some_and(|t| t == "::")
                && toks.get(j + 1).is_some_and(|t| is_ident_token(t))
            {
                segments.push(toks[j + 1].clone());
                j += 2;
            }
            if toks.get(j).is_some_and(|t| t == "::") && toks.get(j + 1).is_some_and(|t| t == "{") {
                // `crate::a::{b, c}` outside a `use` (in a macro, say): read it as one.
                i = use_tree(&toks, j + 1, segments, &here(), &mut out);
            } else {
                out.push(Written {
                    module: here(),
                    segments,
                    binds: None,
                });
                i = j;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Reads the use tree starting at `toks[i]` under `prefix`; returns the index after it.
fn use_tree(
    toks: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    module: &ModPath,
    out: &mut Vec<Written>,
) -> usize {
    while let Some(t) = toks.get(i) {
        if t == "{" {
            i += 1;
            while toks.get(i).is_some_and(|t| t != "}") {
                i = use_tree(toks, i, prefix.clone(), module, out);
                if toks.get(i).is_some_and(|t| t == ",") {
                    i += 1;
                }
            }
            return i + 1;
        }
        if t == "*" {
            out.push(Written {
                module: module.clone(),
                segments: prefix,
                binds: None,
            });
            return i + 1;
        }
        if !is_ident_token(t) {
            return i;
        }
        i += 1;
        if toks.get(i).is_some_and(|t| t == "::") {
            prefix.push(t.clone());
            i += 1;
            continue;
        }
        let mut name = t.clone();
        if t == "self" {
            name = prefix.last().cloned().unwrap_or_default();
        } else {
            prefix.push(t.clone());
        }
        if toks.get(i).is_some_and(|t| t == "as") {
            name = toks.get(i + 1).cloned().unwrap_or_default();
            i += 2;
        }
        out.push(Written {
            module: module.clone(),
            segments: prefix,
            binds: Some(name),
        });
        return i;
    }
    i
}

/// The modules of one crate and the imports between them, as read from its sources.
struct Crate {
    modules: BTreeSet<ModPath>,
    /// Modules that are directories with modules of their own besides `tests`.
    dirs: BTreeSet<String>,
    /// What each name a `use` binds in a module points at, as written (not yet resolved).
    bindings: HashMap<(ModPath, String), Written>,
    written: Vec<(String, Written)>,
}

impl Crate {
    fn new(sources: &[Source]) -> Crate {
        let mut modules: BTreeSet<ModPath> = BTreeSet::new();
        let mut written = Vec::new();
        let mut bindings = HashMap::new();
        for source in sources {
            modules.insert(source.module.clone());
            for path in paths(source) {
                if let Some(name) = &path.binds {
                    bindings.insert((path.module.clone(), name.clone()), path.clone());
                }
                written.push((source.file.clone(), path));
            }
        }
        // Directories are told by their files; inline modules (`mod tests { … }`) are modules
        // too, but never make their file a directory.
        let dirs = modules
            .iter()
            .filter(|m| m.len() >= 2 && m[1] != "tests")
            .map(|m| m[0].clone())
            .collect();
        for (_, path) in &written {
            for n in 1..=path.module.len() {
                modules.insert(path.module[..n].to_vec());
            }
        }
        Crate {
            modules,
            dirs,
            bindings,
            written,
        }
    }

    /// The module (and the rest of the path after it) that `path` names, following `use`
    /// bindings; `None` for a path outside the crate (another crate, `Self::`, a type's item).
    fn resolve(&self, path: &Written) -> Option<ModPath> {
        let here = &path.module;
        let (first, rest) = path.segments.split_first()?;
        let mut full: Vec<String> = match first.as_str() {
            "crate" => rest.to_vec(),
            "self" => here.iter().chain(rest).cloned().collect(),
            "super" => {
                let ups = path.segments.iter().take_while(|s| *s == "super").count();
                let base = here.get(..here.len().checked_sub(ups)?)?;
                base.iter().chain(&path.segments[ups..]).cloned().collect()
            }
            _ => {
                let mut child = here.clone();
                child.push(first.clone());
                if self.modules.contains(&child) {
                    here.iter().chain(&path.segments).cloned().collect()
                } else if path.binds.is_none() {
                    let bound = self.bindings.get(&(here.clone(), first.clone()))?;
                    let mut target = self.resolve(bound)?;
                    target.extend(rest.iter().cloned());
                    target
                } else {
                    return None;
                }
            }
        };
        // Follow re-exports: `crate::ws::Conn` is `crate::ws::conn::Conn` when `ws` says
        // `pub use conn::Conn`. Bounded, since a binding may name itself (`use x::x`).
        for _ in 0..8 {
            let depth = self.module_prefix(&full);
            let Some(next) = full.get(depth) else { break };
            let key = (full[..depth].to_vec(), next.clone());
            let Some(bound) = self.bindings.get(&key) else {
                break;
            };
            let Some(mut target) = self.resolve(bound) else {
                break;
            };
            target.extend(full[depth + 1..].iter().cloned());
            if target == full {
                break;
            }
            full = target;
        }
        let depth = self.module_prefix(&full);
        Some(full[..depth].to_vec())
    }

    /// How many leading segments of `path` name a module.
    fn module_prefix(&self, path: &[String]) -> usize {
        (0..=path.len())
            .rev()
            .find(|&n| self.modules.contains(&path[..n]))
            .unwrap_or(0)
    }

    /// The node a module belongs to: its top-level module, or two levels for a directory
    /// module's children; `tests` modules fold into their parent. `None` for the root.
    fn node(&self, module: &ModPath) -> Option<String> {
        let mut module: &[String] = module;
        while module.last().is_some_and(|m| m == "tests") {
            module = &module[..module.len() - 1];
        }
        let top = module.first()?;
        match module.get(1) {
            Some(child) if self.dirs.contains(top) => Some(format!("{top}::{child}")),
            _ => Some(top.clone()),
        }
    }

    /// Every import between two nodes, with the files and paths that make it.
    fn imports(&self) -> BTreeMap<(String, String), BTreeSet<String>> {
        let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (file, path) in &self.written {
            let (Some(from), Some(target)) = (self.node(&path.module), self.resolve(path)) else {
                continue;
            };
            let Some(to) = self.node(&target) else {
                continue;
            };
            if from != to {
                let why = format!("{file}: {}", path.segments.join("::"));
                edges.entry((from, to)).or_default().insert(why);
            }
        }
        edges
    }
}

/// The groups of nodes that import each other around a loop (strongly connected components
/// of more than one node), each sorted.
fn loops(edges: &BTreeMap<(String, String), BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
        next.entry(to).or_default();
    }
    // Tarjan's algorithm, iterative.
    let nodes: Vec<&str> = next.keys().copied().collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut low: HashMap<&str, usize> = HashMap::new();
    let mut on_stack: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = Vec::new();
    let mut found = Vec::new();
    for &start in &nodes {
        if index.contains_key(start) {
            continue;
        }
        let mut work: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some(&mut (v, ref mut child)) = work.last_mut() {
            if *child == 0 && !index.contains_key(v) {
                let n = index.len();
                index.insert(v, n);
                low.insert(v, n);
                stack.push(v);
                on_stack.insert(v);
            }
            let targets = &next[v];
            if let Some(&w) = targets.get(*child) {
                *child += 1;
                if !index.contains_key(w) {
                    work.push((w, 0));
                } else if on_stack.contains(w) {
                    let lw = index[w].min(low[v]);
                    low.insert(v, lw);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                let lp = low[parent].min(low[v]);
                low.insert(parent, lp);
            }
            if low[v] == index[v] {
                let mut group = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack.remove(w);
                    group.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    found.push(group);
                }
            }
        }
    }
    found
}

/// The loops of one crate, printed with the imports that make them; empty when there is none.
fn describe_loops(sources: &[Source]) -> String {
    let krate = Crate::new(sources);
    let edges = krate.imports();
    let mut report = String::new();
    for group in loops(&edges) {
        report.push_str(&format!("loop: {}\n", group.join(" ⇄ ")));
        for ((from, to), why) in &edges {
            if group.contains(from) && group.contains(to) {
                report.push_str(&format!("  {from} → {to}\n"));
                for w in why.iter().take(3) {
                    report.push_str(&format!("      {w}\n"));
                }
            }
        }
    }
    report
}

#[test]
fn no_two_modules_of_edge_or_handlers_import_each_other() {
    let mut report = String::new();
    for root in CRATES {
        let sources = read_tree(root);
        let imports = Crate::new(&sources).imports().len();
        // A reader that found nothing would find no loop either.
        assert!(imports > 50, "{root}: only {imports} imports read");
        report.push_str(&describe_loops(&sources));
    }
    assert!(
        report.is_empty(),
        "modules that import each other (move what both need into one of them, or into a \
         module of its own):\n{report}"
    );
}

#[test]
fn no_file_of_edge_or_handlers_is_long_without_a_reason() {
    let mut long = Vec::new();
    let mut seen = BTreeSet::new();
    for root in CRATES {
        for source in read_tree(root) {
            let lines = source.text.lines().count();
            if lines > MAX_LINES {
                seen.insert(source.file.clone());
                if !LONG_FILES.iter().any(|(file, _)| *file == source.file) {
                    long.push(format!("{} ({lines} lines)", source.file));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines: split them by concept, or name them in LONG_FILES \
         (tests/shape.rs) with a reason:\n  {}",
        long.join("\n  ")
    );
    let stale: Vec<&str> = LONG_FILES
        .iter()
        .map(|(file, _)| *file)
        .filter(|file| !seen.contains(*file))
        .collect();
    assert!(
        stale.is_empty(),
        "LONG_FILES names files that are no longer over {MAX_LINES} lines; remove them: {stale:?}"
    );
}

/// A crate made of the given `(path, text)` files, as [`read_tree`] would read it.
fn fake(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(file, text)| Source {
            file: file.to_string(),
            module: module_of(Path::new(file)),
            text: text.to_string(),
        })
        .collect()
}

#[test]
fn the_check_finds_a_loop_however_it_is_written() {
    // Directly, through `crate::` paths in code rather than `use`.
    let direct = fake(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a.rs", "pub fn f() { crate::b::g() }"),
        ("b.rs", "pub fn g() {}\npub fn h() { crate::a::f() }"),
    ]);
    assert!(describe_loops(&direct).contains("loop: a ⇄ b"));
    // Around three modules, through a use tree and a re-export from the crate root.
    let around = fake(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c; pub use c::C;"),
        ("a.rs", "use crate::{b::{self, B}};"),
        ("b.rs", "use crate::C; pub struct B;"),
        (
            "c.rs",
            "// use crate::b; is a comment\npub struct C; fn x() { crate::a::f(); }",
        ),
    ]);
    assert!(describe_loops(&around).contains("loop: a ⇄ b ⇄ c"));
    // Between a directory module and its child: the child uses an item the parent defines.
    let parent = fake(&[
        ("lib.rs", "pub mod rt;"),
        (
            "rt/mod.rs",
            "mod key; pub struct Settings; fn run() { key::go() }",
        ),
        ("rt/key.rs", "use super::Settings; pub fn go() {}"),
    ]);
    assert!(describe_loops(&parent).contains("loop: rt ⇄ rt::key"));
}

#[test]
fn the_check_passes_what_is_no_loop() {
    let fine = fake(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod rt;"),
        // A re-export: `super::Conn` is the sibling that defines it, not the parent.
        (
            "rt/mod.rs",
            "mod conn; mod key; pub use conn::Conn; fn run() { key::go() }",
        ),
        ("rt/conn.rs", "pub struct Conn;"),
        ("rt/key.rs", "use super::Conn; pub fn go() {}"),
        // Tests fold into their module; strings, comments and `r#` names are no paths.
        (
            "a.rs",
            "use crate::b::B; let s = \"crate::b::x\"; let r#type = 1; \
             #[cfg(test)] mod tests { use super::*; use crate::a::x; }",
        ),
        (
            "b.rs",
            "pub struct B; /* crate::a::f() */ fn c() -> char { 'a' }",
        ),
    ]);
    assert_eq!(describe_loops(&fine), "");
}
