//! Sans-IO FLV and AMF0 for Rust: a muxer and a demuxer, AVC and AAC
//! configuration records, and a typed `onMetaData`.
//!
//! Nothing here does I/O: the [`Muxer`] appends to a caller's [`bytes::BytesMut`],
//! the [`Demuxer`] is fed bytes with `push` and drained with `pull`.
//!
//! ```
//! use bytes::BytesMut;
//! use flv::avc::{self, AvcDecoderConfig, AvcPacketType, FrameType};
//! use flv::media::VideoData;
//! use flv::{Demuxer, Muxer, TagKind};
//!
//! /// An x264 SPS (High profile, 1918x1078, 25 fps) and a PPS, without start codes.
//! const SPS: &[u8] = &[
//!     0x67, 0x64, 0x00, 0x28, 0xac, 0xb4, 0x03, 0xc0, 0x11, 0x3d, 0x4d, 0x80, 0x88, 0x00, 0x00, 0x03,
//!     0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xc1, 0x95,
//! ];
//! const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // One access unit as a WebRTC depacketizer hands it over: Annex-B (start codes).
//!     let idr: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0xa0];
//!
//!     // Mux: FLV header, AVC sequence header, the frame - all into one reused BytesMut.
//!     let mut muxer = Muxer::new();
//!     let mut out = BytesMut::with_capacity(4096);
//!     muxer.write_header(&mut out, false, true);
//!     let mut sequence_header = BytesMut::new();
//!     avc::write_sequence_header_tag(
//!         &mut sequence_header,
//!         &AvcDecoderConfig::from_sps_pps(SPS, PPS)?,
//!     );
//!     muxer.write_tag(&mut out, TagKind::Video, 0, &sequence_header);
//!     // Annex-B -> AVCC straight into the tag: the payload is copied once.
//!     muxer.try_write_avc_annexb_tag(&mut out, 0, FrameType::Key, 0, idr)?;
//!
//!     // Demux: push bytes in pieces of any size, pull tags until `None`.
//!     let mut demuxer = Demuxer::new();
//!     let mut tags = Vec::new();
//!     for piece in out.chunks(7) {
//!         demuxer.push(piece);
//!         while let Some(tag) = demuxer.pull()? {
//!             tags.push(tag);
//!         }
//!     }
//!     demuxer.finish()?;
//!     assert!(demuxer.header().unwrap().has_video);
//!     assert_eq!(tags.len(), 2);
//!     let VideoData::Avc {
//!         packet_type: AvcPacketType::SequenceHeader,
//!         data,
//!         ..
//!     } = tags[0].video()?
//!     else {
//!         panic!("not an AVC sequence header");
//!     };
//!     let sps = AvcDecoderConfig::parse(&data)?.parse_sps()?;
//!     assert_eq!((sps.width, sps.height), (1918, 1078));
//!     let VideoData::Avc {
//!         packet_type: AvcPacketType::Nalu,
//!         data,
//!         ..
//!     } = tags[1].video()?
//!     else {
//!         panic!("not AVC NAL units");
//!     };
//!     // AVCC: a 4-byte length in front of each NAL unit instead of a start code.
//!     assert_eq!(&data[..], &[0, 0, 0, 5, 0x65, 0x88, 0x84, 0x21, 0xa0]);
//!     Ok(())
//! }
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
