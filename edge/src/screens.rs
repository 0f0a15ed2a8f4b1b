//! The screens (`clients/app/`: sign-in, kitchen display, device dashboard, order room, customer
//! display), embedded in the binary and served at `/app/`; under `tablewire dev` also
//! `/app/dev.json`, the dev token for the sign-in page. [`routes`] is merged
//! into the edge's router ([`crate::app`]).

use crate::config::DevLogin;
use crate::http::{self, Body};
use bytes::Bytes;
use hyper::{Method, Response, StatusCode, header};
use tablewire_schemas::ErrorCode;

/// The files of `clients/app/` (the screenshots, which only the README shows, left out).
#[derive(rust_embed::Embed)]
#[folder = "../clients/app/"]
#[exclude = "screenshots/*"]
struct Files;

/// `/app` (a redirect), `/app/` and `/app/{file}`; `dev.json` from the node's config.
pub fn routes<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
    std::sync::Arc<crate::node::Node>: axum::extract::FromRef<S>,
{
    use axum::extract::{Path, State};
    use axum::routing::get;
    use std::sync::Arc;
    type NodeState = State<Arc<crate::node::Node>>;
    axum::Router::new()
        .route("/app", get(|| async { redirect_to_index() }))
        .route(
            "/app/",
            get(|method: Method, State(node): NodeState| async move {
                serve(&method, "", node.config.dev_login.as_ref())
            }),
        )
        .route(
            "/app/{*file}",
            get(
                |method: Method, State(node): NodeState, Path(file): Path<String>| async move {
                    serve(&method, &file, node.config.dev_login.as_ref())
                },
            ),
        )
}

/// Answers `GET` (or `HEAD`; other methods get 405 from the route) `/app/…`: `file` is the path below `/app/` (empty for the index); `dev_login` is
/// `Some` only under `tablewire dev`.
pub fn serve(method: &Method, file: &str, dev_login: Option<&DevLogin>) -> Response<Body> {
    if file == "dev.json" {
        return match dev_login {
            Some(login) => no_store(http::json(StatusCode::OK, login)),
            None => http::error_code(ErrorCode::NotFound),
        };
    }
    let file = if file.is_empty() || file.ends_with('/') {
        format!("{file}index.html")
    } else {
        file.to_string()
    };
    match Files::get(&file) {
        Some(found) => {
            let bytes = match found.data {
                std::borrow::Cow::Borrowed(data) => Bytes::from_static(data),
                std::borrow::Cow::Owned(data) => Bytes::from(data),
            };
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            Response::builder()
                .header(header::CONTENT_TYPE, content_type(&file))
                .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .body(body)
                .unwrap_or_else(|_| http::error_code(ErrorCode::Internal))
        }
        None => http::error_code(ErrorCode::NotFound),
    }
}

/// `/app` without its slash: the pages link to each other relatively, so send them to `/app/`.
pub fn redirect_to_index() -> Response<Body> {
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(header::LOCATION, "/app/")
        .body(Body::empty())
        .unwrap_or_else(|_| http::error_code(ErrorCode::Internal))
}

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The content type of a file of the screens, by its extension.
pub fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_known_content_type() {
        let files: Vec<_> = Files::iter().collect();
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        assert!(files.iter().any(|f| f.starts_with("lib/")), "{files:?}");
        for file in files {
            assert_ne!(content_type(&file), "application/octet-stream", "{file}");
        }
    }

    #[test]
    fn screenshots_are_not_embedded() {
        assert!(Files::iter().all(|f| !f.starts_with("screenshots/")));
    }
}
