//! The FLV muxer: writes a file header and tags into a caller's buffer.

use bytes::{BufMut, BytesMut};

use crate::avc::{self, AvcError, AvcPacketType, FrameType};
use crate::tag::{FlvHeader, TagHeader, TagKind, MAX_TAG_DATA_LEN, TAG_HEADER_LEN};

/// A muxing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// A tag body longer than FLV's 24-bit size field allows.
    #[error("FLV: {kind} tag body of {len} bytes exceeds the 16 MiB - 1 limit")]
    TagTooLarge {
        /// The tag's kind.
        kind: TagKind,
        /// The body length.
        len: usize,
    },
    /// The Annex-B input could not be converted.
    #[error(transparent)]
    Avc(#[from] AvcError),
}

/// Writes FLV into a caller's [`BytesMut`]. It never allocates beyond growing `out`;
/// with enough spare capacity in `out` it does not allocate at all.
///
/// Each tag is written as tag header, body and PreviousTagSize, so the output of
/// [`write_header`](Muxer::write_header) followed by any number of tags is a valid
/// FLV stream.
#[derive(Debug, Default, Clone)]
pub struct Muxer {
    tags_written: u64,
    tags_dropped: u64,
}

impl Muxer {
    /// A new muxer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the FLV file header and PreviousTagSize0 (13 bytes).
    pub fn write_header(&mut self, out: &mut BytesMut, has_audio: bool, has_video: bool) {
        FlvHeader::new(has_audio, has_video).encode(out);
        out.put_u32(0);
    }

    /// Appends one tag. A body over [`MAX_TAG_DATA_LEN`] cannot be written in
    /// FLV: it is dropped (nothing is written) and counted in
    /// [`tags_dropped`](Muxer::tags_dropped); use
    /// [`try_write_tag`](Muxer::try_write_tag) to get an error instead.
    pub fn write_tag(&mut self, out: &mut BytesMut, kind: TagKind, timestamp: u32, data: &[u8]) {
        // The error is counted in `tags_dropped`.
        let _ = self.try_write_tag(out, kind, timestamp, data);
    }

    /// Appends one tag, or fails (writing nothing) if the body is too large.
    pub fn try_write_tag(
        &mut self,
        out: &mut BytesMut,
        kind: TagKind,
        timestamp: u32,
        data: &[u8],
    ) -> Result<(), MuxError> {
        self.try_write_tag_parts(out, kind, timestamp, &[data])
    }

    /// Appends one tag whose body is the concatenation of `parts` (for example a
    /// 5-byte video tag header and an AVCC payload), copying each part once.
    pub fn try_write_tag_parts(
        &mut self,
        out: &mut BytesMut,
        kind: TagKind,
        timestamp: u32,
        parts: &[&[u8]],
    ) -> Result<(), MuxError> {
        let len = parts
            .iter()
            .try_fold(0usize, |acc, p| acc.checked_add(p.len()))
            .filter(|&len| len <= MAX_TAG_DATA_LEN)
            .ok_or_else(|| {
                self.tags_dropped += 1;
                MuxError::TagTooLarge {
                    kind,
                    len: parts.iter().fold(0usize, |a, p| a.saturating_add(p.len())),
                }
            })?;
        // len <= 0xFFFFFF, so these fit.
        let data_size = len as u32;
        out.reserve(TAG_HEADER_LEN + len + 4);
        TagHeader {
            tag_type: kind.type_id(),
            filtered: false,
            data_size,
            timestamp,
            stream_id: 0,
        }
        .encode(out);
        for part in parts {
            out.put_slice(part);
        }
        out.put_u32(data_size + TAG_HEADER_LEN as u32);
        self.tags_written += 1;
        Ok(())
    }

    /// Appends one AVC NALU video tag straight from an Annex-B access unit:
    /// tag header, 5-byte AVC video header, the NAL units in AVCC form and the
    /// PreviousTagSize. The payload is copied once, from `annexb` into `out`.
    /// On error nothing is written.
    pub fn try_write_avc_annexb_tag(
        &mut self,
        out: &mut BytesMut,
        timestamp: u32,
        frame: FrameType,
        composition_time: i32,
        annexb: &[u8],
    ) -> Result<(), MuxError> {
        let start = out.len();
        out.put_slice(&[0u8; TAG_HEADER_LEN]);
        avc::write_video_tag_header(out, frame, AvcPacketType::Nalu, composition_time);
        if let Err(err) = avc::annexb_to_avcc(annexb, out) {
            out.truncate(start);
            self.tags_dropped += 1;
            return Err(err.into());
        }
        let len = out.len() - start - TAG_HEADER_LEN;
        if len > MAX_TAG_DATA_LEN {
            out.truncate(start);
            self.tags_dropped += 1;
            return Err(MuxError::TagTooLarge {
                kind: TagKind::Video,
                len,
            });
        }
        let header = TagHeader {
            tag_type: TagKind::Video.type_id(),
            filtered: false,
            data_size: len as u32,
            timestamp,
            stream_id: 0,
        };
        out[start..start + TAG_HEADER_LEN].copy_from_slice(&header.to_bytes());
        out.put_u32((len + TAG_HEADER_LEN) as u32);
        self.tags_written += 1;
        Ok(())
    }

    /// How many tags were written.
    pub fn tags_written(&self) -> u64 {
        self.tags_written
    }

    /// How many tags were refused because their body was too large.
    pub fn tags_dropped(&self) -> u64 {
        self.tags_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_tag_bytes() {
        let mut m = Muxer::new();
        let mut out = BytesMut::new();
        m.write_header(&mut out, true, false);
        m.write_tag(&mut out, TagKind::Audio, 0x0100_0002, &[0xAF, 0x01, 0x21]);
        assert_eq!(
            &out[..],
            &[
                b'F', b'L', b'V', 1, 4, 0, 0, 0, 9, 0, 0, 0, 0, // header + PTS0
                8, 0, 0, 3, 0, 0, 2, 1, 0, 0, 0, // tag header
                0xAF, 0x01, 0x21, // body
                0, 0, 0, 14, // previous tag size
            ]
        );
        assert_eq!(m.tags_written(), 1);
    }

    #[test]
    fn no_allocation_with_capacity() {
        let mut m = Muxer::new();
        let mut out = BytesMut::with_capacity(1024);
        let ptr = out.as_ptr();
        m.write_tag(&mut out, TagKind::Video, 0, &[0u8; 500]);
        m.write_tag(&mut out, TagKind::Video, 0, &[0u8; 400]);
        assert_eq!(out.as_ptr(), ptr);
    }

    #[test]
    fn oversized_tag_is_refused() {
        let mut m = Muxer::new();
        let mut out = BytesMut::new();
        let big = vec![0u8; MAX_TAG_DATA_LEN + 1];
        assert!(matches!(
            m.try_write_tag(&mut out, TagKind::Video, 0, &big),
            Err(MuxError::TagTooLarge { .. })
        ));
        m.write_tag(&mut out, TagKind::Video, 0, &big);
        assert!(out.is_empty());
        assert_eq!(m.tags_dropped(), 2);
        m.write_tag(&mut out, TagKind::Video, 0, &big[..MAX_TAG_DATA_LEN]);
        assert_eq!(out.len(), MAX_TAG_DATA_LEN + 15);
    }

    #[test]
    fn annexb_tag_equals_two_step_conversion() {
        let annexb = [
            0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xCE, 0, 0, 1, 0x65, 0x88,
        ];
        let mut body = BytesMut::new();
        avc::write_nalu_tag_from_annexb(&mut body, FrameType::Key, 40, &annexb).unwrap();
        let mut m = Muxer::new();
        let mut a = BytesMut::from(&b"prefix"[..]);
        let mut b = a.clone();
        m.write_tag(&mut a, TagKind::Video, 1000, &body);
        m.try_write_avc_annexb_tag(&mut b, 1000, FrameType::Key, 40, &annexb)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(m.tags_written(), 2);
    }

    #[test]
    fn parts_are_concatenated() {
        let mut m = Muxer::new();
        let mut a = BytesMut::new();
        let mut b = BytesMut::new();
        m.write_tag(&mut a, TagKind::Video, 7, &[1, 2, 3, 4]);
        m.try_write_tag_parts(&mut b, TagKind::Video, 7, &[&[1], &[], &[2, 3, 4]])
            .unwrap();
        assert_eq!(a, b);
    }
}
