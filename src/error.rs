//! One error type for every failure a frontend can see: a stable snake_case code, an HTTP
//! status, and a human message. HTTP, WHIP, WebSocket and SSE all render it the same way:
//! `{"error":{"code":"...","message":"..."}}`. Messages never contain secrets.

use std::fmt;

/// Stable error codes. The README's table documents each one and what the user should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed or a field is invalid (400).
    InvalidRequest,
    /// A body, message or SDP is larger than allowed (413).
    PayloadTooLarge,
    /// WHIP offer sent with a content type other than application/sdp (415).
    UnsupportedMediaType,
    /// The route exists but not with this method (or an unsupported WHIP PATCH) (405).
    MethodNotAllowed,
    /// Missing or wrong credentials (401).
    Unauthorized,
    /// Too many failed authentication attempts from this client (429).
    TooManyAuthFailures,
    /// No such stream, destination or session, or not yours (404).
    NotFound,
    /// The request does not fit the current state (409).
    Conflict,
    /// Another publisher is already sending to this stream (409).
    PublisherExists,
    /// The SDP offer could not be parsed (400).
    InvalidSdp,
    /// The offer has no H.264 video we can pass through (422).
    NoH264Offered,
    /// ICE/DTLS never connected, or the connection was lost for too long (502 on the stream).
    IceFailed,
    /// The publisher went away and did not come back within the grace period.
    PublisherLost,
    /// The RTMP server could not be reached (TCP connect failed or timed out).
    RtmpConnectFailed,
    /// The RTMPS server's certificate did not verify, or the TLS handshake failed.
    RtmpTlsFailed,
    /// The RTMP server refused the publish (bad stream key, wrong app...).
    RtmpPublishRejected,
    /// An established RTMP connection was lost and did not come back within the budget.
    RtmpConnectionLost,
    /// The server's stream or destination limit is reached (429).
    TooManyStreams,
    /// Too many destinations on one stream (429).
    TooManyDestinations,
    /// YouTube is not configured on this server (no Google client credentials) (503).
    YoutubeNotConfigured,
    /// No YouTube account is connected for this user (409).
    YoutubeNotConnected,
    /// The YouTube account must sign in again (refresh token revoked or expired) (401).
    YoutubeReauthRequired,
    /// The channel cannot live stream yet (enable it; it takes up to 24 hours) (403).
    YoutubeLiveStreamingNotEnabled,
    /// The daily YouTube API quota is used up (403).
    YoutubeQuotaExceeded,
    /// The token lacks the `youtube` scope (403).
    YoutubeMissingScope,
    /// YouTube did not see the stream arrive in time (502).
    YoutubeStreamInactive,
    /// YouTube refused a broadcast transition (409).
    YoutubeInvalidTransition,
    /// Google's servers could not be reached or failed (502).
    YoutubeUnreachable,
    /// Any other YouTube API error (502).
    YoutubeApiError,
    /// Google sign-in failed: consent refused, state invalid or the code exchange failed (400).
    OauthFailed,
    /// The user declined access on Google's consent screen (400).
    OauthConsentRefused,
    /// The sign-in's `state` is unknown, reused, expired or from another browser (400).
    OauthStateInvalid,
    /// Google refused the authorization code exchange (wrong verifier, bad code...) (400).
    OauthExchangeFailed,
    /// The Google account has no YouTube channel (409).
    YoutubeNoChannel,
    /// Something unexpected inside the server (500). Logged with details; the message is generic.
    Internal,
}

impl ErrorCode {
    /// The snake_case code string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooManyAuthFailures => "too_many_auth_failures",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PublisherExists => "publisher_exists",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::NoH264Offered => "no_h264_offered",
            ErrorCode::IceFailed => "ice_failed",
            ErrorCode::PublisherLost => "publisher_lost",
            ErrorCode::RtmpConnectFailed => "rtmp_connect_failed",
            ErrorCode::RtmpTlsFailed => "rtmp_tls_failed",
            ErrorCode::RtmpPublishRejected => "rtmp_publish_rejected",
            ErrorCode::RtmpConnectionLost => "rtmp_connection_lost",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::TooManyDestinations => "too_many_destinations",
            ErrorCode::YoutubeNotConfigured => "youtube_not_configured",
            ErrorCode::YoutubeNotConnected => "youtube_not_connected",
            ErrorCode::YoutubeReauthRequired => "youtube_reauth_required",
            ErrorCode::YoutubeLiveStreamingNotEnabled => "youtube_live_streaming_not_enabled",
            ErrorCode::YoutubeQuotaExceeded => "youtube_quota_exceeded",
            ErrorCode::YoutubeMissingScope => "youtube_missing_scope",
            ErrorCode::YoutubeStreamInactive => "youtube_stream_inactive",
            ErrorCode::YoutubeInvalidTransition => "youtube_invalid_transition",
            ErrorCode::YoutubeUnreachable => "youtube_unreachable",
            ErrorCode::YoutubeApiError => "youtube_api_error",
            ErrorCode::OauthFailed => "oauth_failed",
            ErrorCode::OauthConsentRefused => "oauth_consent_refused",
            ErrorCode::OauthStateInvalid => "oauth_state_invalid",
            ErrorCode::OauthExchangeFailed => "oauth_exchange_failed",
            ErrorCode::YoutubeNoChannel => "youtube_no_channel",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status an API answer with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidSdp
            | ErrorCode::OauthFailed
            | ErrorCode::OauthConsentRefused
            | ErrorCode::OauthStateInvalid
            | ErrorCode::OauthExchangeFailed => 400,
            ErrorCode::Unauthorized | ErrorCode::YoutubeReauthRequired => 401,
            ErrorCode::YoutubeLiveStreamingNotEnabled
            | ErrorCode::YoutubeQuotaExceeded
            | ErrorCode::YoutubeMissingScope => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict
            | ErrorCode::PublisherExists
            | ErrorCode::YoutubeNotConnected
            | ErrorCode::YoutubeNoChannel
            | ErrorCode::YoutubeInvalidTransition => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::NoH264Offered => 422,
            ErrorCode::TooManyAuthFailures
            | ErrorCode::TooManyStreams
            | ErrorCode::TooManyDestinations => 429,
            ErrorCode::Internal => 500,
            ErrorCode::IceFailed
            | ErrorCode::PublisherLost
            | ErrorCode::RtmpConnectFailed
            | ErrorCode::RtmpTlsFailed
            | ErrorCode::RtmpPublishRejected
            | ErrorCode::RtmpConnectionLost
            | ErrorCode::YoutubeStreamInactive
            | ErrorCode::YoutubeUnreachable
            | ErrorCode::YoutubeApiError => 502,
            ErrorCode::YoutubeNotConfigured => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure with its code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Error {
    /// The stable code.
    pub code: ErrorCode,
    /// Human text, safe to show (no secrets).
    pub message: String,
}

impl Error {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// The JSON body every edge sends: `{"error":{"code":..,"message":..}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.code.http_status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.to_json())).into_response()
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_as_str() {
        for code in [
            ErrorCode::NoH264Offered,
            ErrorCode::YoutubeLiveStreamingNotEnabled,
            ErrorCode::RtmpTlsFailed,
            ErrorCode::TooManyAuthFailures,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
        }
    }

    #[test]
    fn json_shape() {
        let e = Error::new(ErrorCode::NotFound, "no stream abc");
        assert_eq!(
            e.to_json(),
            serde_json::json!({"error":{"code":"not_found","message":"no stream abc"}})
        );
        assert_eq!(ErrorCode::NotFound.http_status(), 404);
    }
}
