//! The web console: static files embedded at compile time (see `build.rs`), served at
//! `/console/` by the same router as the API, with the security headers of
//! `design/console.md`. The console is a client of the public API and nothing else.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub media_type: &'static str,
    /// A strong validator: the file's content hash, quoted.
    pub etag: &'static str,
    pub bytes: &'static [u8],
}

/// Every console file, by name.
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// Scripts and styles from this origin only, nothing inline, no framing, no plugins: a
/// receiver's response body or an event's data shown in the console can never run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

/// The console's routes: `/console` redirects to `/console/`. No state: the console's data
/// comes from the API, by the browser, with the user's key.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return with_security_headers(
            (StatusCode::NOT_FOUND, "no such console file").into_response(),
        );
    };
    // Names are not hashed, so every file is revalidated: a 304 costs a round trip and no
    // bytes, and a new binary's console is never mixed with a cached older script.
    // Weak comparison, as RFC 9110 asks for If-None-Match: `W/"…"` matches its strong
    // tag, and `*` matches any file that exists.
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == asset.etag)
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.media_type)], asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers()[name].to_str().unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_files_come_with_the_security_headers() {
        let page = get("/console/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            header_of(&page, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        let script = get("/console/app.js", None).await;
        assert_eq!(script.status(), StatusCode::OK);
        assert!(header_of(&script, header::CONTENT_TYPE).starts_with("text/javascript"));
        let missing = get("/console/nope.js", None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        for response in [&page, &script, &missing] {
            let csp = header_of(response, header::CONTENT_SECURITY_POLICY);
            assert!(csp.contains("default-src 'self'"), "{csp}");
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
            assert_eq!(
                header_of(response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            assert_eq!(header_of(response, header::REFERRER_POLICY), "no-referrer");
        }
    }

    #[tokio::test]
    async fn console_without_a_slash_redirects_and_unchanged_files_are_not_sent_again() {
        let redirect = get("/console", None).await;
        assert!(redirect.status().is_redirection());
        assert_eq!(header_of(&redirect, header::LOCATION), "/console/");

        let first = get("/console/app.js", None).await;
        let etag = header_of(&first, header::ETAG).to_string();
        assert_eq!(header_of(&first, header::CACHE_CONTROL), "no-cache");
        let again = get("/console/app.js", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let weak = get("/console/app.js", Some(&format!("\"x\", W/{etag}"))).await;
        assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
        let stale = get("/console/app.js", Some("\"0000000000000000\"")).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    /// ` onclick=`, ` onload =`: an attribute that runs code.
    fn has_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(at, _)| {
            let rest = &html[at + 3..];
            let name_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
            name_len > 0 && rest[name_len..].trim_start().starts_with('=')
        })
    }

    #[test]
    fn the_console_is_small_and_runs_no_inline_code() {
        let total: usize = ASSETS.iter().map(|a| a.bytes.len()).sum();
        // The first load brings every file; the issue allows 150 KB.
        assert!(total < 150 * 1024, "{total} bytes");
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for injection in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!text.contains(injection), "{} uses {injection}", asset.name);
            }
        }
        let index = ASSETS.iter().find(|a| a.name == "index.html").unwrap();
        let index = std::str::from_utf8(index.bytes).unwrap();
        assert!(!index.contains("<script>"), "an inline script");
        assert!(!index.contains(" style="), "an inline style attribute");
        assert!(
            !has_handler_attribute(index),
            "an inline event handler attribute"
        );
    }
}
