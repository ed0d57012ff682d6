//! Audio and video tag bodies: the legacy FLV headers (AVC, AAC and the other
//! codec ids) and Enhanced RTMP (FourCC) headers.
//!
//! Parsing never copies: payloads are slices of the tag's [`Bytes`].
//!
//! ```
//! use bytes::Bytes;
//! use flv::media::{FourCc, VideoData};
//!
//! // An Enhanced RTMP HEVC keyframe: ex-header bit, frame type 1, CodedFramesX (3), "hvc1".
//! let body = Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x26]);
//! match VideoData::parse(&body).unwrap() {
//!     VideoData::Enhanced(v) => {
//!         assert_eq!(v.fourcc, Some(FourCc::HVC1));
//!         assert!(v.is_keyframe());
//!         assert_eq!(&v.data[..], &[0, 0, 0, 1, 0x26]);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::fmt;

use bytes::Bytes;

use crate::aac::{AacPacketType, SOUND_FORMAT_AAC};
use crate::amf0::{self, Amf0Error, Value};
use crate::avc::{AvcPacketType, CODEC_ID_AVC};
use crate::hexdump::HexDump;
use crate::tag::{Tag, TagKind};

/// A four-character code naming a codec in Enhanced RTMP.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    /// H.264/AVC.
    pub const AVC1: FourCc = FourCc(*b"avc1");
    /// H.265/HEVC.
    pub const HVC1: FourCc = FourCc(*b"hvc1");
    /// AV1.
    pub const AV01: FourCc = FourCc(*b"av01");
    /// VP8.
    pub const VP08: FourCc = FourCc(*b"vp08");
    /// VP9.
    pub const VP09: FourCc = FourCc(*b"vp09");
    /// Opus.
    pub const OPUS: FourCc = FourCc(*b"Opus");
    /// FLAC.
    pub const FLAC: FourCc = FourCc(*b"fLaC");
    /// AAC.
    pub const MP4A: FourCc = FourCc(*b"mp4a");
    /// AC-3.
    pub const AC3: FourCc = FourCc(*b"ac-3");
    /// E-AC-3.
    pub const EAC3: FourCc = FourCc(*b"ec-3");
    /// MP3.
    pub const MP3: FourCc = FourCc(*b".mp3");
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCc(\"{self}\")")
    }
}

/// An error in an audio or video tag body. Offsets are of the tag header in the
/// stream when the body came from [`Tag::video`] / [`Tag::audio`], else 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The body is shorter than its header.
    #[error("FLV: {kind} tag at offset {offset}: body of {len} bytes is too short for its header (bytes: {bytes})")]
    Truncated {
        /// Video or audio.
        kind: TagKind,
        /// Stream offset of the tag.
        offset: u64,
        /// The body length.
        len: usize,
        /// The body's first bytes.
        bytes: HexDump,
    },
    /// An AVC or AAC packet type this crate does not know.
    #[error(
        "FLV: {kind} tag at offset {offset}: unknown packet type {packet_type} (bytes: {bytes})"
    )]
    UnknownPacketType {
        /// Video or audio.
        kind: TagKind,
        /// Stream offset of the tag.
        offset: u64,
        /// The packet type.
        packet_type: u8,
        /// The body's first bytes.
        bytes: HexDump,
    },
    /// The tag is not of the kind asked for.
    #[error("FLV: tag at offset {offset} is {actual}, not {expected}")]
    WrongKind {
        /// Stream offset of the tag.
        offset: u64,
        /// The kind asked for.
        expected: TagKind,
        /// The tag's kind.
        actual: TagKind,
    },
}

/// Frame types of the video tag header.
pub mod frame_type {
    /// Keyframe.
    pub const KEY: u8 = 1;
    /// Inter frame.
    pub const INTER: u8 = 2;
    /// Disposable inter frame (H.263 only).
    pub const DISPOSABLE: u8 = 3;
    /// Generated keyframe (server use).
    pub const GENERATED_KEY: u8 = 4;
    /// Video info/command frame.
    pub const COMMAND: u8 = 5;
}

/// Enhanced RTMP video packet types.
pub mod video_packet_type {
    /// Decoder configuration record.
    pub const SEQUENCE_START: u8 = 0;
    /// Coded frames (with a composition time for avc1/hvc1).
    pub const CODED_FRAMES: u8 = 1;
    /// End of sequence.
    pub const SEQUENCE_END: u8 = 2;
    /// Coded frames with composition time zero (none transmitted).
    pub const CODED_FRAMES_X: u8 = 3;
    /// AMF-encoded metadata (for example HDR colour info).
    pub const METADATA: u8 = 4;
    /// MPEG-2 TS sequence start.
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    /// Several tracks in one tag.
    pub const MULTITRACK: u8 = 6;
    /// Modifier extension.
    pub const MOD_EX: u8 = 7;
}

/// Enhanced RTMP audio packet types.
pub mod audio_packet_type {
    /// Decoder configuration.
    pub const SEQUENCE_START: u8 = 0;
    /// Coded frames.
    pub const CODED_FRAMES: u8 = 1;
    /// End of sequence.
    pub const SEQUENCE_END: u8 = 2;
    /// Multichannel configuration.
    pub const MULTICHANNEL_CONFIG: u8 = 4;
    /// Several tracks in one tag.
    pub const MULTITRACK: u8 = 5;
    /// Modifier extension.
    pub const MOD_EX: u8 = 7;
}

/// The Enhanced RTMP audio sound format (ex-header).
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;

/// The multitrack type "many tracks, many codecs": no shared FourCC follows.
const MANY_TRACKS_MANY_CODECS: u8 = 2;

/// A parsed video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoData {
    /// Legacy AVC (codec id 7).
    Avc {
        /// Frame type (1 key, 2 inter, 5 command; see [`frame_type`]).
        frame_type: u8,
        /// Sequence header, NAL units or end of sequence.
        packet_type: AvcPacketType,
        /// Composition time offset in milliseconds.
        composition_time: i32,
        /// The AVCDecoderConfigurationRecord or the AVCC NAL units.
        data: Bytes,
    },
    /// A legacy video tag of another codec (H.263, VP6, ...).
    Legacy {
        /// Frame type.
        frame_type: u8,
        /// Codec id.
        codec_id: u8,
        /// Everything after the first byte.
        data: Bytes,
    },
    /// An Enhanced RTMP (FourCC) video tag.
    Enhanced(EnhancedVideo),
}

/// An Enhanced RTMP video tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnhancedVideo {
    /// Frame type (see [`frame_type`]).
    pub frame_type: u8,
    /// Packet type (see [`video_packet_type`]); for multitrack tags the packet
    /// type of the tracks.
    pub packet_type: u8,
    /// The codec, absent for command frames, ModEx tags and multitrack tags
    /// whose tracks carry their own codecs.
    pub fourcc: Option<FourCc>,
    /// The multitrack type, when this is a multitrack tag.
    pub multitrack: Option<u8>,
    /// The video command, for command frames.
    pub command: Option<u8>,
    /// Composition time offset (ms); only coded frames of `avc1`/`hvc1` carry one.
    pub composition_time: i32,
    /// The rest of the body (for multitrack and ModEx tags, uninterpreted).
    pub data: Bytes,
}

impl EnhancedVideo {
    /// Whether this is a keyframe.
    pub fn is_keyframe(&self) -> bool {
        self.frame_type == frame_type::KEY
    }
}

impl VideoData {
    /// Parses a video tag body.
    pub fn parse(data: &Bytes) -> Result<Self, MediaError> {
        parse_video(data, 0)
    }

    /// Whether this is a keyframe (an AVC sequence header counts as one).
    pub fn is_keyframe(&self) -> bool {
        match self {
            VideoData::Avc { frame_type, .. } | VideoData::Legacy { frame_type, .. } => {
                *frame_type == frame_type::KEY
            }
            VideoData::Enhanced(v) => v.is_keyframe(),
        }
    }
}

fn truncated(kind: TagKind, offset: u64, data: &[u8]) -> MediaError {
    MediaError::Truncated {
        kind,
        offset,
        len: data.len(),
        bytes: HexDump::new(data),
    }
}

fn fourcc_at(data: &[u8], at: usize) -> Option<FourCc> {
    let b = data.get(at..at + 4)?;
    Some(FourCc([b[0], b[1], b[2], b[3]]))
}

fn si24(b: &[u8]) -> i32 {
    // Sign-extend a 24-bit big-endian value.
    i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8
}

fn parse_video(data: &Bytes, offset: u64) -> Result<VideoData, MediaError> {
    let err = || truncated(TagKind::Video, offset, data);
    let &first = data.first().ok_or_else(err)?;
    if first & 0x80 != 0 {
        return parse_enhanced_video(data, offset, first);
    }
    let frame_type = first >> 4 & 0x07;
    let codec_id = first & 0x0F;
    if codec_id != CODEC_ID_AVC {
        return Ok(VideoData::Legacy {
            frame_type,
            codec_id,
            data: data.slice(1..),
        });
    }
    if frame_type == frame_type::COMMAND && data.len() < 5 {
        // A video info/command frame: one command byte, no AVC packet header.
        return Ok(VideoData::Legacy {
            frame_type,
            codec_id,
            data: data.slice(1..),
        });
    }
    let header = data.get(..5).ok_or_else(err)?;
    let packet_type =
        AvcPacketType::from_value(header[1]).ok_or_else(|| MediaError::UnknownPacketType {
            kind: TagKind::Video,
            offset,
            packet_type: header[1],
            bytes: HexDump::new(data),
        })?;
    Ok(VideoData::Avc {
        frame_type,
        packet_type,
        composition_time: si24(&header[2..5]),
        data: data.slice(5..),
    })
}

fn parse_enhanced_video(data: &Bytes, offset: u64, first: u8) -> Result<VideoData, MediaError> {
    let err = || truncated(TagKind::Video, offset, data);
    let frame_type = first >> 4 & 0x07;
    let mut packet_type = first & 0x0F;
    let mut pos = 1;
    let mut fourcc = None;
    let mut multitrack = None;
    let mut command = None;
    if packet_type == video_packet_type::MOD_EX {
        // Modifier extensions: reported, not interpreted.
    } else if packet_type != video_packet_type::METADATA && frame_type == frame_type::COMMAND {
        command = Some(*data.get(pos).ok_or_else(err)?);
        pos += 1;
    } else if packet_type == video_packet_type::MULTITRACK {
        let b = *data.get(pos).ok_or_else(err)?;
        pos += 1;
        multitrack = Some(b >> 4);
        packet_type = b & 0x0F;
        if b >> 4 != MANY_TRACKS_MANY_CODECS {
            fourcc = Some(fourcc_at(data, pos).ok_or_else(err)?);
            pos += 4;
        }
    } else {
        fourcc = Some(fourcc_at(data, pos).ok_or_else(err)?);
        pos += 4;
    }
    let mut composition_time = 0;
    if multitrack.is_none()
        && packet_type == video_packet_type::CODED_FRAMES
        && matches!(fourcc, Some(FourCc::AVC1) | Some(FourCc::HVC1))
    {
        let b = data.get(pos..pos + 3).ok_or_else(err)?;
        composition_time = si24(b);
        pos += 3;
    }
    Ok(VideoData::Enhanced(EnhancedVideo {
        frame_type,
        packet_type,
        fourcc,
        multitrack,
        command,
        composition_time,
        data: data.slice(pos..),
    }))
}

/// A parsed audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AudioData {
    /// Legacy AAC (sound format 10).
    Aac {
        /// Sequence header (AudioSpecificConfig) or raw frame.
        packet_type: AacPacketType,
        /// The AudioSpecificConfig or the raw frame.
        data: Bytes,
    },
    /// A legacy audio tag of another format (MP3, Speex, G.711, ...).
    Legacy {
        /// Sound format.
        sound_format: u8,
        /// Rate index (0 5.5 kHz, 1 11 kHz, 2 22 kHz, 3 44 kHz).
        sound_rate: u8,
        /// Whether samples are 16-bit.
        sixteen_bit: bool,
        /// Whether the sound is stereo.
        stereo: bool,
        /// Everything after the first byte.
        data: Bytes,
    },
    /// An Enhanced RTMP (FourCC) audio tag.
    Enhanced(EnhancedAudio),
}

/// An Enhanced RTMP audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnhancedAudio {
    /// Packet type (see [`audio_packet_type`]); for multitrack tags the packet
    /// type of the tracks.
    pub packet_type: u8,
    /// The codec, absent for ModEx tags and multitrack tags whose tracks carry
    /// their own codecs.
    pub fourcc: Option<FourCc>,
    /// The multitrack type, when this is a multitrack tag.
    pub multitrack: Option<u8>,
    /// The rest of the body (for multitrack and ModEx tags, uninterpreted).
    pub data: Bytes,
}

impl AudioData {
    /// Parses an audio tag body.
    pub fn parse(data: &Bytes) -> Result<Self, MediaError> {
        parse_audio(data, 0)
    }
}

fn parse_audio(data: &Bytes, offset: u64) -> Result<AudioData, MediaError> {
    let err = || truncated(TagKind::Audio, offset, data);
    let &first = data.first().ok_or_else(err)?;
    let sound_format = first >> 4;
    match sound_format {
        SOUND_FORMAT_AAC => {
            let &packet = data.get(1).ok_or_else(err)?;
            let packet_type = match packet {
                0 => AacPacketType::SequenceHeader,
                1 => AacPacketType::Raw,
                other => {
                    return Err(MediaError::UnknownPacketType {
                        kind: TagKind::Audio,
                        offset,
                        packet_type: other,
                        bytes: HexDump::new(data),
                    })
                }
            };
            Ok(AudioData::Aac {
                packet_type,
                data: data.slice(2..),
            })
        }
        SOUND_FORMAT_EX_HEADER => {
            let mut packet_type = first & 0x0F;
            let mut pos = 1;
            let mut fourcc = None;
            let mut multitrack = None;
            if packet_type == audio_packet_type::MOD_EX {
                // Modifier extensions: reported, not interpreted.
            } else if packet_type == audio_packet_type::MULTITRACK {
                let &b = data.get(pos).ok_or_else(err)?;
                pos += 1;
                multitrack = Some(b >> 4);
                packet_type = b & 0x0F;
                if b >> 4 != MANY_TRACKS_MANY_CODECS {
                    fourcc = Some(fourcc_at(data, pos).ok_or_else(err)?);
                    pos += 4;
                }
            } else {
                fourcc = Some(fourcc_at(data, pos).ok_or_else(err)?);
                pos += 4;
            }
            Ok(AudioData::Enhanced(EnhancedAudio {
                packet_type,
                fourcc,
                multitrack,
                data: data.slice(pos..),
            }))
        }
        _ => Ok(AudioData::Legacy {
            sound_format,
            sound_rate: first >> 2 & 3,
            sixteen_bit: first & 2 != 0,
            stereo: first & 1 != 0,
            data: data.slice(1..),
        }),
    }
}

impl Tag {
    /// Parses the body of a video tag; errors carry the tag's offset.
    pub fn video(&self) -> Result<VideoData, MediaError> {
        self.expect(TagKind::Video)?;
        parse_video(&self.data, self.offset)
    }

    /// Parses the body of an audio tag; errors carry the tag's offset.
    pub fn audio(&self) -> Result<AudioData, MediaError> {
        self.expect(TagKind::Audio)?;
        parse_audio(&self.data, self.offset)
    }

    /// Decodes the AMF0 values of a script tag (for example `"onMetaData", {...}`).
    /// Error offsets are within the tag body.
    pub fn script_values(&self) -> Result<Vec<Value>, Amf0Error> {
        amf0::decode_all(&self.data)
    }

    fn expect(&self, expected: TagKind) -> Result<(), MediaError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(MediaError::WrongKind {
                offset: self.offset,
                expected,
                actual: self.kind,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(b: &'static [u8]) -> Result<VideoData, MediaError> {
        VideoData::parse(&Bytes::from_static(b))
    }

    fn audio(b: &'static [u8]) -> Result<AudioData, MediaError> {
        AudioData::parse(&Bytes::from_static(b))
    }

    #[test]
    fn legacy_avc() {
        assert_eq!(
            video(&[0x27, 1, 0xFF, 0xFF, 0xC4, 0, 0, 0, 1, 0x41]).unwrap(),
            VideoData::Avc {
                frame_type: 2,
                packet_type: AvcPacketType::Nalu,
                composition_time: -60,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
            }
        );
        assert!(video(&[0x17, 0, 0, 0, 0, 1]).unwrap().is_keyframe());
        assert!(matches!(
            video(&[0x17, 0, 0]),
            Err(MediaError::Truncated { len: 3, .. })
        ));
        assert!(matches!(
            video(&[0x17, 9, 0, 0, 0]),
            Err(MediaError::UnknownPacketType { packet_type: 9, .. })
        ));
        assert!(matches!(
            video(&[]),
            Err(MediaError::Truncated { len: 0, .. })
        ));
        // Command frame: one byte.
        assert!(matches!(
            video(&[0x57, 0]).unwrap(),
            VideoData::Legacy {
                frame_type: 5,
                codec_id: 7,
                ..
            }
        ));
    }

    #[test]
    fn legacy_other_codec() {
        assert_eq!(
            video(&[0x24, 9]).unwrap(),
            VideoData::Legacy {
                frame_type: 2,
                codec_id: 4,
                data: Bytes::from_static(&[9]),
            }
        );
    }

    #[test]
    fn enhanced_hevc_coded_frames_with_cts() {
        let v = video(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 33, 0xAA]).unwrap();
        assert_eq!(
            v,
            VideoData::Enhanced(EnhancedVideo {
                frame_type: 1,
                packet_type: video_packet_type::CODED_FRAMES,
                fourcc: Some(FourCc::HVC1),
                multitrack: None,
                command: None,
                composition_time: 33,
                data: Bytes::from_static(&[0xAA]),
            })
        );
    }

    #[test]
    fn enhanced_av1_sequence_start_and_coded_frames() {
        let VideoData::Enhanced(v) = video(&[0x90, b'a', b'v', b'0', b'1', 0x81]).unwrap() else {
            panic!()
        };
        assert_eq!(v.fourcc, Some(FourCc::AV01));
        assert_eq!(v.packet_type, video_packet_type::SEQUENCE_START);
        // AV1 coded frames carry no composition time.
        let VideoData::Enhanced(v) = video(&[0xA1, b'a', b'v', b'0', b'1', 0x12, 0]).unwrap()
        else {
            panic!()
        };
        assert_eq!((v.frame_type, v.composition_time), (2, 0));
        assert_eq!(&v.data[..], &[0x12, 0]);
        assert!(matches!(
            video(&[0x90, b'a', b'v']),
            Err(MediaError::Truncated { .. })
        ));
    }

    #[test]
    fn enhanced_command_multitrack_and_modex() {
        let VideoData::Enhanced(v) = video(&[0xD1, 1]).unwrap() else {
            panic!()
        };
        assert_eq!((v.command, v.fourcc), (Some(1), None));
        // Multitrack, one track type (0), coded frames X, avc1 shared.
        let VideoData::Enhanced(v) =
            video(&[0x96, 0x03, b'a', b'v', b'c', b'1', 0, 0, 0, 0]).unwrap()
        else {
            panic!()
        };
        assert_eq!(v.multitrack, Some(0));
        assert_eq!(v.packet_type, video_packet_type::CODED_FRAMES_X);
        assert_eq!(v.fourcc, Some(FourCc::AVC1));
        // Many tracks, many codecs: no shared FourCC.
        let VideoData::Enhanced(v) = video(&[0x96, 0x21, 1, 2]).unwrap() else {
            panic!()
        };
        assert_eq!((v.multitrack, v.fourcc), (Some(2), None));
        let VideoData::Enhanced(v) = video(&[0x97, 1, 2, 3]).unwrap() else {
            panic!()
        };
        assert_eq!(v.packet_type, video_packet_type::MOD_EX);
    }

    #[test]
    fn aac_and_legacy_audio() {
        assert_eq!(
            audio(&[0xAF, 0, 0x11, 0x90]).unwrap(),
            AudioData::Aac {
                packet_type: AacPacketType::SequenceHeader,
                data: Bytes::from_static(&[0x11, 0x90]),
            }
        );
        assert!(matches!(audio(&[0xAF]), Err(MediaError::Truncated { .. })));
        assert!(matches!(
            audio(&[0xAF, 7]),
            Err(MediaError::UnknownPacketType { packet_type: 7, .. })
        ));
        assert_eq!(
            audio(&[0x2E, 1]).unwrap(),
            AudioData::Legacy {
                sound_format: 2,
                sound_rate: 3,
                sixteen_bit: true,
                stereo: false,
                data: Bytes::from_static(&[1]),
            }
        );
    }

    #[test]
    fn enhanced_audio() {
        assert_eq!(
            audio(&[0x90, b'O', b'p', b'u', b's', 1, 2]).unwrap(),
            AudioData::Enhanced(EnhancedAudio {
                packet_type: audio_packet_type::SEQUENCE_START,
                fourcc: Some(FourCc::OPUS),
                multitrack: None,
                data: Bytes::from_static(&[1, 2]),
            })
        );
        let AudioData::Enhanced(a) = audio(&[0x95, 0x11, b'f', b'L', b'a', b'C', 0, 9]).unwrap()
        else {
            panic!()
        };
        assert_eq!((a.multitrack, a.fourcc), (Some(1), Some(FourCc::FLAC)));
        assert!(matches!(
            audio(&[0x91, b'O']),
            Err(MediaError::Truncated { .. })
        ));
        assert_eq!(FourCc(*b"ac-3").to_string(), "ac-3");
        assert_eq!(FourCc([0, b'a', b'b', b'c']).to_string(), "\\x00abc");
    }

    #[test]
    fn tag_methods_carry_offset() {
        let tag = Tag {
            kind: TagKind::Video,
            timestamp: 0,
            stream_id: 0,
            data: Bytes::from_static(&[0x17]),
            offset: 1234,
        };
        let err = tag.video().unwrap_err();
        assert!(matches!(err, MediaError::Truncated { offset: 1234, .. }));
        assert!(
            err.to_string().contains("video tag at offset 1234"),
            "{err}"
        );
        assert!(matches!(
            tag.audio().unwrap_err(),
            MediaError::WrongKind {
                offset: 1234,
                expected: TagKind::Audio,
                actual: TagKind::Video
            }
        ));
    }
}
