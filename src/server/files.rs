//! Pages and files served beside the API: the built-in page at `/`, the npm Socket.IO
//! client's script at `/socket.io/socket.io.js` (as socket.io serves it, from the package's
//! `dist/` that `socketio_client_dir` names), and an application's own files from
//! `static_dir`, like `express.static` (its `index.html` takes the place of the built-in
//! page). Everything a built-in page needs is compiled into the binary.

use std::path::Path;

use axum::{
    http::header,
    response::Html,
    routing::{get, get_service, MethodRouter},
    Router,
};
use tower_http::services::{ServeDir, ServeFile};

use crate::config::Config;

const INDEX_HTML: &str = include_str!("../../static/index.html");

/// The built-in pages' files beside `/`: path, content type, bytes (compiled in).
const ASSETS: [(&str, &str, &str); 9] = [
    ("/client.js", JS, include_str!("../../static/client.js")),
    (
        "/client.d.ts",
        "application/typescript; charset=utf-8",
        include_str!("../../static/client.d.ts"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    ),
    ("/chat.js", JS, include_str!("../../static/chat.js")),
    ("/push", HTML, include_str!("../../static/push.html")),
    ("/push.js", JS, include_str!("../../static/push.js")),
    (
        "/dashboard",
        HTML,
        include_str!("../../static/dashboard.html"),
    ),
    (
        "/dashboard.js",
        JS,
        include_str!("../../static/dashboard.js"),
    ),
    ("/graphql.js", JS, include_str!("../../static/graphql.js")),
];
const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The files of the client's `dist/` that socket.io serves under its path.
const CLIENT_FILES: [&str; 8] = [
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
    "socket.io.msgpack.min.js",
    "socket.io.msgpack.min.js.map",
];

/// `GET /`: the `index.html` of `static_dir` when it has one, the built-in page otherwise.
pub(super) fn index(config: &Config) -> MethodRouter {
    match &config.static_dir {
        Some(dir) if dir.join("index.html").is_file() => {
            get_service(ServeFile::new(dir.join("index.html")))
        }
        _ => get(|| async { Html(INDEX_HTML) }),
    }
}

/// The built-in pages' files: `/client.js` (Hubbub's JavaScript client, an ES module) and
/// `/client.d.ts`, the push page (`/push`), the dashboard (`/dashboard`), their scripts and
/// style sheet. Nothing a page needs comes from elsewhere.
pub(super) fn assets() -> Router {
    ASSETS.iter().fold(Router::new(), |r, &(path, ty, body)| {
        r.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, ty),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
            }),
        )
    })
}

/// `{path}/socket.io.js` and its siblings, from the client package's `dist/` directory.
pub(super) fn socketio_client(path: &str, dir: &Path) -> Router {
    if !dir.join("socket.io.js").is_file() {
        tracing::warn!(
            "socketio_client_dir {}: no socket.io.js there (expected socket.io-client's dist/)",
            dir.display()
        );
    }
    CLIENT_FILES.iter().fold(Router::new(), |r, f| {
        r.route_service(&format!("{path}/{f}"), ServeFile::new(dir.join(f)))
    })
}

/// `app`, with every path it does not route served from `dir`.
pub(super) fn with_static_dir(app: Router, dir: &Path) -> Router {
    if !dir.is_dir() {
        tracing::warn!("static_dir {}: not a directory", dir.display());
    }
    app.fallback_service(ServeDir::new(dir))
}
