//! Sans-IO FLV and AMF0 for Rust: a muxer and a demuxer, AVC and AAC
//! configuration records, and a typed `onMetaData`.
//!
//! Nothing here does I/O: the [`Muxer`] appends to a caller's [`bytes::BytesMut`],
//! the [`Demuxer`] is fed bytes with `push` and drained with `pull`.
//!
//! ```
//! use bytes::BytesMut;
//! use flv::{Demuxer, Muxer, TagKind};
//!
//! // Mux: header, then tags, into one reused buffer.
//! let mut muxer = Muxer::new();
//! let mut out = BytesMut::with_capacity(4096);
//! muxer.write_header(&mut out, true, true);
//! muxer.write_tag(&mut out, TagKind::Audio, 0, &[0xAF, 0x00, 0x11, 0x90]);
//! muxer.write_tag(&mut out, TagKind::Audio, 21, &[0xAF, 0x01, 0x21, 0x10]);
//!
//! // Demux: push bytes in pieces of any size, pull tags until `None`.
//! let mut demuxer = Demuxer::new();
//! let mut tags = Vec::new();
//! for piece in out.chunks(7) {
//!     demuxer.push(piece);
//!     while let Some(tag) = demuxer.pull()? {
//!         tags.push(tag);
//!     }
//! }
//! demuxer.finish()?;
//! assert_eq!(tags.len(), 2);
//! assert_eq!(tags[1].kind, TagKind::Audio);
//! assert_eq!(tags[1].timestamp, 21);
//! assert_eq!(&tags[1].data[..], &[0xAF, 0x01, 0x21, 0x10]);
//! assert!(demuxer.header().unwrap().has_video);
//! # Ok::<(), flv::DemuxError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod aac;
pub mod amf0;
pub mod avc;
pub mod demux;
mod hexdump;
pub mod media;
pub mod metadata;
pub mod mux;
pub mod tag;

pub use demux::{DemuxError, Demuxer};
pub use hexdump::{HexDump, HEX_DUMP_MAX};
pub use mux::{MuxError, Muxer};
pub use tag::{FlvHeader, Tag, TagHeader, TagKind};
