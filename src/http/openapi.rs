//! `GET /api/openapi.json`: the OpenAPI 3.1 description of every route the server mounts,
//! kept in `openapi.json` beside this file and served as it is. It sits behind the same bearer
//! token as the rest of the API.
//!
//! `tests/openapi.rs` keeps the document true: every `.route(..)` of the router's source is
//! documented and every documented operation reaches a handler, real answers validate against
//! the documented schemas, and requests generated from the document (valid, then mutated)
//! never get a 5xx or an undocumented status.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// The handler.
pub async fn document() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DOCUMENT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    /// Every code, in declaration order.
    const ALL_CODES: [ErrorCode; 35] = [
        ErrorCode::InvalidRequest,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Unauthorized,
        ErrorCode::TooManyAuthFailures,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PublisherExists,
        ErrorCode::InvalidSdp,
        ErrorCode::NoH264Offered,
        ErrorCode::IceFailed,
        ErrorCode::PublisherLost,
        ErrorCode::RtmpConnectFailed,
        ErrorCode::RtmpTlsFailed,
        ErrorCode::RtmpPublishRejected,
        ErrorCode::RtmpConnectionLost,
        ErrorCode::TooManyStreams,
        ErrorCode::TooManyDestinations,
        ErrorCode::YoutubeNotConfigured,
        ErrorCode::YoutubeNotConnected,
        ErrorCode::YoutubeReauthRequired,
        ErrorCode::YoutubeLiveStreamingNotEnabled,
        ErrorCode::YoutubeQuotaExceeded,
        ErrorCode::YoutubeMissingScope,
        ErrorCode::YoutubeStreamInactive,
        ErrorCode::YoutubeInvalidTransition,
        ErrorCode::YoutubeUnreachable,
        ErrorCode::YoutubeApiError,
        ErrorCode::OauthFailed,
        ErrorCode::OauthConsentRefused,
        ErrorCode::OauthStateInvalid,
        ErrorCode::OauthExchangeFailed,
        ErrorCode::YoutubeNoChannel,
        ErrorCode::Internal,
    ];

    /// A code added to [`ErrorCode`] makes this match fail to compile: add it to [`ALL_CODES`]
    /// and to the `ErrorCode` enum of `openapi.json`.
    #[allow(dead_code)]
    fn every_code_is_in_all_codes(code: ErrorCode) {
        match code {
            ErrorCode::InvalidRequest
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Unauthorized
            | ErrorCode::TooManyAuthFailures
            | ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::PublisherExists
            | ErrorCode::InvalidSdp
            | ErrorCode::NoH264Offered
            | ErrorCode::IceFailed
            | ErrorCode::PublisherLost
            | ErrorCode::RtmpConnectFailed
            | ErrorCode::RtmpTlsFailed
            | ErrorCode::RtmpPublishRejected
            | ErrorCode::RtmpConnectionLost
            | ErrorCode::TooManyStreams
            | ErrorCode::TooManyDestinations
            | ErrorCode::YoutubeNotConfigured
            | ErrorCode::YoutubeNotConnected
            | ErrorCode::YoutubeReauthRequired
            | ErrorCode::YoutubeLiveStreamingNotEnabled
            | ErrorCode::YoutubeQuotaExceeded
            | ErrorCode::YoutubeMissingScope
            | ErrorCode::YoutubeStreamInactive
            | ErrorCode::YoutubeInvalidTransition
            | ErrorCode::YoutubeUnreachable
            | ErrorCode::YoutubeApiError
            | ErrorCode::OauthFailed
            | ErrorCode::OauthConsentRefused
            | ErrorCode::OauthStateInvalid
            | ErrorCode::OauthExchangeFailed
            | ErrorCode::YoutubeNoChannel
            | ErrorCode::Internal => {}
        }
    }

    fn document_json() -> serde_json::Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    #[test]
    fn is_openapi_3_1_of_this_version() {
        let doc = document_json();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn error_code_enum_is_every_code() {
        let doc = document_json();
        let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode.enum")
            .iter()
            .map(|v| v.as_str().expect("a string"))
            .collect();
        let codes: Vec<&str> = ALL_CODES.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, codes);
        let unique: std::collections::HashSet<&str> = codes.iter().copied().collect();
        assert_eq!(unique.len(), codes.len());
        for name in documented {
            let code: ErrorCode = serde_json::from_value(name.into()).expect("a known code");
            assert_eq!(code.as_str(), name);
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &serde_json::Value, node: &serde_json::Value, at: &str) {
            match node {
                serde_json::Value::Object(map) => {
                    if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                        let pointer = r.strip_prefix('#').unwrap_or(r);
                        assert!(doc.pointer(pointer).is_some(), "{at}: {r} does not resolve");
                    }
                    for (k, v) in map {
                        walk(doc, v, &format!("{at}/{k}"));
                    }
                }
                serde_json::Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        walk(doc, v, &format!("{at}/{i}"));
                    }
                }
                _ => {}
            }
        }
        let doc = document_json();
        walk(&doc, &doc, "");
    }
}
