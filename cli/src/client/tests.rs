//! Unit tests of `client.rs`.

use super::*;
use kuma_model::rest::Cause;

#[test]
fn api_errors_print_title_details_and_one_line_per_cause() {
    let err = ClientError::Api {
        status: 400,
        body: ErrorBody {
            title: "Could not process a resource".into(),
            details: "Resource is not valid".into(),
            causes: vec![
                Cause {
                    field: "networking.inbound[0].tags[\"service\"]".into(),
                    message: "tag has to exist".into(),
                },
                Cause { field: "networking.inbound[0].interface".into(), message: "bad".into() },
            ],
        },
    };
    assert_eq!(
        err.to_string(),
        "Could not process a resource (Resource is not valid)\n\
         * networking.inbound[0].tags[\"service\"]: tag has to exist\n\
         * networking.inbound[0].interface: bad"
    );
    assert_eq!(err.status(), Some(400));
}

#[test]
fn an_error_without_details_is_just_its_title() {
    let body = ErrorBody { title: "Not found".into(), details: String::new(), causes: vec![] };
    assert_eq!(format_api_error(&body), "Not found");
}

#[test]
fn an_error_body_that_is_not_kumas_is_shown_as_text() {
    let err = ClientError::Status {
        method: "PUT".into(),
        url: "http://cp:5681/meshes/default".into(),
        status: 405,
        body: "On Kubernetes you cannot change the state of Kuma resources with kumactl\n".into(),
    };
    assert_eq!(
        err.to_string(),
        "PUT http://cp:5681/meshes/default failed with HTTP 405: On Kubernetes you cannot \
         change the state of Kuma resources with kumactl"
    );
}

#[test]
fn unreachable_says_where_and_what_to_do() {
    let err = ClientError::Unreachable {
        url: "http://127.0.0.1:1/".into(),
        reason: "Connection refused (os error 111)".into(),
    };
    let text = err.to_string();
    assert!(text.contains("http://127.0.0.1:1/") && text.contains("Connection refused"));
    assert!(text.contains("kuma-cp is running") && text.contains("control-planes add"));
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn paths_come_from_the_registry_and_are_encoded() {
    let client = ApiClient::new("http://cp:5681").unwrap();
    let url = client.url(&ApiClient::item(ResourceType::TrafficPermission, "default", "a b"));
    assert_eq!(url.as_str(), "http://cp:5681/meshes/default/traffic-permissions/a%20b");
    let url = client.url(&ApiClient::item(ResourceType::Mesh, "ignored", "demo"));
    assert_eq!(url.as_str(), "http://cp:5681/meshes/demo");
}

#[test]
fn a_base_url_with_a_path_prefix_keeps_it() {
    let client = ApiClient::new("https://cp.example.com/kuma/").unwrap();
    assert_eq!(client.url(&["meshes"]).as_str(), "https://cp.example.com/kuma/meshes");
    assert_eq!(client.url(&[]).as_str(), "https://cp.example.com/kuma/");
}

#[test]
fn addresses_that_are_not_http_urls_are_refused() {
    for bad in ["localhost:5681", "ftp://cp", "not a url", "http://"] {
        assert!(matches!(ApiClient::new(bad), Err(ClientError::BadUrl { .. })), "{bad}");
    }
}

#[test]
fn only_an_unreachable_or_unavailable_control_plane_is_worth_retrying() {
    let api = |status| ClientError::Api {
        status,
        body: ErrorBody { title: "x".into(), details: String::new(), causes: vec![] },
    };
    let bare = |status| ClientError::Status {
        method: "GET".into(),
        url: "http://cp:5681/meshes".into(),
        status,
        body: String::new(),
    };
    let url = || "http://cp:5681/".to_string();
    assert!(ClientError::Unreachable {
        url: url(),
        reason: "Connection refused (os error 111)".into()
    }
    .is_retryable());
    assert!(ClientError::TimedOut { url: url() }.is_retryable());
    for status in [502, 503, 504] {
        assert!(api(status).is_retryable(), "{status}");
        assert!(bare(status).is_retryable(), "{status}");
    }
    for status in [400, 401, 403, 404, 405, 409, 500, 501, 505] {
        assert!(!api(status).is_retryable(), "{status}");
        assert!(!bare(status).is_retryable(), "{status}");
    }
    for err in [
        ClientError::Decode { url: url(), reason: "expected value at line 1 column 1".into() },
        ClientError::BadUrl { url: url(), reason: "the scheme must be http or https".into() },
        ClientError::Transport { url: url(), reason: "connection reset".into() },
    ] {
        assert!(!err.is_retryable(), "{err:?}");
    }
}

#[test]
fn a_request_without_an_answer_in_time_is_not_called_unreachable() {
    let err = ClientError::TimedOut { url: "http://cp:5681/status/raft/peers".into() };
    let text = err.to_string();
    assert!(
        text.starts_with(
            "the Control Plane API Server at http://cp:5681/status/raft/peers took the request \
             but did not answer within 60s"
        ),
        "{text}"
    );
    assert!(text.contains("may still be made"), "{text}");
}
