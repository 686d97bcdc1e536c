//! Unclean `/v1/` paths (`sys//mounts`, `a/./b`, `a/x/../b`) are answered
//! as Vault's Go HTTP mux answers them: `307 Temporary Redirect` to the
//! cleaned path, query kept. Clients and scripts that join URL parts with
//! a stray slash follow the redirect and keep working; the cleaned path is
//! then routed, and checked against the policies, like any other.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response as HttpResponse;

/// The cleaned form of `path` (Go's `path.Clean`, a trailing slash kept),
/// or `None` when it is already clean or outside `/v1/` (Vault's mux sends
/// only `/v1/` there; anything else is a 404 as it is).
pub fn cleaned(path: &str) -> Option<String> {
    if !path.starts_with("/v1/") {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    (clean != path).then_some(clean)
}

/// The redirect for `uri` when its path is not clean.
pub fn response(method: &Method, uri: &Uri) -> Option<HttpResponse> {
    let mut location = cleaned(uri.path())?;
    if let Some(query) = uri.query() {
        location.push('?');
        location.push_str(query);
    }
    let value = HeaderValue::from_str(&location).ok()?;
    // As Go's http.Redirect: a small HTML body for GET and HEAD only.
    let body = if method == Method::GET || method == Method::HEAD {
        format!(
            "<a href=\"{}\">Temporary Redirect</a>.\n\n",
            html_escape(&location)
        )
    } else {
        String::new()
    };
    let mut response = HttpResponse::new(Body::from(body));
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, value);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if method == Method::GET || method == Method::HEAD {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    Some(response)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_as_go_cleans_them() {
        // Each pair as OpenBao 2.7 redirects it.
        for (from, to) in [
            ("/v1/sys//mounts", "/v1/sys/mounts"),
            ("/v1//sys/mounts", "/v1/sys/mounts"),
            ("/v1/sys/./mounts", "/v1/sys/mounts"),
            ("/v1/sys/x/../mounts", "/v1/sys/mounts"),
            ("/v1/sys/mounts//", "/v1/sys/mounts/"),
            ("/v1/sys/policies/acl/p1//", "/v1/sys/policies/acl/p1/"),
            ("/v1//", "/v1/"),
            ("/v1/sys/mounts/../../../x", "/x"),
        ] {
            assert_eq!(cleaned(from).as_deref(), Some(to), "{from}");
        }
        for clean in [
            "/v1/",
            "/v1/sys/mounts",
            "/v1/sys/policies/acl/",
            "//v1/sys//mounts",
            "/v2/a//b",
            "/v1/sys/%2E%2E/x",
        ] {
            assert_eq!(cleaned(clean), None, "{clean}");
        }
    }

    #[test]
    fn the_query_is_kept_and_only_get_has_a_body() {
        let uri: Uri = "/v1/sys//mounts?a=1&b=2".parse().unwrap();
        let r = response(&Method::GET, &uri).unwrap();
        assert_eq!(r.status(), 307);
        assert_eq!(r.headers()[header::LOCATION], "/v1/sys/mounts?a=1&b=2");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let r = response(&Method::POST, &uri).unwrap();
        assert!(r.headers().get(header::CONTENT_TYPE).is_none());
        assert!(response(&Method::GET, &"/v1/sys/mounts".parse().unwrap()).is_none());
    }
}
