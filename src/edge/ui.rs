//! The live progress page, embedded in the binary and served at `/ui/` on the gRPC port (the
//! same origin as the API, so the page needs no CORS). It is a Connect client of
//! `ackgateway.v1.WatchService` like any other; its files are in `ui/` at the repository root.
//!
//! Development aid: a debug build started with `ACK_GATEWAY_UI_DIR=ui` reads the files from
//! that folder at every request, so the page can be edited without rebuilding. Release builds
//! serve only the embedded files.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::path::PathBuf;
use tonic::body::Body;

/// (file name, content type, embedded content).
const FILES: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "progress.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/progress.js"),
    ),
    (
        "progress.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/progress.css"),
    ),
];

/// The page's security policy: its own scripts, styles and API only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The bytes the page adds to the binary.
pub fn embedded_size() -> usize {
    FILES.iter().map(|(_, _, content)| content.len()).sum()
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Read the files from here instead (debug builds only).
    dir: Option<PathBuf>,
}

impl Page {
    pub fn embedded() -> Page {
        let dir = if cfg!(debug_assertions) {
            std::env::var_os("ACK_GATEWAY_UI_DIR").map(PathBuf::from)
        } else {
            None
        };
        Page { dir }
    }

    /// Answers a GET or HEAD request.
    pub fn serve<B>(&self, req: &Request<B>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/" || path == "/ui" {
            let location = match req.uri().query() {
                Some(q) => format!("/ui/?{q}"),
                None => "/ui/".to_string(),
            };
            return redirect(&location);
        }
        let Some(name) = path.strip_prefix("/ui/") else {
            return plain(StatusCode::NOT_FOUND, "not found");
        };
        let name = if name.is_empty() { "index.html" } else { name };
        let Some((name, content_type, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
            return plain(StatusCode::NOT_FOUND, "not found");
        };
        let content = match &self.dir {
            Some(dir) => match std::fs::read(dir.join(name)) {
                Ok(bytes) => Bytes::from(bytes),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "ACK_GATEWAY_UI_DIR: cannot read the file");
                    Bytes::from_static(embedded.as_bytes())
                }
            },
            None => Bytes::from_static(embedded.as_bytes()),
        };
        let body = if req.method() == Method::HEAD {
            Bytes::new()
        } else {
            content
        };
        let mut response = Response::new(Body::new(Full::new(body)));
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if name.ends_with(".html") {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
        }
        response
    }
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = plain(StatusCode::PERMANENT_REDIRECT, "");
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(text.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
