//! webrtc (in progress).
