//! The compiler's crates are layered: no two modules depend on each other, directly or through
//! others. This test reads the sources (from each `lib.rs`, following `mod` declarations),
//! collects the `crate::`, `super::` and `self::` paths of non-test code, and fails on any cycle
//! among sibling modules (at every level of the module tree).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module path from the crate root: `["passes", "const_fold"]`.
type ModPath = Vec<String>;

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

/// Collects the paths a module's non-test code names, and the modules it declares.
struct Collector {
    paths: Vec<Vec<String>>,
    /// `mod x;` declarations (inline `mod x { ... }` count as part of the file's module).
    file_mods: Vec<String>,
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => out.push([prefix.as_slice(), &[n.ident.to_string()]].concat()),
        syn::UseTree::Rename(r) => out.push([prefix.as_slice(), &[r.ident.to_string()]].concat()),
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_cfg_test(&m.attrs) {
            return;
        }
        match &m.content {
            None => self.file_mods.push(m.ident.to_string()),
            Some(_) => syn::visit::visit_item_mod(self, m),
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_cfg_test(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if is_cfg_test(&u.attrs) {
            return;
        }
        let mut out = vec![];
        use_paths(&u.tree, &mut vec![], &mut out);
        self.paths.extend(out);
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.paths.push(segs);
        syn::visit::visit_path(self, p);
    }
}

/// Every module of the crate whose root is `lib` and the module paths each one names.
fn crate_modules(lib: &Path) -> BTreeMap<ModPath, Vec<Vec<String>>> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<(ModPath, PathBuf, PathBuf)> = vec![(
        vec![],
        lib.to_path_buf(),
        lib.parent().unwrap().to_path_buf(),
    )];
    while let Some((module, file, dir)) = todo.pop() {
        let src = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let ast = syn::parse_file(&src).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let mut c = Collector {
            paths: vec![],
            file_mods: vec![],
        };
        c.visit_file(&ast);
        for name in &c.file_mods {
            let (flat, nested) = (
                dir.join(format!("{name}.rs")),
                dir.join(name).join("mod.rs"),
            );
            let (child_file, child_dir) = if flat.exists() {
                (flat, dir.join(name))
            } else {
                (nested, dir.join(name))
            };
            let mut child = module.clone();
            child.push(name.clone());
            todo.push((child, child_file, child_dir));
        }
        out.insert(module, c.paths);
    }
    out
}

/// Resolves `path` named in `module` to the deepest module of `modules` it lies in, if it is
/// a path into this crate.
fn resolve(module: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> Option<ModPath> {
    let mut base = module.clone();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut target = base.clone();
    for seg in rest {
        let mut next = target.clone();
        next.push(seg.clone());
        if !modules.contains(&next) {
            break;
        }
        target = next;
    }
    Some(target)
}

/// The edges between siblings: `a` names something in `b`, and `a`, `b` are the children of
/// their deepest common ancestor.
fn sibling_edges(crate_mods: &BTreeMap<ModPath, Vec<Vec<String>>>) -> BTreeSet<(ModPath, ModPath)> {
    let modules: BTreeSet<ModPath> = crate_mods.keys().cloned().collect();
    let mut edges = BTreeSet::new();
    for (module, paths) in crate_mods {
        for p in paths {
            let Some(target) = resolve(module, p, &modules) else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < module.len() && common < target.len() {
                edges.insert((module[..=common].to_vec(), target[..=common].to_vec()));
            }
        }
    }
    edges
}

/// A cycle in `edges`, if there is one, as the list of modules along it.
fn find_cycle(edges: &BTreeSet<(ModPath, ModPath)>) -> Option<Vec<ModPath>> {
    let mut succ: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (a, b) in edges {
        succ.entry(a).or_default().push(b);
    }
    // Depth-first search with colours: 1 = on the stack, 2 = done.
    fn dfs<'a>(
        v: &'a ModPath,
        succ: &BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
        colour: &mut BTreeMap<&'a ModPath, u8>,
        stack: &mut Vec<&'a ModPath>,
    ) -> Option<Vec<ModPath>> {
        colour.insert(v, 1);
        stack.push(v);
        for &w in succ.get(v).map(Vec::as_slice).unwrap_or(&[]) {
            match colour.get(w) {
                Some(1) => {
                    let at = stack.iter().position(|&x| x == w).unwrap();
                    let mut cycle: Vec<ModPath> = stack[at..].iter().map(|&m| m.clone()).collect();
                    cycle.push(w.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = dfs(w, succ, colour, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        colour.insert(v, 2);
        None
    }
    let mut colour = BTreeMap::new();
    let starts: Vec<&ModPath> = succ.keys().copied().collect();
    for v in starts {
        if !colour.contains_key(v) {
            let mut stack = vec![];
            if let Some(c) = dfs(v, &succ, &mut colour, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn check_crate(lib: &Path) -> Result<usize, String> {
    let mods = crate_modules(lib);
    let edges = sibling_edges(&mods);
    match find_cycle(&edges) {
        None => Ok(edges.len()),
        Some(c) => Err(c
            .iter()
            .map(|m| format!("crate::{}", m.join("::")))
            .collect::<Vec<_>>()
            .join(" -> ")),
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn compiler_crates_have_no_module_cycles() {
    let ws = workspace();
    for krate in ["ir", "compiler", "frontend"] {
        let lib = ws.join(krate).join("src/lib.rs");
        if !lib.exists() {
            continue;
        }
        match check_crate(&lib) {
            Ok(edges) => assert!(edges > 0 || krate == "frontend", "{krate}: no edges found"),
            Err(cycle) => panic!("module cycle in {krate}: {cycle}"),
        }
    }
}

#[test]
fn a_cycle_is_found() {
    let dir = std::env::temp_dir().join(format!("flexsn-module-graph-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("b")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("lib.rs", "mod a; mod b; mod c;");
    write("a.rs", "use crate::b::inner::f; pub fn g() {}");
    write("b/mod.rs", "pub mod inner;");
    write("b/inner.rs", "pub fn f() { super::super::c::h() }");
    write(
        "c.rs",
        "pub fn h() { crate::a::g() }\n#[cfg(test)] mod tests { use crate::b; }",
    );
    let err = check_crate(&dir.join("lib.rs")).unwrap_err();
    assert!(
        err.contains("crate::a") && err.contains("crate::b") && err.contains("crate::c"),
        "{err}"
    );
    // Without the back edge from `c` there is none; test code does not count.
    write(
        "c.rs",
        "pub fn h() {}\n#[cfg(test)] mod tests { use crate::a; }",
    );
    assert_eq!(check_crate(&dir.join("lib.rs")), Ok(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
