//! The FLV file header, tag headers and tags.

use bytes::{BufMut, Bytes, BytesMut};

/// Length of the FLV file header.
pub const FLV_HEADER_LEN: usize = 9;
/// Length of a tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Length of a PreviousTagSize field.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// The largest tag body FLV can describe (24-bit size).
pub const MAX_TAG_DATA_LEN: usize = 0x00FF_FFFF;

/// The type of an FLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagKind {
    /// Audio (tag type 8).
    Audio,
    /// Video (tag type 9).
    Video,
    /// Script data such as `onMetaData` (tag type 18).
    Script,
}

impl TagKind {
    /// The tag type byte (8, 9 or 18).
    pub const fn type_id(self) -> u8 {
        match self {
            TagKind::Audio => 8,
            TagKind::Video => 9,
            TagKind::Script => 18,
        }
    }

    /// The kind for a tag type byte, if it is one FLV defines.
    pub const fn from_type_id(id: u8) -> Option<Self> {
        match id {
            8 => Some(TagKind::Audio),
            9 => Some(TagKind::Video),
            18 => Some(TagKind::Script),
            _ => None,
        }
    }
}

impl std::fmt::Display for TagKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TagKind::Audio => "audio",
            TagKind::Video => "video",
            TagKind::Script => "script",
        })
    }
}

/// The 9-byte FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    /// Version byte (1).
    pub version: u8,
    /// The audio flag.
    pub has_audio: bool,
    /// The video flag.
    pub has_video: bool,
    /// Offset of the first PreviousTagSize field (9 in every file seen in practice).
    pub data_offset: u32,
}

impl FlvHeader {
    /// A version 1 header with the given flags.
    pub const fn new(has_audio: bool, has_video: bool) -> Self {
        FlvHeader {
            version: 1,
            has_audio,
            has_video,
            data_offset: FLV_HEADER_LEN as u32,
        }
    }

    /// Appends the 9 header bytes (not the PreviousTagSize0 that follows).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"FLV");
        out.put_u8(self.version);
        out.put_u8(u8::from(self.has_audio) << 2 | u8::from(self.has_video));
        out.put_u32(self.data_offset);
    }

    /// Parses the header, or `None` when the signature is not `FLV`.
    pub fn parse(bytes: &[u8; FLV_HEADER_LEN]) -> Option<Self> {
        if &bytes[..3] != b"FLV" {
            return None;
        }
        Some(FlvHeader {
            version: bytes[3],
            has_audio: bytes[4] & 0x04 != 0,
            has_video: bytes[4] & 0x01 != 0,
            data_offset: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
        })
    }
}

/// The 11-byte header in front of every tag body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeader {
    /// Raw tag type byte with the filter and reserved bits cleared.
    pub tag_type: u8,
    /// Whether the filter (encryption) bit is set.
    pub filtered: bool,
    /// Size of the body (24 bits).
    pub data_size: u32,
    /// Timestamp in milliseconds, extension byte included.
    pub timestamp: u32,
    /// Stream id (24 bits, always 0 in files).
    pub stream_id: u32,
}

impl TagHeader {
    /// Parses the 11 header bytes.
    pub fn parse(b: &[u8; TAG_HEADER_LEN]) -> Self {
        TagHeader {
            tag_type: b[0] & 0x1F,
            filtered: b[0] & 0x20 != 0,
            data_size: u32::from_be_bytes([0, b[1], b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[7], b[4], b[5], b[6]]),
            stream_id: u32::from_be_bytes([0, b[8], b[9], b[10]]),
        }
    }

    /// The 11 header bytes. `data_size` and `stream_id` keep their low 24 bits.
    pub fn to_bytes(&self) -> [u8; TAG_HEADER_LEN] {
        let ts = self.timestamp.to_be_bytes();
        let size = self.data_size.to_be_bytes();
        let sid = self.stream_id.to_be_bytes();
        [
            self.tag_type & 0x1F | u8::from(self.filtered) << 5,
            size[1],
            size[2],
            size[3],
            ts[1],
            ts[2],
            ts[3],
            ts[0],
            sid[1],
            sid[2],
            sid[3],
        ]
    }

    /// Appends the 11 header bytes; see [`to_bytes`](TagHeader::to_bytes).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.to_bytes());
    }
}

/// One FLV tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Audio, video or script data.
    pub kind: TagKind,
    /// Timestamp in milliseconds (24 bits plus the extension byte).
    pub timestamp: u32,
    /// Stream id (0 in files).
    pub stream_id: u32,
    /// The tag body (for audio and video this starts with the audio/video tag header).
    pub data: Bytes,
    /// Byte offset of the tag header in the stream (0 for tags not read from a stream).
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_header_timestamp_extension() {
        let h = TagHeader {
            tag_type: 9,
            filtered: false,
            data_size: 0x010203,
            timestamp: 0x8765_4321,
            stream_id: 0,
        };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(&out[..], &[9, 1, 2, 3, 0x65, 0x43, 0x21, 0x87, 0, 0, 0]);
        let parsed = TagHeader::parse(out[..].try_into().unwrap());
        assert_eq!(parsed, h);
    }

    #[test]
    fn file_header() {
        let mut out = BytesMut::new();
        FlvHeader::new(true, true).encode(&mut out);
        assert_eq!(&out[..], b"FLV\x01\x05\x00\x00\x00\x09");
        let h = FlvHeader::parse(out[..].try_into().unwrap()).unwrap();
        assert_eq!(h, FlvHeader::new(true, true));
        assert_eq!(FlvHeader::parse(b"FLX\x01\x05\x00\x00\x00\x09"), None);
    }

    #[test]
    fn kinds() {
        for k in [TagKind::Audio, TagKind::Video, TagKind::Script] {
            assert_eq!(TagKind::from_type_id(k.type_id()), Some(k));
        }
        assert_eq!(TagKind::from_type_id(7), None);
    }
}
