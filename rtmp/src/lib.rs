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
//!
//! use bytes::Bytes;
//! use rtmp::handshake::RANDOM_SIZE;
//! use rtmp::{
//!     ClientConfig, ClientSession, Event, MediaKind, ServerConfig, ServerEvent, ServerSession,
//! };
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Time and the handshake's random bytes come from the caller (use a CSPRNG).
//!     let now = Instant::now();
//!     let config = ClientConfig::new("live", "rtmp://127.0.0.1/live", "stream-key");
//!     let mut client = ClientSession::new(config, now, &[7; RANDOM_SIZE]);
//!     // The other end of the "socket": a server session, in memory.
//!     let mut server = ServerSession::new(ServerConfig::default(), now, &[9; RANDOM_SIZE]);
//!
//!     // Handshake, connect, createStream, publish: move bytes until the server acknowledges.
//!     let mut publishing = None;
//!     for _ in 0..10 {
//!         // Write what the client has pending, then say how much the socket took.
//!         let written = client.pending_output().to_vec();
//!         client.consume_output(written.len());
//!         server.handle_input(now, &written)?;
//!         while let Some(event) = server.poll_event() {
//!             if let ServerEvent::PublishRequested { stream_id, .. } = event {
//!                 server.accept_publish(stream_id)?;
//!             }
//!         }
//!         // Feed the client what the socket read, then drain its events.
//!         let read = server.pending_output().to_vec();
//!         server.consume_output(read.len());
//!         client.handle_input(now, &read)?;
//!         while let Some(event) = client.poll_event() {
//!             match event {
//!                 Event::Publishing { stream_id } => publishing = Some(stream_id),
//!                 Event::Rejected { code, description } => {
//!                     return Err(format!("refused: {code}: {description}").into())
//!                 }
//!                 _ => {}
//!             }
//!         }
//!         // Each answer has a deadline: call handle_timeout when poll_timeout says so.
//!         if client.poll_timeout().is_some_and(|at| now >= at) {
//!             client.handle_timeout(now);
//!         }
//!         if publishing.is_some() {
//!             break;
//!         }
//!     }
//!     assert_eq!(publishing, Some(1));
//!
//!     // Media: FLV tag bodies as `Bytes`; the payload is copied once, into the output.
//!     client.send_video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]))?;
//!     client.send_audio(0, Bytes::from_static(&[0xaf, 0, 0x11, 0x90]))?;
//!     let written = client.pending_output().to_vec();
//!     client.consume_output(written.len());
//!     server.handle_input(now, &written)?;
//!     let mut media = Vec::new();
//!     while let Some(event) = server.poll_event() {
//!         if let ServerEvent::Media { kind, .. } = event {
//!             media.push(kind);
//!         }
//!     }
//!     assert_eq!(media, [MediaKind::Video, MediaKind::Audio]);
//!
//!     // FCUnpublish + deleteStream: flush pending_output, then close the socket.
//!     client.stop();
//!     assert!(matches!(
//!         client.poll_event(),
//!         Some(Event::Closed {
//!             was_publishing: true,
//!             ..
//!         })
//!     ));
//!     Ok(())
//! }
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
