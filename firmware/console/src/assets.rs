//! The web console's static files (`webui/`), embedded in the binary with
//! rust-embed and served with their content type, an ETag and
//! `Cache-Control: no-cache` (file names are not content-hashed, so the
//! browser revalidates and gets a cheap 304).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::ApiError;

/// The embedded `webui/` directory.
#[derive(RustEmbed)]
#[folder = "../../webui/"]
struct WebUi;

/// Content-Security-Policy of the console pages: nothing from elsewhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Serves an embedded file, if it exists.
pub fn serve_file(path: &str, headers: &HeaderMap) -> Option<Response> {
    let file = WebUi::get(path)?;
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let mime = file.metadata.mimetype().to_string();
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, file.data.into_owned()).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if mime.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    Some(resp)
}

/// `GET /`: the console page.
pub async fn index(headers: HeaderMap) -> Response {
    serve_file("index.html", &headers)
        .unwrap_or_else(|| ApiError::not_found("console page not built in").into_response())
}

/// Fallback: static files outside `/api`, JSON 404 for everything else.
pub async fn fallback(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if !path.starts_with("/api") && path != "/metrics" {
        let rel = path.trim_start_matches('/');
        if !rel.is_empty()
            && !rel.contains("..")
            && let Some(r) = serve_file(rel, &headers)
        {
            return r;
        }
    }
    ApiError::not_found(format!("no route for {path}")).into_response()
}

/// Fallback for a known route with the wrong method.
pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}
