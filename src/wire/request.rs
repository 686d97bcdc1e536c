//! Decoding an HTTP request into the router's [`Incoming`], by Vault's rules:
//! `/v1/` paths decoded once, verbs mapped to operations, token headers,
//! JSON or form bodies, and the query for reads.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use serde_json::{Map, Value};

use crate::logical::field::parse_bool;
use crate::logical::Operation;
use crate::router::Incoming;

/// What is wrong with a request before it reaches the router.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Outside `/v1/`; Vault answers 404 with an empty error list.
    #[error("")]
    NotFound,
    #[error("relative paths not supported")]
    RelativePath,
    #[error("the path contains control characters or is not valid UTF-8 once decoded")]
    BadPathCharacters,
    #[error("cannot write to a path ending in '/'")]
    WriteToDirectory,
    #[error("invalid value {0:?} for the list query parameter: use true or false")]
    BadListParameter(String),
    #[error("unsupported operation")]
    MethodNotAllowed,
    #[error("PATCH requires the content type application/merge-patch+json")]
    UnsupportedMediaType,
    #[error("http: request body too large")]
    BodyTooLarge,
    #[error("failed to read the request body: {0}")]
    BodyRead(String),
    /// The body did not arrive within `http_read_timeout`.
    #[error("the request body did not arrive within {0}s (http_read_timeout)")]
    BodyTimeout(u64),
    #[error("failed to decode JSON input: {0}")]
    BadJson(String),
    #[error("namespace not found")]
    NamespaceNotFound,
    /// `X-Forwarded-For` from an address the listener does not trust.
    #[error("X-Forwarded-For is not accepted from {0}: it is not in the listener's x_forwarded_for_authorized_addrs")]
    UntrustedForwardedFor(std::net::IpAddr),
    #[error("X-Forwarded-For {0:?} holds no IP address")]
    BadForwardedFor(String),
}

/// The client's address: the connection's peer, or, when that peer is a
/// proxy the listener trusts, the last address of `X-Forwarded-For` (the
/// one the proxy added). Without trusted proxies the header is ignored.
fn client_address(
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Result<Option<std::net::SocketAddr>, RequestError> {
    let (Some(peer), Some(forwarded)) = (peer, headers.get("x-forwarded-for")) else {
        return Ok(peer);
    };
    if trusted.is_empty() {
        return Ok(Some(peer));
    }
    if !trusted.iter().any(|net| net.contains(&peer.ip())) {
        return Err(RequestError::UntrustedForwardedFor(peer.ip()));
    }
    let text = forwarded.to_str().unwrap_or("");
    let last = text.rsplit(',').next().unwrap_or("").trim();
    let ip: std::net::IpAddr = last
        .parse()
        .map_err(|_| RequestError::BadForwardedFor(text.to_string()))?;
    Ok(Some(std::net::SocketAddr::new(ip, 0)))
}

/// Extracts the token: a non-empty `X-Vault-Token` wins over `Authorization: Bearer`.
pub fn token(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_string());
    }
    headers
        .get_all("authorization")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The path below `/v1/`, percent-decoded once and checked.
pub fn path(raw: &str) -> Result<String, RequestError> {
    let rest = raw.strip_prefix("/v1/").ok_or(RequestError::NotFound)?;
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| RequestError::BadPathCharacters)?;
    if decoded.chars().any(|c| c.is_control()) {
        return Err(RequestError::BadPathCharacters);
    }
    if decoded.split('/').any(|s| s == "." || s == "..") {
        return Err(RequestError::RelativePath);
    }
    Ok(decoded.into_owned())
}

/// Parses a query or form body; repeated keys are joined with `,` as Vault does.
pub fn form(text: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        let joined = match map.get(k.as_ref()) {
            Some(Value::String(prev)) => format!("{prev},{v}"),
            _ => v.into_owned(),
        };
        map.insert(k.into_owned(), Value::String(joined));
    }
    map
}

fn check_headers(headers: &HeaderMap) -> Result<(), RequestError> {
    if let Some(ns) = headers.get("x-vault-namespace") {
        let ns = ns.to_str().unwrap_or("?");
        if !matches!(ns, "" | "root" | "root/" | "/") {
            return Err(RequestError::NamespaceNotFound);
        }
    }
    Ok(())
}

fn decode_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Map<String, Value>, RequestError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let Some(first) = first else {
        return Ok(Map::new());
    };
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/x-www-form-urlencoded"))
        .unwrap_or(false);
    // `curl -d '{...}'` sends JSON labelled as a form; Vault looks at the first byte.
    if is_form && first != b'{' && first != b'[' {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| RequestError::BadJson("form body is not valid UTF-8".into()))?;
        return Ok(form(text));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(RequestError::BadJson(format!(
            "expected a JSON object, got {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                _ => "a bool",
            }
        ))),
        Err(e) => Err(RequestError::BadJson(e.to_string())),
    }
}

/// Whether the request is a HEAD (answered without a body).
pub fn is_head(method: &Method) -> bool {
    method == Method::HEAD
}

/// Decodes a whole request.
pub async fn decode(
    request: Request<Body>,
    id: String,
    config: &super::WireConfig,
) -> Result<Incoming, RequestError> {
    let (parts, body) = request.into_parts();
    let mut path = path(parts.uri.path())?;
    check_headers(&parts.headers)?;
    let peer = parts.extensions.get::<super::RemoteAddr>().map(|r| r.0);
    let remote = client_address(peer, &parts.headers, &config.trusted_proxies)?;
    let query = parts.uri.query().map(form).unwrap_or_default();
    let help = query
        .get("help")
        .and_then(Value::as_str)
        .map(|v| !v.is_empty())
        .unwrap_or(false);
    let method = parts.method.as_str().to_ascii_uppercase();
    // Vault serves these outside its router, by HTTP method alone: GET reads
    // them whatever `?list=` says, and LIST is refused like any other method.
    let by_method =
        ["sys/health", "sys/seal-status", "sys/leader", "sys/init"].contains(&path.as_str());
    let (operation, data) = match method.as_str() {
        "LIST" if by_method => return Err(RequestError::MethodNotAllowed),
        "GET" | "HEAD" => {
            if method == "HEAD" && path != "sys/health" {
                return Err(RequestError::MethodNotAllowed);
            }
            let mut query = query;
            query.remove("help");
            if by_method {
                if let Some(Value::String(v)) = query.remove("list") {
                    parse_bool(&v).ok_or(RequestError::BadListParameter(v))?;
                }
            }
            match query.remove("list") {
                Some(Value::String(v)) => match parse_bool(&v) {
                    Some(true) => (Operation::List, query),
                    Some(false) => (Operation::Read, query),
                    None => return Err(RequestError::BadListParameter(v)),
                },
                _ => (Operation::Read, query),
            }
        }
        "LIST" => (Operation::List, query),
        "HELP" => (Operation::Read, query),
        "DELETE" => (Operation::Delete, query),
        "POST" | "PUT" => {
            let bytes = read_body(&parts.headers, body, config).await?;
            if path.ends_with('/') {
                return Err(RequestError::WriteToDirectory);
            }
            (Operation::Write, decode_body(&parts.headers, &bytes)?)
        }
        "PATCH" => {
            let merge = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.starts_with("application/merge-patch+json"))
                .unwrap_or(false);
            return Err(if merge {
                RequestError::MethodNotAllowed
            } else {
                RequestError::UnsupportedMediaType
            });
        }
        _ => return Err(RequestError::MethodNotAllowed),
    };
    if operation == Operation::List && !path.ends_with('/') {
        path.push('/');
    }
    Ok(Incoming {
        id,
        operation,
        path,
        data,
        token: token(&parts.headers),
        help: help || method == "HELP",
        wrap: parts.headers.contains_key("x-vault-wrap-ttl"),
        remote,
    })
}

/// Reads the body within the size limit and the read timeout. A declared
/// length over the limit is refused before anything is read, so a client
/// cannot hold a request open by announcing a body it never sends.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    config: &super::WireConfig,
) -> Result<bytes::Bytes, RequestError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_request_size as u64) {
        return Err(RequestError::BodyTooLarge);
    }
    let collect = http_body_util::Limited::new(body, config.max_request_size).collect();
    match tokio::time::timeout(config.read_timeout, collect).await {
        Err(_) => Err(RequestError::BodyTimeout(config.read_timeout.as_secs())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(RequestError::BodyTooLarge),
        Ok(Err(e)) => Err(RequestError::BodyRead(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_once_and_checked() {
        assert_eq!(path("/v1/sys/health").unwrap(), "sys/health");
        assert_eq!(path("/v1/a%2Fb").unwrap(), "a/b");
        assert_eq!(path("/v1/a%252F").unwrap(), "a%2F");
        assert!(matches!(path("/v2/x"), Err(RequestError::NotFound)));
        assert!(matches!(
            path("/v1/a/../b"),
            Err(RequestError::RelativePath)
        ));
        assert!(matches!(
            path("/v1/a/%2e%2e/b"),
            Err(RequestError::RelativePath)
        ));
        assert!(matches!(
            path("/v1/a%0Ab"),
            Err(RequestError::BadPathCharacters)
        ));
    }

    #[test]
    fn bearer_is_used_only_without_a_vault_token() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc ".parse().unwrap());
        assert_eq!(token(&h).as_deref(), Some("abc"));
        h.insert("x-vault-token", "xyz".parse().unwrap());
        assert_eq!(token(&h).as_deref(), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(token(&h), None);
    }

    #[test]
    fn json_labelled_as_form_is_read_as_json() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert_eq!(decode_body(&h, br#" {"a":1}"#).unwrap()["a"], 1);
        let m = decode_body(&h, b"a=1&b=2&a=3").unwrap();
        assert_eq!(m["a"], "1,3");
        assert!(decode_body(&HeaderMap::new(), b"[1]").is_err());
        assert!(decode_body(&HeaderMap::new(), b"{bad").is_err());
        assert!(decode_body(&HeaderMap::new(), b"  ").unwrap().is_empty());
    }
}
