//! Sans-IO RTMP: the handshake, the chunk stream, a publishing client session and a
//! minimal server session, plus an optional `tokio` adapter (TCP and TLS).
//!
//! The core owns no socket, no clock and no random source: time (`now: Instant`) and the
//! handshake's random bytes are passed in, so the same code runs under tokio, in a test
//! with a virtual clock, or in a fuzzer.
//!
//! # The drive loop
//!
//! Feed what the socket reads into [`ClientSession::handle_input`], write
//! [`ClientSession::pending_output`] to the socket and report what was written with
//! [`ClientSession::consume_output`], drain [`ClientSession::poll_event`], and call
//! [`ClientSession::handle_timeout`] at [`ClientSession::poll_timeout`]. Here a client and
//! a [`ServerSession`] drive each other in memory:
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use rtmp::{ClientConfig, ClientSession, Event, ServerConfig, ServerEvent, ServerSession};
//!
//! let now = Instant::now();
//! let config = ClientConfig::new("live", "rtmp://127.0.0.1/live", "key");
//! let mut client = ClientSession::new(config, now, &[7; rtmp::handshake::RANDOM_SIZE]);
//! let mut server = ServerSession::new(ServerConfig::default(), now, &[9; rtmp::handshake::RANDOM_SIZE]);
//!
//! let mut publishing = false;
//! for _ in 0..10 {
//!     // Client -> "socket" -> server.
//!     let out = client.pending_output().to_vec();
//!     client.consume_output(out.len());
//!     server.handle_input(now, &out).unwrap();
//!     while let Some(event) = server.poll_event() {
//!         if let ServerEvent::PublishRequested { stream_id, .. } = event {
//!             server.accept_publish(stream_id).unwrap();
//!         }
//!     }
//!     // Server -> "socket" -> client.
//!     let out = server.pending_output().to_vec();
//!     server.consume_output(out.len());
//!     client.handle_input(now, &out).unwrap();
//!     while let Some(event) = client.poll_event() {
//!         match event {
//!             Event::Publishing { .. } => publishing = true,
//!             Event::Rejected { code, description } => panic!("{code}: {description}"),
//!             _ => {}
//!         }
//!     }
//! }
//! assert!(publishing);
//! // Media: FLV tag bodies as `Bytes`; the payload is copied once, into the output.
//! client.send_video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f])).unwrap();
//! client.stop(); // FCUnpublish + deleteStream; flush the output, then close the socket.
//! ```
//!
//! With the `tokio` feature, `rtmp::tokio::Publisher` does all of this over TCP or TLS.
//!
//! # Back-pressure
//!
//! Media is classified ([`FrameClass`]): when more than
//! [`ClientConfig::max_queued_video_bytes`] are waiting in the output, video is dropped
//! up to the next keyframe; audio only past [`ClientConfig::max_queued_audio_bytes`];
//! sequence headers never. [`ClientSession::drop_stats`] counts what was dropped.
//!
//! # Errors
//!
//! Protocol errors say where: the byte offset in the connection, the chunk stream id and
//! message type, and a capped hex dump. They are sticky: after the first, the session
//! reports it on every call.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "_fuzz")]
#[doc(hidden)]
pub mod _fuzz;
pub mod chunk;
mod client;
mod command;
mod conn;
pub mod error;
pub mod handshake;
mod media;
mod server;
pub mod url;

#[cfg(feature = "tokio")]
pub mod tokio;

pub use client::{
    ClientConfig, ClientSession, ClientState, CloseReason, Event, DEFAULT_FLASH_VER,
    OUTGOING_CHUNK_SIZE,
};
pub use error::{ChunkError, Error, HandshakeError, HexDump, SessionError, UsageError};
pub use media::{Admission, DropPolicy, DropStats, FrameClass, MediaKind, MediaMessage};
pub use server::{ServerConfig, ServerEvent, ServerSession};
pub use url::{RtmpUrl, Scheme, UrlError};
