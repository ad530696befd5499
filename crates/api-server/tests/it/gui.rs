//! The GUI's routes, in-process: the index points at it, the page and its assets are served to
//! anyone with their content types, cache headers and a Content-Security-Policy that allows
//! nothing from outside, while the API the page reads still needs credentials. The page running
//! in a real browser against a real cluster is node/tests/it/gui_browser.rs.

use axum::http::{Method, StatusCode};
use kuma_api_server::GUI_CONTENT_SECURITY_POLICY;

use crate::support::{must_api, Reply};

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The asset URLs the page names, e.g. `/gui/app-0123456789abcdef.js`.
fn assets_of(page: &str) -> Vec<String> {
    page.split(['"', '\'']).filter(|s| s.starts_with("/gui/app-")).map(str::to_string).collect()
}

#[tokio::test]
async fn the_index_keeps_kumas_fields_and_points_at_the_gui() {
    let body = must_api().await.as_remote().get("/").await.body;
    assert_eq!(body["tagline"], "Kuma");
    assert_eq!(body["version"], "1.2.3");
    assert_eq!(body["hostname"], "cp-1");
    assert_eq!(body["gui"], "The gui is available at /gui");
}

#[tokio::test]
async fn the_page_is_served_to_anyone_with_a_strict_policy_and_revalidated() {
    let api = must_api().await.as_remote();
    for path in ["/gui", "/gui/"] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(header(&reply, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&reply, "cache-control"), "no-cache");
        assert_eq!(header(&reply, "content-security-policy"), GUI_CONTENT_SECURITY_POLICY);
        assert_eq!(header(&reply, "x-content-type-options"), "nosniff");
        let page = reply.body.as_str().expect("HTML");
        assert!(page.starts_with("<!doctype html>"), "{page}");
        assert_eq!(assets_of(page).len(), 2, "a script and a stylesheet: {page}");
    }
    let csp = GUI_CONTENT_SECURITY_POLICY;
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    for allowed in ["script-src 'self'", "style-src 'self'", "connect-src 'self'"] {
        assert!(csp.contains(allowed), "{csp}");
    }
    assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");

    let etag = header(&api.get("/gui/").await, "etag").to_string();
    assert!(etag.starts_with('"'), "{etag}");
    let again = api.send(Method::GET, "/gui/", None, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.body, serde_json::Value::Null);
}

#[tokio::test]
async fn the_assets_have_their_content_types_and_are_cached_for_good() {
    let api = must_api().await.as_remote();
    let page = api.get("/gui/").await.body.as_str().unwrap().to_string();
    let mut total = page.len();
    for asset in assets_of(&page) {
        let reply = api.get(&asset).await;
        assert_eq!(reply.status, StatusCode::OK, "{asset}");
        let expected = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(header(&reply, "content-type"), expected, "{asset}");
        assert_eq!(header(&reply, "cache-control"), "public, max-age=31536000, immutable");
        assert_eq!(header(&reply, "content-security-policy"), GUI_CONTENT_SECURITY_POLICY);
        total += reply.body.as_str().unwrap().len();
    }
    assert_eq!(total, kuma_api_server::gui_size_in_bytes());
    assert!(total < 32 * 1024, "the GUI stays small: {total} bytes");

    let stale = api.get("/gui/app-0000000000000000.js").await;
    assert_eq!(stale.status, StatusCode::NOT_FOUND);
    assert!(stale.body["details"].as_str().unwrap().contains("open /gui/"), "{}", stale.body);
}

#[tokio::test]
async fn the_api_the_page_reads_still_needs_credentials_from_elsewhere() {
    let api = must_api().await;
    assert_eq!(api.as_remote().get("/dataplanes+insights").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/dataplanes+insights").await.status, StatusCode::OK, "loopback is admin");
}
