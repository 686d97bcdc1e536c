//! The effective capabilities of a set of policies on a request path, as
//! Vault computes them (`vault/acl.go`, and the "priority matching" section
//! of Vault's policies concept page):
//!
//! * Rules for the same pattern, from one or several policies, are merged:
//!   their capabilities are united, and `deny` anywhere leaves only `deny`.
//! * A rule without `*` or `+` segments applies to exactly its path and wins
//!   over every glob.
//! * Otherwise the matching glob with the highest priority alone decides. A
//!   pattern `P1` has lower priority than `P2` when, in this order: its first
//!   `+` or `*` comes earlier; it ends in `*` and `P2` does not; it has more
//!   `+` segments; it is shorter; it is lexicographically smaller.
//!
//! A trailing `*` is a plain string-prefix match (`secret/fo*` matches
//! `secret/foo/bar`). A `+` segment matches any one segment, the empty one
//! included (`a/+/c` matches `a//c`), as in Vault.
//!
//! List requests get Vault's fallbacks, in Vault's order: the exact rule
//! for the path, then for the path without its trailing `/`, then the best
//! glob for the path, then the best glob for the path without the `/`.
//! `capabilities` looks up as a list request does (as Vault's
//! `sys/capabilities` does).
//!
//! The rule found also carries the block's parameter constraints, merged
//! across policies as Vault merges them, and [`Acl::parameters_allow`]
//! applies them to a request's data (see [`Permissions`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::policy::{Capability, Parameters, PathRule, Policy};

/// What the rules for one pattern grant, merged across policies.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    pub capabilities: BTreeSet<Capability>,
    pub parameters: Parameters,
}

/// Compiled access rules of a token's policies.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    /// Patterns without `*` or `+` segments.
    exact: HashMap<String, Permissions>,
    /// Patterns ending in `*` without `+` segments, keyed without the `*`.
    prefixes: HashMap<String, Permissions>,
    /// Patterns with `+` segments, with or without a trailing `*`.
    segments: Vec<SegmentRule>,
}

#[derive(Debug, Clone)]
struct SegmentRule {
    /// The pattern without its trailing `*`.
    body: String,
    /// Whether the pattern ends in `*`.
    prefix: bool,
    /// Byte offset of the first `+` in the pattern.
    first_wildcard: usize,
    /// Number of `+` segments.
    wildcards: usize,
    permissions: Permissions,
}

/// Orders matching globs: the greatest rank has the highest priority.
/// Fields: position of the first `+`/`*`; not ending in `*`; fewer `+`
/// segments; longer (without the `*`); lexicographically greater.
type Rank<'a> = (usize, bool, Reverse<usize>, usize, &'a str);

impl SegmentRule {
    fn rank(&self) -> Rank<'_> {
        (
            self.first_wildcard,
            !self.prefix,
            Reverse(self.wildcards),
            self.body.len(),
            &self.body,
        )
    }

    fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let pattern: Vec<&str> = self.body.split('/').collect();
        if parts.len() < pattern.len() || (!self.prefix && parts.len() != pattern.len()) {
            return false;
        }
        let last = pattern.len() - 1;
        pattern.iter().zip(&parts).enumerate().all(|(i, (p, s))| {
            *p == "+" || p == s || (self.prefix && i == last && s.starts_with(p))
        })
    }
}

fn prefix_rank(prefix: &str) -> Rank<'_> {
    (prefix.len(), false, Reverse(0), prefix.len(), prefix)
}

/// Vault's test for a pattern with `+` segments.
fn has_segment_wildcard(pattern: &str) -> bool {
    pattern == "+" || pattern.starts_with("+/") || pattern.contains("/+")
}

/// Adds `rule` to the permissions already gathered for its pattern, as
/// Vault's `NewACL` does: `deny` anywhere leaves only `deny`; capabilities
/// are united; the smaller non-zero wrapping TTL wins; parameter value
/// lists are joined per name, an empty list (any value) absorbing the
/// others; required parameters are united.
fn merge(into: Option<&mut Permissions>, rule: &PathRule) -> Option<Permissions> {
    let Some(existing) = into else {
        return Some(Permissions {
            capabilities: rule.capabilities.clone(),
            parameters: rule.parameters.clone(),
        });
    };
    if existing.capabilities.contains(&Capability::Deny) {
        return None;
    }
    if rule.capabilities.contains(&Capability::Deny) {
        existing.capabilities = BTreeSet::from([Capability::Deny]);
        existing.parameters.allowed.clear();
        existing.parameters.denied.clear();
        return None;
    }
    existing
        .capabilities
        .extend(rule.capabilities.iter().copied());
    let (have, new) = (&mut existing.parameters, &rule.parameters);
    for (mine, theirs) in [
        (&mut have.max_wrapping_ttl, new.max_wrapping_ttl),
        (&mut have.min_wrapping_ttl, new.min_wrapping_ttl),
    ] {
        if theirs != 0 && (*mine == 0 || theirs < *mine) {
            *mine = theirs;
        }
    }
    join_values(&mut have.allowed, &new.allowed);
    join_values(&mut have.denied, &new.denied);
    for name in &new.required {
        if !have.required.contains(name) {
            have.required.push(name.clone());
        }
    }
    None
}

fn join_values(into: &mut BTreeMap<String, Vec<Value>>, from: &BTreeMap<String, Vec<Value>>) {
    for (name, values) in from {
        match into.get_mut(name) {
            Some(existing) if existing.is_empty() => {}
            Some(_) if values.is_empty() => {
                into.insert(name.clone(), Vec::new());
            }
            Some(existing) => existing.extend(values.iter().cloned()),
            None => {
                into.insert(name.clone(), values.clone());
            }
        }
    }
}

/// Whether a request value matches one of a policy's values: strings by
/// Vault's globs (`*` at the start and/or end), others by equality. An
/// empty list matches everything.
fn value_in_list(value: &Value, list: &[Value]) -> bool {
    list.is_empty()
        || list.iter().any(|item| match (item, value) {
            (Value::String(pattern), Value::String(text)) => glob_match(pattern, text),
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            _ => item == value,
        })
}

/// Vault's `strutil.GlobbedStringsMatch`.
fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.len() < 2 {
        return pattern == text;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(_), Some(_)) => text.contains(&pattern[1..pattern.len() - 1]),
        (Some(suffix), None) => text.ends_with(suffix),
        (None, Some(prefix)) => text.starts_with(prefix),
        (None, None) => pattern == text,
    }
}

impl Acl {
    /// Compiles the rules of `policies`. No policies means no access.
    pub fn new(policies: &[Policy]) -> Acl {
        let mut exact: HashMap<String, Permissions> = HashMap::new();
        let mut prefixes: HashMap<String, Permissions> = HashMap::new();
        let mut segments: HashMap<String, Permissions> = HashMap::new();
        for rule in policies.iter().flat_map(|p| &p.rules) {
            let pattern = rule.pattern.as_str();
            let (map, key) = if has_segment_wildcard(pattern) {
                (&mut segments, pattern)
            } else if let Some(prefix) = pattern.strip_suffix('*') {
                (&mut prefixes, prefix)
            } else {
                (&mut exact, pattern)
            };
            if let Some(first) = merge(map.get_mut(key), rule) {
                map.insert(key.to_string(), first);
            }
        }
        let segments = segments
            .into_iter()
            .map(|(pattern, permissions)| {
                let first_wildcard = pattern.find('+').unwrap_or(pattern.len());
                let (body, prefix) = match pattern.strip_suffix('*') {
                    Some(body) => (body.to_string(), true),
                    None => (pattern, false),
                };
                let wildcards = body.split('/').filter(|s| *s == "+").count();
                SegmentRule {
                    body,
                    prefix,
                    first_wildcard,
                    wildcards,
                    permissions,
                }
            })
            .collect();
        Acl {
            root: false,
            exact,
            prefixes,
            segments,
        }
    }

    /// The ACL of the `root` policy: everything is allowed, sudo included.
    pub fn root() -> Acl {
        Acl {
            root: true,
            ..Acl::default()
        }
    }

    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The effective capabilities on `path` (an API path after `/v1/`),
    /// looked up as a list request is (Vault's `Capabilities`). Empty means
    /// no access; when denied the set is exactly `{Deny}`. Root gets every
    /// capability except `Deny`.
    pub fn capabilities(&self, path: &str) -> BTreeSet<Capability> {
        self.capabilities_for(path, true)
    }

    /// The effective capabilities for an operation on `path`; `list` turns
    /// on the list fallbacks.
    pub fn capabilities_for(&self, path: &str, list: bool) -> BTreeSet<Capability> {
        if self.root {
            return Capability::ALL
                .into_iter()
                .filter(|c| *c != Capability::Deny)
                .collect();
        }
        let mut capabilities = self
            .permissions(path, list)
            .map(|p| p.capabilities.clone())
            .unwrap_or_default();
        if capabilities.contains(&Capability::Deny) {
            capabilities = BTreeSet::from([Capability::Deny]);
        }
        capabilities
    }

    /// Whether `needed` is granted on `path`. Root is allowed everything;
    /// `Deny` is never "allowed".
    pub fn allows(&self, path: &str, needed: Capability) -> bool {
        needed != Capability::Deny && (self.root || self.capabilities(path).contains(&needed))
    }

    /// The merged rule that decides `path`, in Vault's lookup order.
    fn permissions(&self, path: &str, list: bool) -> Option<&Permissions> {
        let path = path.trim_start_matches('/');
        let folder = path.strip_suffix('/').filter(|_| list);
        self.exact
            .get(path)
            .or_else(|| self.exact.get(folder?))
            .or_else(|| self.best_glob(path))
            .or_else(|| self.best_glob(folder?))
    }

    /// Whether the request's parameters pass the rule deciding `path`, as
    /// Vault's `AllowOperation` checks them after the capability: a rule
    /// with a wrapping TTL needs a wrapped request (pgsecrets wraps none,
    /// so it refuses); for reads and writes, every required parameter must
    /// be present, no parameter may be denied (a `*` key denies any), and
    /// when allowed parameters are set every parameter must be among them
    /// with an allowed value (a `*` key allows any other name).
    pub fn parameters_allow(
        &self,
        path: &str,
        list: bool,
        carries_data: bool,
        data: &Map<String, Value>,
    ) -> bool {
        if self.root {
            return true;
        }
        let Some(permissions) = self.permissions(path, list) else {
            return false;
        };
        let rules = &permissions.parameters;
        if rules.min_wrapping_ttl != 0 || rules.max_wrapping_ttl != 0 {
            return false;
        }
        if !carries_data {
            return true;
        }
        if rules
            .required
            .iter()
            .any(|name| !data.contains_key(&name.to_lowercase()))
        {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        if !rules.denied.is_empty() {
            if rules.denied.contains_key("*") {
                return false;
            }
            let denied = data.iter().any(|(name, value)| {
                rules
                    .denied
                    .get(&name.to_lowercase())
                    .is_some_and(|list| value_in_list(value, list))
            });
            if denied {
                return false;
            }
        }
        if rules.allowed.is_empty() {
            return true;
        }
        let allow_all = rules.allowed.contains_key("*");
        if allow_all && rules.allowed.len() == 1 {
            return true;
        }
        data.iter().all(
            |(name, value)| match rules.allowed.get(&name.to_lowercase()) {
                Some(list) => value_in_list(value, list),
                None => allow_all,
            },
        )
    }

    /// Whether the policies grant anything at or below `mount` (a mount
    /// path such as `database/`): Vault's test for showing a mount in
    /// `sys/internal/ui/mounts`. A capability on the mount path itself, an
    /// exact or prefix rule below it, or a `+` rule that can match below it
    /// counts; `deny` rules do not.
    pub fn grants_anything_under(&self, mount: &str) -> bool {
        if self.root {
            return true;
        }
        let grants = |p: &Permissions| {
            !p.capabilities.is_empty() && !p.capabilities.contains(&Capability::Deny)
        };
        let on_mount = self.capabilities(mount);
        if !on_mount.is_empty() && !on_mount.contains(&Capability::Deny) {
            return true;
        }
        let mount_segments: Vec<&str> = mount.trim_end_matches('/').split('/').collect();
        let segment_rule_reaches = |rule: &SegmentRule| {
            let pattern: Vec<&str> = rule.body.split('/').collect();
            mount_segments
                .iter()
                .enumerate()
                .all(|(i, m)| match pattern.get(i) {
                    Some(p) if i + 1 == pattern.len() && rule.prefix => {
                        *p == "+" || m.starts_with(p)
                    }
                    Some(p) => *p == "+" || p == m,
                    // A shorter pattern matched every segment it has as a prefix.
                    None => rule.prefix,
                })
        };
        self.exact
            .iter()
            .chain(self.prefixes.iter())
            .any(|(pattern, p)| pattern.starts_with(mount) && grants(p))
            || self
                .segments
                .iter()
                .any(|rule| grants(&rule.permissions) && segment_rule_reaches(rule))
    }

    /// The capabilities of the highest-priority glob matching `path`.
    fn best_glob(&self, path: &str) -> Option<&Permissions> {
        // Among plain prefix rules the longest matching one ranks highest.
        let mut best: Option<(Rank<'_>, &Permissions)> = (0..=path.len())
            .rev()
            .filter(|&i| path.is_char_boundary(i))
            .find_map(|i| {
                self.prefixes
                    .get_key_value(&path[..i])
                    .map(|(prefix, caps)| (prefix_rank(prefix), caps))
            });
        for rule in self.segments.iter().filter(|r| r.matches(path)) {
            let rank = rule.rank();
            let better = match &best {
                Some((b, _)) => rank > *b,
                None => true,
            };
            if better {
                best = Some((rank, &rule.permissions));
            }
        }
        best.map(|(_, caps)| caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::parse;
    use Capability::*;

    fn acl(texts: &[&str]) -> Acl {
        let policies: Vec<Policy> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse(&format!("p{i}"), t).unwrap())
            .collect();
        Acl::new(&policies)
    }

    /// One policy from `(pattern, capabilities)` pairs.
    fn rules(rules: &[(&str, &str)]) -> String {
        rules
            .iter()
            .map(|(p, c)| format!("path \"{p}\" {{ capabilities = [{c}] }}\n"))
            .collect()
    }

    fn caps(acl: &Acl, path: &str) -> Vec<&'static str> {
        acl.capabilities(path).iter().map(|c| c.as_str()).collect()
    }

    #[test]
    fn exact_rule_beats_every_glob() {
        // Vault docs: "secret/*" grants broadly, "secret/super-secret" denies.
        let a = acl(&[&rules(&[
            (
                "secret/*",
                r#""create", "read", "update", "delete", "list""#,
            ),
            ("secret/super-secret", r#""deny""#),
            ("secret/+", r#""patch""#),
            ("secret/foo", r#""read""#),
            ("secret/foo*", r#""delete""#),
        ])]);
        assert_eq!(caps(&a, "secret/super-secret"), ["deny"]);
        assert!(!a.allows("secret/super-secret", Read));
        assert_eq!(caps(&a, "secret/foo"), ["read"]);
        assert_eq!(caps(&a, "secret/foobar"), ["delete"]);
        assert_eq!(caps(&a, "secret/other"), ["patch"]);
        assert_eq!(
            caps(&a, "secret/other/deeper"),
            ["create", "read", "update", "delete", "list"]
        );
    }

    #[test]
    fn longer_prefix_wins() {
        let a = acl(&[&rules(&[
            ("secret/*", r#""read""#),
            ("secret/foo/*", r#""list""#),
        ])]);
        assert_eq!(caps(&a, "secret/foo/x"), ["list"]);
        assert_eq!(caps(&a, "secret/bar"), ["read"]);
        assert_eq!(caps(&a, "secret/foo"), ["read"]);
    }

    #[test]
    fn later_wildcard_or_non_glob_wins() {
        let a = acl(&[&rules(&[
            ("secret/*", r#""read""#),
            ("secret/+/bar", r#""delete""#),
            ("secret/foo/*", r#""list""#),
        ])]);
        // Same first-wildcard position; secret/* ends in '*' so it loses.
        assert_eq!(caps(&a, "secret/zzz/bar"), ["delete"]);
        // secret/foo/*'s glob comes later than secret/+/bar's '+'.
        assert_eq!(caps(&a, "secret/foo/bar"), ["list"]);
        assert_eq!(caps(&a, "secret/zzz/baz"), ["read"]);
    }

    #[test]
    fn priority_examples_from_vault() {
        // Docs: secret/* beats secret/+/+/foo/* at rule (3), more '+'.
        let a = acl(&[&rules(&[
            ("secret/*", r#""read""#),
            ("secret/+/+/foo/*", r#""list""#),
        ])]);
        assert_eq!(caps(&a, "secret/a/b/foo/c"), ["read"]);

        // acl.go's comments: foo/a* over foo/+, foo/bar/+/baz over
        // foo/+/bar/baz, foo/+/bar over foo/+/ba*, foo/+ over foo/*,
        // foo/+/bar/baz over foo/+/+/baz, foo/+/bar/ba* over foo/+/bar/b*.
        let pairs = [
            ("foo/a*", "foo/+", "foo/abc"),
            ("foo/bar/+/baz", "foo/+/bar/baz", "foo/bar/bar/baz"),
            ("foo/+/bar", "foo/+/ba*", "foo/x/bar"),
            ("foo/+", "foo/*", "foo/x"),
            ("foo/+/bar/baz", "foo/+/+/baz", "foo/x/bar/baz"),
            ("foo/+/bar/ba*", "foo/+/bar/b*", "foo/x/bar/baz"),
        ];
        for (winner, loser, path) in pairs {
            let a = acl(&[&rules(&[(winner, r#""read""#), (loser, r#""list""#)])]);
            assert_eq!(caps(&a, path), ["read"], "{winner} vs {loser} on {path}");
            let a = acl(&[&rules(&[(loser, r#""list""#), (winner, r#""read""#)])]);
            assert_eq!(caps(&a, path), ["read"], "{winner} vs {loser} on {path}");
        }
    }

    #[test]
    fn ties_fall_to_the_lexicographically_greater_pattern() {
        let rule = |body: &str| SegmentRule {
            body: body.into(),
            prefix: false,
            first_wildcard: body.find('+').unwrap(),
            wildcards: 1,
            permissions: Permissions::default(),
        };
        assert!(rule("a/+/c").rank() > rule("a/+/b").rank());
        assert!(rule("a/+/bc").rank() > rule("a/+/c").rank());
    }

    #[test]
    fn same_pattern_merges_across_policies_and_deny_wins() {
        let a = acl(&[
            r#"path "db/*" { capabilities = ["read"] }"#,
            r#"path "db/*" { capabilities = ["list"] }"#,
        ]);
        assert_eq!(caps(&a, "db/x"), ["read", "list"]);

        let a = acl(&[
            r#"path "db/*" { capabilities = ["read"] }
               path "db/+" { capabilities = ["update"] }"#,
            r#"path "db/+" { capabilities = ["deny"] }"#,
            r#"path "db/+" { capabilities = ["create"] }"#,
        ]);
        assert_eq!(caps(&a, "db/x"), ["deny"]);
        assert!(!a.allows("db/x", Update) && !a.allows("db/x", Create));
        assert!(!a.allows("db/x", Deny));
        assert_eq!(caps(&a, "db/x/y"), ["read"]);

        // Repeated within one policy merges the same way.
        let a = acl(&[r#"path "a" { capabilities = ["read"] }
                        path "a" { policy = "deny" }"#]);
        assert_eq!(caps(&a, "a"), ["deny"]);

        // A deny on a lower-priority glob does not reach a path an exact
        // rule or a higher-priority glob decides.
        let a = acl(&[
            r#"path "secret/*" { capabilities = ["deny"] }"#,
            r#"path "secret/app" { capabilities = ["read"] }
               path "secret/+/x" { capabilities = ["read"] }"#,
        ]);
        assert_eq!(caps(&a, "secret/app"), ["read"]);
        assert_eq!(caps(&a, "secret/q/x"), ["read"]);
        assert_eq!(caps(&a, "secret/q/y"), ["deny"]);
    }

    #[test]
    fn plus_matches_exactly_one_segment() {
        let a = acl(&[&rules(&[
            ("a/+/c", r#""read""#),
            ("+", r#""list""#),
            ("+/x", r#""update""#),
            ("secret/+/teamb/*", r#""delete""#),
            ("kv/+/ab*", r#""patch""#),
        ])]);
        assert_eq!(caps(&a, "a/b/c"), ["read"]);
        assert!(caps(&a, "a/b/x/c").is_empty());
        assert!(caps(&a, "a/b/c/d").is_empty());
        assert!(caps(&a, "a/c").is_empty());
        // As in Vault, `+` also matches an empty segment.
        assert_eq!(caps(&a, "a//c"), ["read"]);

        assert_eq!(caps(&a, "sys"), ["list"]);
        assert!(caps(&a, "sys/y").is_empty());
        assert_eq!(caps(&a, "sys/x"), ["update"]);

        assert_eq!(caps(&a, "secret/a/teamb/x/y"), ["delete"]);
        assert_eq!(caps(&a, "secret/a/teamb/"), ["delete"]);
        assert!(caps(&a, "secret/a/teamb").is_empty());
        assert!(caps(&a, "secret/a/b/teamb/x").is_empty());

        assert_eq!(caps(&a, "kv/x/abc/d"), ["patch"]);
        assert_eq!(caps(&a, "kv/x/ab"), ["patch"]);
        assert!(caps(&a, "kv/x/a").is_empty());
        // A '+' inside a segment is a literal character.
        let a = acl(&[&rules(&[("a/b+c", r#""read""#)])]);
        assert_eq!(caps(&a, "a/b+c"), ["read"]);
        assert!(caps(&a, "a/bxc").is_empty());
    }

    #[test]
    fn list_paths_with_a_trailing_slash() {
        let a = acl(&[&rules(&[("database/roles/*", r#""list""#)])]);
        assert!(a.allows("database/roles/", List));
        let a = acl(&[&rules(&[("database/roles/", r#""list""#)])]);
        assert!(a.allows("database/roles/", List));
        assert!(!a.allows("database/roles/x", List));
        assert!(!a.allows("database/roles", List));

        // Vault: an exact rule written without the slash serves the list.
        let a = acl(&[&rules(&[("database/roles", r#""list""#)])]);
        assert!(a.allows("database/roles/", List));
        // ... and so does a `+` rule without the slash (Vault 1.13+).
        let a = acl(&[&rules(&[("+/sys/policies/acl", r#""list""#)])]);
        assert!(a.allows("ns/sys/policies/acl/", List));

        // Globs are tried on the path with its slash first (OpenBao 2.7.2:
        // `sys/capabilities-self` answers ["list"] for "kv2/roles/" here),
        // so "database/roles/*" decides, not the broader "database/*".
        let a = acl(&[&rules(&[
            ("database/*", r#""read""#),
            ("database/roles/*", r#""list""#),
        ])]);
        assert_eq!(caps(&a, "database/roles/"), ["list"]);
        assert_eq!(caps(&a, "database/roles/x"), ["list"]);
        // The issue's case: a deny under a broader read/list rule holds
        // for LIST of the folder.
        let a = acl(&[&rules(&[
            ("database/*", r#""read", "list""#),
            ("database/roles/*", r#""deny""#),
        ])]);
        assert_eq!(caps(&a, "database/roles/"), ["deny"]);
        // Without the slash (a read), the broader rule decides.
        assert_eq!(caps(&a, "database/roles"), ["read", "list"]);
    }

    fn data(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    /// Outcomes recorded from OpenBao 2.7.2 with the same policy.
    #[test]
    fn parameters_are_enforced_as_openbao_does() {
        let a = acl(&[r#"
path "auth/token/create" {
  capabilities = ["create", "update"]
  denied_parameters = { "ttl" = [] }
}
path "kv2/a" {
  capabilities = ["create", "update", "read"]
  allowed_parameters = { "x" = ["fo*", "*ar", "1"], "y" = [] }
  required_parameters = ["y"]
}
path "kv2/b" {
  capabilities = ["create", "update", "read"]
  allowed_parameters = { "*" = [], "x" = ["1"] }
}
path "kv2/w" {
  capabilities = ["create", "update", "read"]
  min_wrapping_ttl = "1s"
}
"#]);
        let check = |path: &str, body: &str| a.parameters_allow(path, false, true, &data(body));
        assert!(!check("auth/token/create", r#"{"ttl": "1h"}"#));
        assert!(check("auth/token/create", r#"{"policies": ["t2"]}"#));
        assert!(check("kv2/a", r#"{"x": "foo", "y": "z"}"#));
        assert!(check("kv2/a", r#"{"x": "bar", "y": "z"}"#));
        assert!(!check("kv2/a", r#"{"x": "baz", "y": "z"}"#));
        assert!(!check("kv2/a", r#"{"x": "foo"}"#), "required y");
        assert!(!check("kv2/a", r#"{"x": 1, "y": "z"}"#), "1 is not \"1\"");
        assert!(check("kv2/a", r#"{"x": "1", "y": "z"}"#));
        assert!(
            check("kv2/a", r#"{"X": "foo", "y": "z"}"#),
            "names are lowercased"
        );
        assert!(!check("kv2/a", r#"{"y": "z", "q": 1}"#));
        assert!(!check("kv2/a", "{}"), "a read without y");
        assert!(check("kv2/a", r#"{"y": "1"}"#));
        assert!(check("kv2/b", r#"{"x": "1", "q": 2}"#));
        assert!(!check("kv2/b", r#"{"x": "2"}"#));
        assert!(!check("kv2/w", r#"{"x": "2"}"#), "no wrapping");
        assert!(!a.parameters_allow("kv2/w", false, false, &Map::new()));
        // Deletes and lists carry no checked data.
        assert!(a.parameters_allow("kv2/a", false, false, &Map::new()));
    }

    #[test]
    fn parameters_merge_across_policies_as_vault_does() {
        let a = acl(&[
            "path \"p\" {\n capabilities = [\"update\"]\n allowed_parameters = { \"x\" = [\"a\"] }\n}",
            "path \"p\" {\n capabilities = [\"update\"]\n allowed_parameters = { \"x\" = [\"b\"], \"y\" = [\"c\"] }\n required_parameters = [\"x\"]\n}",
            "path \"q\" {\n capabilities = [\"update\"]\n denied_parameters = { \"x\" = [\"a\"] }\n}",
            "path \"q\" {\n capabilities = [\"update\"]\n denied_parameters = { \"x\" = [] }\n}",
        ]);
        let check = |path: &str, body: &str| a.parameters_allow(path, false, true, &data(body));
        assert!(check("p", r#"{"x": "a"}"#));
        assert!(check("p", r#"{"x": "b", "y": "c"}"#));
        assert!(!check("p", r#"{"y": "c"}"#), "x is required");
        assert!(!check("p", r#"{"x": "z"}"#));
        // An empty list (any value) absorbs the other policy's list.
        assert!(!check("q", r#"{"x": "other"}"#));
        assert!(check("q", r#"{"y": "other"}"#));
    }

    #[test]
    fn nothing_matching_means_no_access() {
        let a = acl(&[&rules(&[("secret/*", r#""read""#), ("x/+", r#""read""#)])]);
        assert!(caps(&a, "database/creds/app").is_empty());
        assert!(caps(&a, "secret").is_empty());
        assert!(!a.allows("database/creds/app", Read));
        assert!(Acl::new(&[]).capabilities("secret/x").is_empty());
        assert!(!Acl::new(&[]).is_root());
        // An empty capability list matches and grants nothing.
        let a = acl(&[&rules(&[("secret/*", r#""read""#), ("secret/x", "")])]);
        assert!(caps(&a, "secret/x").is_empty());
    }

    #[test]
    fn leading_slashes_of_the_request_path_are_ignored() {
        let a = acl(&[&rules(&[("/secret/x", r#""read""#)])]);
        assert_eq!(caps(&a, "//secret/x"), ["read"]);
    }

    #[test]
    fn mount_access_is_any_grant_below_the_mount() {
        let acl = acl(&[r#"
path "dbx/creds/*" { capabilities = ["read"] }
path "dby/roles/r" { capabilities = ["update"] }
path "dbz/*" { capabilities = ["deny"] }
path "+/config/x" { capabilities = ["read"] }
path "sys/mou*" { capabilities = ["read"] }
"#]);
        for (mount, seen) in [
            ("dbx/", true),
            ("dby/", true),
            ("dbz/", true), // via "+/config/x", which deny does not cover
            ("other/", true),
            ("sys/", true),
            ("auth/token/", false),
        ] {
            assert_eq!(acl.grants_anything_under(mount), seen, "{mount}");
        }
        let narrow =
            super::Acl::new(&[
                parse("p", r#"path "dbx/creds/*" { capabilities = ["read"] }"#).unwrap(),
            ]);
        assert!(!narrow.grants_anything_under("dby/"));
        assert!(!narrow.grants_anything_under("db/"));
        assert!(super::Acl::root().grants_anything_under("anything/"));
    }

    #[test]
    fn root_allows_everything() {
        let a = Acl::root();
        assert!(a.is_root());
        assert!(a.allows("anything/at/all", Sudo));
        assert!(a.allows("sys/policies/acl/x", Patch));
        assert!(!a.capabilities("x").contains(&Deny));
        assert_eq!(a.capabilities("x").len(), 7);
    }
}
