//! The web GUI at `/gui`: one HTML page, one stylesheet and one script, written for this project
//! and compiled into the binary. The page holds no data of its own: its script reads the same
//! HTTP API from the same origin with the operator's credentials (loopback, or a user token it
//! asks for when the API answers 401/403), so the page and its assets are served to anyone,
//! outside the access check, like the index.
//!
//! Every answer carries a Content-Security-Policy that lets the page load only its own script and
//! stylesheet and talk only to this origin: no CDN, nothing fetched from outside, no inline
//! script. The assets' URLs carry a hash of their content, so browsers keep them for a year and
//! a new binary's page asks for new ones; the page itself is revalidated with its ETag.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kuma_model::ResourceType;

use crate::error::{ApiError, Op};

/// Where the GUI is, as the index (`GET /`) tells it.
pub const GUI_PATH: &str = "/gui";

/// The page may run its own script and style and talk to its own origin, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

const PAGE: &str = include_str!("../gui/index.html");
const SCRIPT: &str = include_str!("../gui/app.js");
const STYLE: &str = include_str!("../gui/app.css");

/// The page with its asset URLs and the policy types filled in, built once.
struct Assets {
    page: String,
    page_etag: String,
    script_file: String,
    style_file: String,
}

static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let script_file = format!("app-{:016x}.js", fnv1a(SCRIPT.as_bytes()));
    let style_file = format!("app-{:016x}.css", fnv1a(STYLE.as_bytes()));
    // The registry's policy types, so the page lists every type the API serves.
    let types: Vec<serde_json::Value> = ResourceType::descriptors()
        .iter()
        .filter(|d| d.is_policy)
        .map(|d| serde_json::json!({"name": d.name, "path": d.path, "title": d.title}))
        .collect();
    let types = serde_json::Value::from(types).to_string().replace("</", "<\\/");
    let page = PAGE
        .replace("{{script}}", &format!("{GUI_PATH}/{script_file}"))
        .replace("{{style}}", &format!("{GUI_PATH}/{style_file}"))
        .replace("{{types}}", &types);
    let page_etag = format!("\"{:016x}\"", fnv1a(page.as_bytes()));
    Assets { page, page_etag, script_file, style_file }
});

/// How many bytes the GUI is: the page as served, its script and its stylesheet.
pub fn size_in_bytes() -> usize {
    let assets = &*ASSETS;
    assets.page.len() + SCRIPT.len() + STYLE.len()
}

/// A stable content hash (FNV-1a, 64 bits): the same binary names its assets the same on every
/// peer, so a browser's cached copy serves whichever peer it talks to.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `GET /gui`, `GET /gui/` and `GET /gui/{asset}`; no state, no access check.
pub(crate) fn routes() -> Router {
    Router::new()
        .route(GUI_PATH, get(page))
        .route(&format!("{GUI_PATH}/"), get(page))
        .route(&format!("{GUI_PATH}/{{file}}"), get(asset))
}

fn headers(
    content_type: &'static str,
    cache: &'static str,
) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

async fn page(request_headers: HeaderMap) -> Response {
    let assets = &*ASSETS;
    let etag = HeaderValue::from_str(&assets.page_etag).expect("a hex ETag is a header value");
    let fresh =
        request_headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',').any(|tag| tag.trim() == assets.page_etag || tag.trim() == "*")
        });
    let headers = headers("text/html; charset=utf-8", "no-cache");
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers, [(header::ETAG, etag)]).into_response();
    }
    (headers, [(header::ETAG, etag)], assets.page.clone()).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let assets = &*ASSETS;
    let immutable = "public, max-age=31536000, immutable";
    if file == assets.script_file {
        (headers("text/javascript; charset=utf-8", immutable), SCRIPT).into_response()
    } else if file == assets.style_file {
        (headers("text/css; charset=utf-8", immutable), STYLE).into_response()
    } else {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Op::Other,
            format!("the GUI has no {file}; open {GUI_PATH}/ for the current page"),
        )
        .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_and_the_policy_types() {
        let assets = &*ASSETS;
        assert!(assets.page.contains(&format!("src=\"/gui/{}\"", assets.script_file)));
        assert!(assets.page.contains(&format!("href=\"/gui/{}\"", assets.style_file)));
        assert!(assets.page.contains("\"path\":\"traffic-permissions\""), "{}", assets.page);
        assert!(!assets.page.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn the_page_loads_nothing_from_outside() {
        for text in [PAGE, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"), "{text}");
            assert!(!text.contains("innerHTML"), "values go in as text");
        }
        assert!(!PAGE.contains("style=") && !PAGE.contains("onclick"), "no inline style or script");
    }

    #[test]
    fn the_content_hash_is_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
