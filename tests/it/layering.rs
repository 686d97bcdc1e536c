//! The module layering of `src/`, checked: a module names (`crate::x`) only
//! modules of lower layers. wire → router → engine/sys → lease/auth →
//! storage/postgres, with plain types (`logical`, `random`) at the bottom;
//! the composition root (`server`, `config`) and the programs built on it
//! (`agent`, `bench`, `cli`) above all of them; `client` depends on nothing
//! of the server. `crate::Error`, which wraps every layer's error, belongs
//! to the router and above.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module's layer; a module may name only lower layers.
const LAYERS: &[(&str, u32)] = &[
    // Randomness, as std is: below everything.
    ("random", 0),
    ("logical", 1),
    // Metrics: every layer records into it, it names none.
    ("telemetry", 2),
    ("storage", 10),
    ("postgres", 10),
    ("client", 10),
    ("lease", 20),
    ("auth", 20),
    ("audit", 20),
    ("quota", 20),
    ("engine", 30),
    ("sys", 30),
    ("error", 35),
    ("router", 40),
    ("wire", 50),
    ("listener", 55),
    ("config", 57),
    ("server", 60),
    ("agent", 65),
    ("bench", 70),
    ("cli", 80),
];

/// Arrows that still run up, each with what removes it. The test fails
/// when one is added, and when one listed here is gone (so the list only
/// shrinks).
const KNOWN: &[(&str, &str, &str)] = &[];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(from, to)` for every `crate::to` in a module `from` whose layer is not
/// below `from`'s, with one place it happens.
fn upward_arrows() -> Vec<(String, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let module = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        let Some(from) = layer(&module) else {
            assert!(
                module == "lib" || module == "main",
                "src/{relative}: module {module:?} has no layer in LAYERS"
            );
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                let name: String = rest[at + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + 7..];
                let target = if name == "Error" {
                    "error".to_string()
                } else {
                    name
                };
                let Some(to) = layer(&target) else { continue };
                if target != module && to >= from {
                    found.push((
                        module.clone(),
                        target,
                        format!("src/{relative}:{}", number + 1),
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_names_a_layer_above_it() {
    let arrows = upward_arrows();
    let pairs: BTreeSet<(String, String)> = arrows
        .iter()
        .map(|(f, t, _)| (f.clone(), t.clone()))
        .collect();
    let known: BTreeSet<(String, String)> = KNOWN
        .iter()
        .map(|(f, t, _)| (f.to_string(), t.to_string()))
        .collect();
    let new: Vec<&(String, String, String)> = arrows
        .iter()
        .filter(|(f, t, _)| !known.contains(&(f.clone(), t.clone())))
        .collect();
    assert!(
        new.is_empty(),
        "modules naming a layer above them: {new:#?}"
    );
    let gone: Vec<&(String, String)> = known.difference(&pairs).collect();
    assert!(
        gone.is_empty(),
        "no longer happen, remove them from KNOWN: {gone:?}"
    );
}
