//! Effective capabilities of a set of policies on a path, by Vault's rules:
//! an exact pattern wins; otherwise the highest-priority matching glob alone
//! decides; rules for the same pattern in several policies are merged, and
//! `deny` wins within them.

use std::collections::{BTreeMap, BTreeSet};

use super::policy::{Capability, Policy};

pub struct Acl {
    root: bool,
    exact: BTreeMap<String, BTreeSet<Capability>>,
    globs: Vec<(String, BTreeSet<Capability>)>,
}

fn merge(into: &mut BTreeSet<Capability>, caps: &BTreeSet<Capability>) {
    into.extend(caps.iter().copied());
    if into.contains(&Capability::Deny) {
        into.clear();
        into.insert(Capability::Deny);
    }
}

/// Whether a glob pattern (`+` segments, optional trailing `*`) matches.
fn glob_matches(pattern: &str, path: &str) -> bool {
    let (body, prefix) = match pattern.strip_suffix('*') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let pat_segments: Vec<&str> = body.split('/').collect();
    let mut rest = path;
    for (i, seg) in pat_segments.iter().enumerate() {
        let last = i == pat_segments.len() - 1;
        if last {
            if *seg == "+" {
                let (s, tail) = match rest.find('/') {
                    Some(j) => (&rest[..j], &rest[j..]),
                    None => (rest, ""),
                };
                if s.is_empty() && !prefix {
                    return false;
                }
                return if prefix { true } else { tail.is_empty() };
            }
            return if prefix {
                rest.starts_with(seg)
            } else {
                rest == *seg
            };
        }
        let Some(j) = rest.find('/') else {
            return false;
        };
        let s = &rest[..j];
        if *seg == "+" {
            if s.is_empty() {
                return false;
            }
        } else if s != *seg {
            return false;
        }
        rest = &rest[j + 1..];
    }
    true
}

/// Vault's priority: true when `a` has lower priority than `b`.
fn lower(a: &str, b: &str) -> bool {
    let first = |p: &str| p.find(['+', '*']).unwrap_or(p.len());
    let (fa, fb) = (first(a), first(b));
    if fa != fb {
        return fa < fb;
    }
    let (sa, sb) = (a.ends_with('*'), b.ends_with('*'));
    if sa != sb {
        return sa;
    }
    let plus = |p: &str| p.split('/').filter(|s| *s == "+").count();
    let (pa, pb) = (plus(a), plus(b));
    if pa != pb {
        return pa > pb;
    }
    if a.len() != b.len() {
        return a.len() < b.len();
    }
    a < b
}

impl Acl {
    pub fn new(policies: &[Policy]) -> Acl {
        let mut exact: BTreeMap<String, BTreeSet<Capability>> = BTreeMap::new();
        let mut globs: BTreeMap<String, BTreeSet<Capability>> = BTreeMap::new();
        for policy in policies {
            for rule in &policy.rules {
                let target =
                    if rule.pattern.contains('*') || rule.pattern.split('/').any(|s| s == "+") {
                        &mut globs
                    } else {
                        &mut exact
                    };
                merge(
                    target.entry(rule.pattern.clone()).or_default(),
                    &rule.capabilities,
                );
            }
        }
        Acl {
            root: false,
            exact,
            globs: globs.into_iter().collect(),
        }
    }

    pub fn root() -> Acl {
        Acl {
            root: true,
            exact: BTreeMap::new(),
            globs: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    pub fn capabilities(&self, path: &str) -> BTreeSet<Capability> {
        if self.root {
            use Capability::*;
            return [Create, Read, Update, Delete, List, Sudo, Patch]
                .into_iter()
                .collect();
        }
        if let Some(caps) = self.exact.get(path) {
            return caps.clone();
        }
        let mut best: Option<&(String, BTreeSet<Capability>)> = None;
        for candidate in self.globs.iter().filter(|(p, _)| glob_matches(p, path)) {
            best = match best {
                Some(b) if !lower(&b.0, &candidate.0) => Some(b),
                _ => Some(candidate),
            };
        }
        best.map(|(_, c)| c.clone()).unwrap_or_default()
    }

    pub fn allows(&self, path: &str, needed: Capability) -> bool {
        self.root || self.capabilities(path).contains(&needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::parse;

    fn acl(texts: &[&str]) -> Acl {
        let policies: Vec<Policy> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse(&format!("p{i}"), t).unwrap())
            .collect();
        Acl::new(&policies)
    }

    fn caps(acl: &Acl, path: &str) -> Vec<&'static str> {
        acl.capabilities(path).iter().map(|c| c.as_str()).collect()
    }

    #[test]
    fn exact_paths_beat_globs() {
        let a = acl(&[r#"path "secret/*" { capabilities = ["read"] }
                        path "secret/foo" { capabilities = ["update"] }"#]);
        assert_eq!(caps(&a, "secret/foo"), ["update"]);
        assert_eq!(caps(&a, "secret/bar"), ["read"]);
        assert!(caps(&a, "other").is_empty());
    }

    #[test]
    fn the_longer_glob_wins_and_later_wildcards_win() {
        let a = acl(&[r#"path "secret/*" { capabilities = ["read"] }
                        path "secret/foo/*" { capabilities = ["list"] }
                        path "secret/+/bar" { capabilities = ["delete"] }"#]);
        assert_eq!(caps(&a, "secret/foo/x"), ["list"]);
        // `+` comes later than the `*` of secret/*, so it has priority.
        assert_eq!(caps(&a, "secret/zzz/bar"), ["delete"]);
        // secret/foo/* has its first wildcard later than secret/+/bar.
        assert_eq!(caps(&a, "secret/foo/bar"), ["list"]);
    }

    #[test]
    fn plus_matches_exactly_one_segment() {
        let a = acl(&[r#"path "a/+/c" { capabilities = ["read"] }"#]);
        assert_eq!(caps(&a, "a/b/c"), ["read"]);
        assert!(caps(&a, "a/b/x/c").is_empty());
        assert!(caps(&a, "a//c").is_empty());
        assert!(caps(&a, "a/b/c/d").is_empty());
    }

    #[test]
    fn same_pattern_merges_across_policies_and_deny_wins() {
        let a = acl(&[
            r#"path "db/*" { capabilities = ["read"] }"#,
            r#"path "db/*" { capabilities = ["list"] }"#,
        ]);
        assert_eq!(caps(&a, "db/x"), ["read", "list"]);
        let a = acl(&[
            r#"path "db/*" { capabilities = ["read"] }"#,
            r#"path "db/*" { capabilities = ["deny"] }"#,
        ]);
        assert_eq!(caps(&a, "db/x"), ["deny"]);
        assert!(!a.allows("db/x", Capability::Read));
    }

    #[test]
    fn list_paths_with_a_trailing_slash_match_globs_and_exact_folders() {
        let a = acl(&[r#"path "database/roles/*" { capabilities = ["list"] }"#]);
        assert!(a.allows("database/roles/", Capability::List));
        let a = acl(&[r#"path "database/roles/" { capabilities = ["list"] }"#]);
        assert!(a.allows("database/roles/", Capability::List));
        assert!(!a.allows("database/roles/x", Capability::List));
    }

    #[test]
    fn root_allows_everything() {
        let a = Acl::root();
        assert!(a.is_root() && a.allows("anything/at/all", Capability::Sudo));
    }
}
