use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kuma_model::rest::{Cause, ErrorBody};
use kuma_model::{ValidationError, Violation};
use kuma_store::StoreError;

/// An error answered in Kuma's error body: `{title, details, causes}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: String,
    pub details: String,
    pub causes: Vec<Cause>,
}

/// What the request was doing, which picks the title of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Get,
    List,
    Put,
    Delete,
    /// A request no handler takes (an unknown path or method).
    Other,
}

impl Op {
    fn title(self) -> &'static str {
        match self {
            Op::Get => "Could not retrieve a resource",
            Op::List => "Could not retrieve resources",
            Op::Put => "Could not process a resource",
            Op::Delete => "Could not delete a resource",
            Op::Other => "Could not process the request",
        }
    }
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, op: Op, details: impl Into<String>) -> ApiError {
        ApiError { status, title: op.title().into(), details: details.into(), causes: Vec::new() }
    }

    /// An error of a route kuma-cp adds beside the resource routes (`ApiServer::serve_with`),
    /// answered with the same body and title as any other request's error.
    pub fn request(status: StatusCode, details: impl Into<String>) -> ApiError {
        ApiError::new(status, Op::Other, details)
    }

    pub(crate) fn with_cause(mut self, field: &str, message: impl Into<String>) -> ApiError {
        self.causes.push(Cause { field: field.into(), message: message.into() });
        self
    }

    pub(crate) fn invalid(op: Op, violations: Vec<Violation>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            title: op.title().into(),
            details: "Resource is not valid".into(),
            causes: violations
                .into_iter()
                .map(|v| Cause { field: v.field, message: v.message })
                .collect(),
        }
    }

    pub(crate) fn validation(op: Op, e: ValidationError) -> ApiError {
        ApiError::invalid(op, e.violations)
    }

    pub(crate) fn read_only(op: Op, reason: Option<&str>) -> ApiError {
        let reason = reason.unwrap_or(
            "this control plane is read-only (apiServer.readOnly): change resources on a writable control plane",
        );
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, op, reason)
    }

    /// Maps a store error. `precondition` says the client sent `If-Match`, so a version conflict
    /// is its precondition failing (412) rather than a concurrent write (409).
    pub(crate) fn store(op: Op, e: StoreError, precondition: bool) -> ApiError {
        match e {
            StoreError::NotFound { key } if precondition => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, op, format!("Precondition Failed: {key} does not exist"))
            }
            StoreError::NotFound { key } => ApiError::new(StatusCode::NOT_FOUND, op, format!("{key} not found")),
            StoreError::Conflict { key, expected, actual } if precondition => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                op,
                format!("Precondition Failed: {key} is at version {actual}, not {expected}; get it again and retry"),
            ),
            StoreError::Conflict { key, .. } => ApiError::new(
                StatusCode::CONFLICT,
                op,
                format!("{key} was changed by another request at the same time; retry"),
            ),
            StoreError::AlreadyExists { key } => ApiError::new(
                StatusCode::CONFLICT,
                op,
                format!("{key} was created by another request at the same time; retry"),
            ),
            StoreError::MeshNotFound { mesh } => ApiError::new(StatusCode::BAD_REQUEST, op, "Mesh is not found")
                .with_cause("mesh", format!("mesh of name {mesh} is not found")),
            StoreError::Invalid { reason } => ApiError::new(StatusCode::BAD_REQUEST, op, reason),
            StoreError::Unavailable { reason } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                op,
                format!("the store is unavailable ({reason}); retry shortly"),
            ),
            StoreError::Compacted { .. } | StoreError::Internal { .. } => {
                tracing::error!(error = %e, operation = ?op, "store failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, op, "Internal Server Error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let body = ErrorBody { title: self.title, details: self.details, causes: self.causes };
        let mut response = (self.status, Json(body)).into_response();
        if retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
