//! Query parameters: paging (`size`, `offset`), tag filters (`tag=k:v`, repeatable), and
//! `include=data` (secret lists only, admins only: see `resources::list`).

use axum::http::{HeaderMap, StatusCode, Uri};
use kuma_model::rest::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

use crate::error::{ApiError, Op};

#[derive(Debug, Default)]
pub(crate) struct ListParams {
    pub size: usize,
    pub offset: Option<String>,
    pub tags: Vec<(String, String)>,
    /// `include=data`: serve secrets with their bytes.
    pub include_data: bool,
    /// Every other parameter, kept in `next` links.
    other: Vec<(String, String)>,
}

impl ListParams {
    pub fn parse(uri: &Uri) -> Result<ListParams, ApiError> {
        let mut params = ListParams { size: DEFAULT_PAGE_SIZE, ..Default::default() };
        let query = uri.query().unwrap_or_default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "size" => {
                    params.size = match value.parse::<usize>() {
                        Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                        _ => {
                            return Err(ApiError::new(
                                StatusCode::BAD_REQUEST,
                                Op::List,
                                "Invalid page size",
                            )
                            .with_cause(
                                "size",
                                format!("{value:?} is not a page size; use 1 to {MAX_PAGE_SIZE}"),
                            ))
                        }
                    }
                }
                "include" if value == "data" => params.include_data = true,
                "include" => {
                    return Err(ApiError::new(StatusCode::BAD_REQUEST, Op::List, "Invalid include")
                        .with_cause(
                            "include",
                            format!(
                                "{value:?} is not something a list includes; the one value is data"
                            ),
                        ))
                }
                "offset" => params.offset = Some(value.into_owned()).filter(|o| !o.is_empty()),
                "tag" => {
                    let Some((k, v)) = value.split_once(':') else {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            Op::List,
                            "Invalid tag filter",
                        )
                        .with_cause(
                            "tag",
                            format!("{value:?} is not KEY:VALUE, e.g. tag=service:redis"),
                        ));
                    };
                    params.tags.push((k.to_string(), v.to_string()));
                }
                _ => params.other.push((key.into_owned(), value.into_owned())),
            }
        }
        Ok(params)
    }

    /// The absolute URL of the page that starts at `offset`: under `public_url` when one is
    /// configured, else under the request's host, so it points at whichever control plane the
    /// client reached.
    pub fn next_url(
        &self,
        public_url: &str,
        uri: &Uri,
        headers: &HeaderMap,
        offset: &str,
    ) -> String {
        let base = if public_url.is_empty() {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        } else {
            public_url.trim_end_matches('/').to_string()
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.tags {
            query.append_pair("tag", &format!("{k}:{v}"));
        }
        if self.include_data {
            query.append_pair("include", "data");
        }
        for (k, v) in &self.other {
            query.append_pair(k, v);
        }
        query.append_pair("offset", offset);
        query.append_pair("size", &self.size.to_string());
        format!("{base}{}?{}", uri.path(), query.finish())
    }
}
