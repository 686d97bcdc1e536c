//! Plumbing for the differential tests: the same request to OpenBao (the
//! reference) and to pgsecrets, each answer reduced to what is compared,
//! and one report that consults the allow-list (`allow_list.rs`).

use std::collections::BTreeMap;

use pgsecrets::logical::field::type_name;
use reqwest::Method;
use serde_json::{json, Value};

use super::allow_list::{Entry, ALLOW_LIST};
use super::openbao::{OpenBao, ROOT_TOKEN};
use super::server::TestServer;

/// One server under comparison.
pub struct Side {
    pub name: &'static str,
    pub url: String,
    pub root: String,
    pub client: reqwest::Client,
}

/// What a request carries as its body.
#[derive(Clone, Debug)]
pub enum Body {
    None,
    Json(Value),
    /// Sent as is, labelled `application/json`: bad JSON, huge bodies.
    Raw(String),
    /// Sent as is, labelled `application/x-www-form-urlencoded`.
    Form(String),
}

impl Side {
    fn new(name: &'static str, url: &str, root: &str) -> Side {
        Side {
            name,
            url: url.to_string(),
            root: root.to_string(),
            // A redirect (OpenBao's 307 for `//`) is an answer to compare,
            // not something to follow.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Status and JSON body (Null when the body is empty or not JSON).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Body,
    ) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = token.map(|t| ("X-Vault-Token", t)).into_iter().collect();
        self.send_with(method, path, &headers, body).await
    }

    /// As `send`, with these headers (the token among them, if any).
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Body,
    ) -> (u16, Value) {
        let token = headers
            .iter()
            .find(|(name, _)| *name == "X-Vault-Token")
            .map(|(_, value)| *value);
        if let Body::Raw(text) = body {
            if text.len() > 1024 * 1024 {
                return self.send_huge(method, path, token, text).await;
            }
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{}/v1/{}", self.url, path.trim_start_matches('/'));
        let mut builder = self.client.request(method, url);
        builder = match body {
            Body::None => builder,
            Body::Json(value) => builder.json(value),
            Body::Raw(text) => builder
                .header("Content-Type", "application/json")
                .body(text.clone()),
            Body::Form(text) => builder
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(text.clone()),
        };
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = builder.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A body over the size limit, over a bare connection: a server may
    /// answer 413 and close before the body is sent, which reqwest reports
    /// as a broken pipe instead of the answer.
    async fn send_huge(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.url.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let token = token
            .map(|t| format!("X-Vault-Token: {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} /v1/{path} HTTP/1.1\r\nHost: {address}\r\n{token}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let body = body.to_string();
        let writer = tokio::spawn(async move {
            // A refused body is not an error: the answer is what matters.
            let _ = write.write_all(head.as_bytes()).await;
            let _ = write.write_all(body.as_bytes()).await;
        });
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        writer.abort();
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        // Both servers send a short error with a Content-Length; a chunked
        // one would start with its chunk size, which is not JSON.
        (
            status,
            serde_json::from_str(body.trim()).unwrap_or(Value::Null),
        )
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map_or(Body::None, Body::Json);
        self.send(method, path, Some(token), &body).await
    }

    pub async fn root_call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, &self.root, body).await
    }

    /// Writes an ACL policy as root.
    pub async fn policy(&self, name: &str, text: &str) {
        let (status, reply) = self
            .root_call(
                "PUT",
                &format!("sys/policies/acl/{name}"),
                Some(json!({ "policy": text })),
            )
            .await;
        assert!(
            status == 204 || status == 200,
            "{}: policy {name}: {status} {reply}",
            self.name
        );
    }

    /// A token created by root with this body.
    pub async fn token(&self, body: Value) -> String {
        self.token_and_accessor(body).await.0
    }

    /// A token created by root with this body, and its accessor.
    pub async fn token_and_accessor(&self, body: Value) -> (String, String) {
        let (status, reply) = self
            .root_call("POST", "auth/token/create", Some(body.clone()))
            .await;
        assert_eq!(status, 200, "{}: create {body}: {reply}", self.name);
        let field = |f: &str| reply["auth"][f].as_str().unwrap().to_string();
        (field("client_token"), field("accessor"))
    }

    /// Writes `policy` and returns a token holding it (and `default`).
    pub async fn token_with(&self, name: &str, policy: &str) -> String {
        self.policy(name, policy).await;
        self.token(json!({ "policies": [name] })).await
    }
}

/// Both servers, OpenBao first; the guards keep them running.
pub async fn sides() -> (OpenBao, TestServer, [Side; 2]) {
    let bao = OpenBao::start().await;
    let ours = TestServer::start().await;
    let sides = [
        Side::new("openbao", &bao.url, ROOT_TOKEN),
        Side::new("pgsecrets", &ours.url, &ours.root_token),
    ];
    (bao, ours, sides)
}

/// As `sides`, with a `database/` engine on OpenBao too (pgsecrets has one
/// from the start), so `database/` paths exist on both.
pub async fn sides_with_database() -> (OpenBao, TestServer, [Side; 2]) {
    let (bao, ours, sides) = sides().await;
    let (status, reply) = sides[0]
        .root_call(
            "POST",
            "sys/mounts/database",
            Some(json!({"type": "database"})),
        )
        .await;
    assert_eq!(status, 204, "openbao: mount database/: {reply}");
    (bao, ours, sides)
}

/// An array's strings, sorted.
pub fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// An answer reduced to what the differential tests compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub status: u16,
    pub keys: Vec<String>,
    /// `data`'s and `auth`'s keys with the JSON type of each value, or the
    /// type of the block itself when it is not an object (`null` mostly).
    pub data: Result<BTreeMap<String, &'static str>, &'static str>,
    pub auth: Result<BTreeMap<String, &'static str>, &'static str>,
    pub warns: bool,
}

pub fn summary(status: u16, body: &Value) -> Summary {
    let block = |v: &Value| match v {
        Value::Object(map) => Ok(map.iter().map(|(k, v)| (k.clone(), type_name(v))).collect()),
        other => Err(type_name(other)),
    };
    let mut keys: Vec<String> = body
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    Summary {
        status,
        keys,
        data: block(&body["data"]),
        auth: block(&body["auth"]),
        warns: body["warnings"].as_array().is_some_and(|w| !w.is_empty()),
    }
}

/// One way two answers to the same case differ.
#[derive(Debug, Clone)]
pub struct Difference {
    /// `<suite>:<who> <METHOD> <path>[ <detail>]`, what allow-list entries match.
    pub case: String,
    /// `status`, `keys`, `data`, `auth` or `warnings`.
    pub aspect: &'static str,
    /// The difference itself, in words an allow-list entry repeats exactly.
    pub differs: String,
    /// OpenBao refused (403) what pgsecrets did not: never allowed.
    pub lax: bool,
}

fn set_difference(a: &[String], b: &[String]) -> Option<String> {
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter().filter(|k| !y.contains(k)).cloned().collect()
    };
    let (ours, theirs) = (only(b, a), only(a, b));
    let mut parts = Vec::new();
    if !theirs.is_empty() {
        parts.push(format!("only openbao: [{}]", theirs.join(" ")));
    }
    if !ours.is_empty() {
        parts.push(format!("only pgsecrets: [{}]", ours.join(" ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn block_difference(
    a: &Result<BTreeMap<String, &'static str>, &'static str>,
    b: &Result<BTreeMap<String, &'static str>, &'static str>,
) -> Option<String> {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            let ka: Vec<String> = a.keys().cloned().collect();
            let kb: Vec<String> = b.keys().cloned().collect();
            if let Some(keys) = set_difference(&ka, &kb) {
                return Some(keys);
            }
            let types: Vec<String> = a
                .iter()
                .filter(|(k, t)| b[*k] != **t)
                .map(|(k, t)| format!("{k}: openbao {t}, pgsecrets {}", b[k]))
                .collect();
            (!types.is_empty()).then(|| types.join("; "))
        }
        (a, b) if a == b => None,
        (a, b) => {
            let show = |x: &Result<BTreeMap<String, &'static str>, &'static str>| match x {
                Ok(_) => "object".to_string(),
                Err(t) => t.to_string(),
            };
            Some(format!("openbao {}, pgsecrets {}", show(a), show(b)))
        }
    }
}

/// The differences between OpenBao's answer (`a`) and pgsecrets' (`b`). A
/// different status makes the rest noise, so it is then the only one.
pub fn compare(case: &str, a: &Summary, b: &Summary) -> Vec<Difference> {
    let diff = |aspect, differs: String| Difference {
        case: case.to_string(),
        aspect,
        differs,
        lax: false,
    };
    if a.status != b.status {
        return vec![Difference {
            lax: a.status == 403,
            ..diff(
                "status",
                format!("openbao {}, pgsecrets {}", a.status, b.status),
            )
        }];
    }
    let mut out = Vec::new();
    if let Some(d) = set_difference(&a.keys, &b.keys) {
        out.push(diff("keys", d));
    }
    if let Some(d) = block_difference(&a.data, &b.data) {
        out.push(diff("data", d));
    }
    if let Some(d) = block_difference(&a.auth, &b.auth) {
        out.push(diff("auth", d));
    }
    if a.warns != b.warns {
        let who = if a.warns { "openbao" } else { "pgsecrets" };
        out.push(diff("warnings", format!("only {who} warns")));
    }
    out
}

/// A difference a test found by its own comparison of `what` (a value
/// richer than a summary: error texts, TTLs, policies).
pub fn value_difference(case: &str, openbao: &Value, pgsecrets: &Value) -> Option<Difference> {
    (openbao != pgsecrets).then(|| Difference {
        case: case.to_string(),
        aspect: "value",
        differs: format!("openbao {openbao}, pgsecrets {pgsecrets}"),
        lax: openbao["status"] == 403 && pgsecrets["status"] != 403,
    })
}

/// Compares only whether each side allowed the request (403 or not): for
/// the ACL matrix, where handlers may refuse allowed requests differently.
pub fn compare_allowed(case: &str, openbao: u16, pgsecrets: u16) -> Option<Difference> {
    let word = |s: u16| if s == 403 { "denied" } else { "allowed" };
    (word(openbao) != word(pgsecrets)).then(|| Difference {
        case: case.to_string(),
        aspect: "status",
        differs: format!(
            "openbao {} ({openbao}), pgsecrets {} ({pgsecrets})",
            word(openbao),
            word(pgsecrets)
        ),
        lax: openbao == 403,
    })
}

/// Compares what a capabilities endpoint reported for one path (sorted
/// lists). Reporting a capability OpenBao does not grant is as lax as
/// granting it.
pub fn compare_capabilities(
    case: &str,
    openbao: &[String],
    pgsecrets: &[String],
) -> Option<Difference> {
    (openbao != pgsecrets).then(|| Difference {
        case: case.to_string(),
        aspect: "capabilities",
        differs: format!("openbao {openbao:?}, pgsecrets {pgsecrets:?}"),
        lax: pgsecrets
            .iter()
            .any(|c| c != "deny" && !openbao.contains(c)),
    })
}

/// `*` matches any run of characters, everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

fn allows(entry: &Entry, d: &Difference) -> bool {
    glob(entry.case, &d.case) && entry.aspect == d.aspect && glob(entry.differs, &d.differs)
}

/// Fails listing every difference the allow-list does not cover, every
/// difference where pgsecrets allowed what OpenBao denied (never
/// allow-listed), and every entry of this suite that matched nothing.
pub fn report(suite: &str, differences: &[Difference]) {
    let mut failures = Vec::new();
    let mut used = vec![false; ALLOW_LIST.len()];
    for d in differences {
        let line = format!("{} [{}]: {}", d.case, d.aspect, d.differs);
        if d.lax {
            failures.push(format!(
                "{line}\n    pgsecrets allowed what OpenBao denied: this can never be allow-listed"
            ));
            continue;
        }
        match ALLOW_LIST.iter().position(|e| allows(e, d)) {
            Some(i) => used[i] = true,
            None => failures.push(line),
        }
    }
    let prefix = format!("{suite}:");
    for (entry, used) in ALLOW_LIST.iter().zip(used) {
        if entry.case.starts_with(&prefix) && !used {
            failures.push(format!(
                "stale allow-list entry (matched nothing): {} [{}] {}",
                entry.case, entry.aspect, entry.differs
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s) not allowed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn glob_matches_runs() {
    assert!(glob("a*c", "abbbc"));
    assert!(glob("a*", "a"));
    assert!(!glob("a*c", "abbb"));
    assert!(glob("exact", "exact"));
    assert!(!glob("exact", "exactly"));
}

#[test]
fn pgsecrets_allowing_what_openbao_denies_is_never_allowed() {
    // A difference an entry covers, but where OpenBao denied.
    let lax = Difference {
        case: "corpus:Root GET sys/seal-status".into(),
        aspect: "keys",
        differs: "only pgsecrets: [build_date]".into(),
        lax: true,
    };
    assert!(ALLOW_LIST.iter().any(|e| allows(e, &lax)));
    let failure = std::panic::catch_unwind(|| report("no-such-suite", &[lax]))
        .expect_err("a lax difference fails the report");
    let text = failure.downcast_ref::<String>().unwrap();
    assert!(text.contains("can never be allow-listed"), "{text}");
    assert_eq!(compare_allowed("x", 403, 204).map(|d| d.lax), Some(true));
    assert_eq!(compare_allowed("x", 204, 403).map(|d| d.lax), Some(false));
}

#[test]
fn an_entry_that_matches_nothing_is_stale() {
    let failure = std::panic::catch_unwind(|| report("corpus", &[]))
        .expect_err("the corpus entries match nothing here");
    let text = failure.downcast_ref::<String>().unwrap();
    assert!(text.contains("stale allow-list entry"), "{text}");
}
