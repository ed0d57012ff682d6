//! Streamify server: WebRTC (WHIP and WebSocket signaling) in, H.264 passthrough and Opus to AAC,
//! FLV over RTMP/RTMPS out, YouTube Live management.
//!
//! Media flows one way: [`webrtc`] -> [`media`] -> [`output`] -> socket. Control flows one
//! way: [`http`] -> [`streams`] -> the rest. Nothing below [`streams`] knows HTTP.

pub mod config;
pub mod error;
pub mod http;
pub mod media;
pub mod output;
pub mod server;
pub mod store;
pub mod streams;
pub mod webrtc;
pub mod youtube;
