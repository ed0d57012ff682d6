//! Sans-IO FLV and AMF0 for Rust: a muxer and a demuxer, AVC and AAC
//! configuration records, and a typed `onMetaData`.
//!
//! Nothing here does I/O: the muxer appends to a caller's [`bytes::BytesMut`],
//! the demuxer is fed bytes with `push` and drained with `pull`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod amf0;
mod hexdump;

pub use hexdump::{HexDump, HEX_DUMP_MAX};
