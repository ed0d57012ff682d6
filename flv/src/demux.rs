//! The FLV demuxer: a push/pull state machine over bytes.

use bytes::{Buf, BytesMut};

use crate::hexdump::HexDump;
use crate::tag::{
    FlvHeader, Tag, TagHeader, TagKind, FLV_HEADER_LEN, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
};

/// A demuxing error. Every variant gives the byte offset in the stream where the
/// problem is, the tag concerned when there is one, and a short hex dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DemuxError {
    /// The stream does not start with `FLV`.
    #[error("FLV: bad signature at offset {offset} (bytes: {bytes})")]
    BadSignature {
        /// Stream offset (0).
        offset: u64,
        /// The header bytes.
        bytes: HexDump,
    },
    /// The header's data offset is smaller than the header.
    #[error("FLV: header data offset {data_offset} at offset {offset} is below 9")]
    BadDataOffset {
        /// Stream offset of the header.
        offset: u64,
        /// The declared data offset.
        data_offset: u32,
    },
    /// A tag type other than audio (8), video (9) or script (18).
    #[error("FLV: unknown tag type {tag_type} in tag at offset {offset} (bytes: {bytes})")]
    UnknownTagType {
        /// Stream offset of the tag header.
        offset: u64,
        /// The tag type.
        tag_type: u8,
        /// The tag header bytes.
        bytes: HexDump,
    },
    /// A tag with the filter (encryption) bit set.
    #[error("FLV: encrypted (filtered) {kind} tag at offset {offset} is not supported")]
    Encrypted {
        /// Stream offset of the tag header.
        offset: u64,
        /// The tag kind.
        kind: TagKind,
    },
    /// A PreviousTagSize field that does not match the tag before it.
    #[error(
        "FLV: PreviousTagSize at offset {offset} is {found}, expected {expected} \
         (after {} tag at offset {}; bytes: {bytes})",
        kind.map_or("no".to_owned(), |k| k.to_string()),
        tag_offset.map_or("-".to_owned(), |o| o.to_string())
    )]
    PreviousTagSizeMismatch {
        /// Stream offset of the PreviousTagSize field.
        offset: u64,
        /// The value found.
        found: u32,
        /// The value expected.
        expected: u32,
        /// The tag before the field, if any.
        kind: Option<TagKind>,
        /// Stream offset of that tag.
        tag_offset: Option<u64>,
        /// The field's bytes.
        bytes: HexDump,
    },
    /// The input ended inside the header or a tag (reported by [`Demuxer::finish`]).
    #[error("FLV: stream ends at offset {offset} inside {}", match kind { Some(k) => format!("a {k} tag starting at offset {}", tag_offset.unwrap_or(0)), None => "the header".to_owned() })]
    Truncated {
        /// Stream offset where the input ended.
        offset: u64,
        /// The tag that was cut, if the cut was inside a tag.
        kind: Option<TagKind>,
        /// Stream offset of that tag.
        tag_offset: Option<u64>,
    },
}

impl DemuxError {
    /// Byte offset in the stream where the error is.
    pub fn offset(&self) -> u64 {
        match self {
            DemuxError::BadSignature { offset, .. }
            | DemuxError::BadDataOffset { offset, .. }
            | DemuxError::UnknownTagType { offset, .. }
            | DemuxError::Encrypted { offset, .. }
            | DemuxError::PreviousTagSizeMismatch { offset, .. }
            | DemuxError::Truncated { offset, .. } => *offset,
        }
    }

    /// The kind of the tag concerned, when the error is inside a known tag.
    pub fn tag_kind(&self) -> Option<TagKind> {
        match self {
            DemuxError::Encrypted { kind, .. } => Some(*kind),
            DemuxError::PreviousTagSizeMismatch { kind, .. }
            | DemuxError::Truncated { kind, .. } => *kind,
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    SkipHeaderExtra(u32),
    PreviousTagSize {
        expected: u32,
        tag: Option<(TagKind, u64)>,
    },
    TagHeader,
    TagData {
        header: TagHeader,
        kind: TagKind,
        offset: u64,
    },
}

/// Parses an FLV byte stream. Feed bytes with [`push`](Demuxer::push) in pieces
/// of any size and drain tags with [`pull`](Demuxer::pull) until it returns
/// `Ok(None)`. The file header is parsed automatically.
///
/// Errors are sticky: after the first error every `pull` returns it again.
/// Tag bodies are handed out without copying (`split_to(..).freeze()` of the
/// internal buffer).
#[derive(Debug)]
pub struct Demuxer {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    offset: u64,
    state: State,
    header: Option<FlvHeader>,
    error: Option<DemuxError>,
    check_previous_tag_size: bool,
}

impl Default for Demuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl Demuxer {
    /// A demuxer expecting a stream that starts with the FLV header.
    pub fn new() -> Self {
        Demuxer {
            buf: BytesMut::new(),
            offset: 0,
            state: State::Header,
            header: None,
            error: None,
            check_previous_tag_size: true,
        }
    }

    /// Whether a PreviousTagSize field that disagrees with its tag is an error
    /// (the default) or is ignored, as some players do for broken files.
    pub fn set_check_previous_tag_size(&mut self, check: bool) {
        self.check_previous_tag_size = check;
    }

    /// The file header, once it has been parsed.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Appends input bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes pushed but not yet consumed.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset of the next byte to parse.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The next complete tag, `Ok(None)` when more input is needed, or the
    /// (sticky) error.
    pub fn pull(&mut self) -> Result<Option<Tag>, DemuxError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        match self.step() {
            Ok(tag) => Ok(tag),
            Err(err) => {
                self.error = Some(err.clone());
                self.buf = BytesMut::new();
                Err(err)
            }
        }
    }

    /// Call at the end of input: fails if the input stopped inside the header or
    /// inside a tag. A missing final PreviousTagSize is accepted.
    pub fn finish(&self) -> Result<(), DemuxError> {
        if let Some(err) = &self.error {
            return Err(err.clone());
        }
        let end = self.offset.saturating_add(self.buf.len() as u64);
        match self.state {
            State::Header | State::SkipHeaderExtra(_) => Err(DemuxError::Truncated {
                offset: end,
                kind: None,
                tag_offset: None,
            }),
            State::TagHeader if self.buf.is_empty() => Ok(()),
            State::TagHeader => Err(DemuxError::Truncated {
                offset: end,
                kind: TagKind::from_type_id(self.buf[0] & 0x1F),
                tag_offset: Some(self.offset),
            }),
            State::TagData { kind, offset, .. } => Err(DemuxError::Truncated {
                offset: end,
                kind: Some(kind),
                tag_offset: Some(offset),
            }),
            State::PreviousTagSize { .. } => Ok(()),
        }
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset = self.offset.saturating_add(n as u64);
    }

    fn step(&mut self) -> Result<Option<Tag>, DemuxError> {
        loop {
            match self.state {
                State::Header => {
                    let Some(bytes) = self.buf.get(..FLV_HEADER_LEN) else {
                        // Fail early on a wrong signature.
                        let n = self.buf.len().min(3);
                        if self.buf[..n] != b"FLV"[..n] {
                            return Err(self.bad_signature());
                        }
                        return Ok(None);
                    };
                    let mut arr = [0u8; FLV_HEADER_LEN];
                    arr.copy_from_slice(bytes);
                    let header = FlvHeader::parse(&arr).ok_or_else(|| self.bad_signature())?;
                    if (header.data_offset as usize) < FLV_HEADER_LEN {
                        return Err(DemuxError::BadDataOffset {
                            offset: self.offset,
                            data_offset: header.data_offset,
                        });
                    }
                    self.header = Some(header);
                    self.advance(FLV_HEADER_LEN);
                    self.state = State::SkipHeaderExtra(header.data_offset - FLV_HEADER_LEN as u32);
                }
                State::SkipHeaderExtra(left) => {
                    let n = self.buf.len().min(left as usize);
                    self.advance(n);
                    let left = left - n as u32;
                    if left > 0 {
                        self.state = State::SkipHeaderExtra(left);
                        return Ok(None);
                    }
                    self.state = State::PreviousTagSize {
                        expected: 0,
                        tag: None,
                    };
                }
                State::PreviousTagSize { expected, tag } => {
                    let Some(bytes) = self.buf.get(..PREVIOUS_TAG_SIZE_LEN) else {
                        return Ok(None);
                    };
                    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                    if self.check_previous_tag_size && found != expected {
                        return Err(DemuxError::PreviousTagSizeMismatch {
                            offset: self.offset,
                            found,
                            expected,
                            kind: tag.map(|t| t.0),
                            tag_offset: tag.map(|t| t.1),
                            bytes: HexDump::new(bytes),
                        });
                    }
                    self.advance(PREVIOUS_TAG_SIZE_LEN);
                    self.state = State::TagHeader;
                }
                State::TagHeader => {
                    let Some(bytes) = self.buf.get(..TAG_HEADER_LEN) else {
                        return Ok(None);
                    };
                    let mut arr = [0u8; TAG_HEADER_LEN];
                    arr.copy_from_slice(bytes);
                    let header = TagHeader::parse(&arr);
                    let Some(kind) = TagKind::from_type_id(header.tag_type) else {
                        return Err(DemuxError::UnknownTagType {
                            offset: self.offset,
                            tag_type: header.tag_type,
                            bytes: HexDump::new(&arr),
                        });
                    };
                    if header.filtered {
                        return Err(DemuxError::Encrypted {
                            offset: self.offset,
                            kind,
                        });
                    }
                    let offset = self.offset;
                    self.advance(TAG_HEADER_LEN);
                    self.state = State::TagData {
                        header,
                        kind,
                        offset,
                    };
                }
                State::TagData {
                    header,
                    kind,
                    offset,
                } => {
                    let len = header.data_size as usize;
                    if self.buf.len() < len {
                        return Ok(None);
                    }
                    let data = self.buf.split_to(len).freeze();
                    self.offset = self.offset.saturating_add(len as u64);
                    self.state = State::PreviousTagSize {
                        // data_size < 2^24, no overflow.
                        expected: header.data_size + TAG_HEADER_LEN as u32,
                        tag: Some((kind, offset)),
                    };
                    return Ok(Some(Tag {
                        kind,
                        timestamp: header.timestamp,
                        stream_id: header.stream_id,
                        data,
                        offset,
                    }));
                }
            }
        }
    }

    fn bad_signature(&self) -> DemuxError {
        DemuxError::BadSignature {
            offset: self.offset,
            bytes: HexDump::new(&self.buf[..self.buf.len().min(FLV_HEADER_LEN)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Muxer;

    type Sample = (Vec<u8>, Vec<(TagKind, u32, Vec<u8>)>);

    fn sample() -> Sample {
        let tags = vec![
            (TagKind::Script, 0, vec![2, 0, 1, b'x']),
            (TagKind::Video, 0, vec![0x17, 0, 0, 0, 0, 1, 2, 3]),
            (TagKind::Audio, 0, vec![0xAF, 0, 0x11, 0x90]),
            (TagKind::Audio, 21, vec![0xAF, 1, 9, 9, 9]),
            (TagKind::Video, 0x0123_4567, vec![]),
        ];
        let mut m = Muxer::new();
        let mut out = BytesMut::new();
        m.write_header(&mut out, true, true);
        for (k, ts, d) in &tags {
            m.write_tag(&mut out, *k, *ts, d);
        }
        (out.to_vec(), tags)
    }

    fn drain(d: &mut Demuxer) -> Vec<Tag> {
        let mut v = Vec::new();
        while let Some(t) = d.pull().unwrap() {
            v.push(t);
        }
        v
    }

    #[test]
    fn roundtrip_one_push() {
        let (bytes, tags) = sample();
        let mut d = Demuxer::new();
        d.push(&bytes);
        let got = drain(&mut d);
        assert_eq!(d.header(), Some(FlvHeader::new(true, true)));
        assert_eq!(got.len(), tags.len());
        for (g, (k, ts, data)) in got.iter().zip(&tags) {
            assert_eq!((g.kind, g.timestamp, &g.data[..]), (*k, *ts, &data[..]));
        }
        assert_eq!(got[0].offset, 13);
        assert_eq!(got[1].offset, 13 + 11 + 4 + 4);
        d.finish().unwrap();
    }

    #[test]
    fn every_split_point_gives_same_tags() {
        let (bytes, _) = sample();
        let mut whole = Demuxer::new();
        whole.push(&bytes);
        let expected = drain(&mut whole);
        for split in 0..=bytes.len() {
            let mut d = Demuxer::new();
            d.push(&bytes[..split]);
            let mut got = drain(&mut d);
            d.push(&bytes[split..]);
            got.extend(drain(&mut d));
            assert_eq!(got, expected, "split at {split}");
        }
        // Byte by byte.
        let mut d = Demuxer::new();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            got.extend(drain(&mut d));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn bad_signature_fails_early_and_sticks() {
        let mut d = Demuxer::new();
        d.push(b"FX");
        let err = d.pull().unwrap_err();
        assert!(matches!(err, DemuxError::BadSignature { offset: 0, .. }));
        assert_eq!(d.pull().unwrap_err(), err);
        assert!(err.to_string().contains("46 58"), "{err}");
    }

    #[test]
    fn unknown_tag_type_says_offset() {
        let (mut bytes, _) = sample();
        bytes[13] = 7;
        let mut d = Demuxer::new();
        d.push(&bytes);
        let err = d.pull().unwrap_err();
        assert!(
            matches!(
                err,
                DemuxError::UnknownTagType {
                    offset: 13,
                    tag_type: 7,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn previous_tag_size_mismatch() {
        let (mut bytes, _) = sample();
        // PreviousTagSize after the first tag (script, 4 bytes of body) is at 13 + 15.
        bytes[13 + 15 + 3] = 0;
        let mut d = Demuxer::new();
        d.push(&bytes);
        assert!(d.pull().unwrap().is_some());
        let err = d.pull().unwrap_err();
        assert_eq!(
            err,
            DemuxError::PreviousTagSizeMismatch {
                offset: 28,
                found: 0,
                expected: 15,
                kind: Some(TagKind::Script),
                tag_offset: Some(13),
                bytes: HexDump::new(&[0, 0, 0, 0]),
            }
        );
        assert!(err.to_string().contains("script tag at offset 13"), "{err}");
        let mut d = Demuxer::new();
        d.set_check_previous_tag_size(false);
        d.push(&bytes);
        assert_eq!(drain(&mut d).len(), 5);
    }

    #[test]
    fn encrypted_tag() {
        let (mut bytes, _) = sample();
        bytes[13] |= 0x20;
        let mut d = Demuxer::new();
        d.push(&bytes);
        assert!(matches!(
            d.pull().unwrap_err(),
            DemuxError::Encrypted {
                offset: 13,
                kind: TagKind::Script
            }
        ));
    }

    #[test]
    fn header_data_offset_extra_is_skipped() {
        let (bytes, _) = sample();
        let mut v = bytes[..9].to_vec();
        v[8] = 12;
        v.extend_from_slice(&[0xEE; 3]);
        v.extend_from_slice(&bytes[9..]);
        let mut d = Demuxer::new();
        d.push(&v);
        let tags = drain(&mut d);
        assert_eq!(tags.len(), 5);
        assert_eq!(tags[0].offset, 16);

        let mut bad = bytes.clone();
        bad[8] = 3;
        let mut d = Demuxer::new();
        d.push(&bad);
        assert!(matches!(
            d.pull().unwrap_err(),
            DemuxError::BadDataOffset { data_offset: 3, .. }
        ));
    }

    #[test]
    fn finish_reports_truncation() {
        let (bytes, _) = sample();
        let mut d = Demuxer::new();
        d.push(&bytes[..5]);
        assert!(d.pull().unwrap().is_none());
        assert!(matches!(
            d.finish().unwrap_err(),
            DemuxError::Truncated { kind: None, .. }
        ));
        let mut d = Demuxer::new();
        d.push(&bytes[..13 + 11 + 4 + 4 + 5]);
        drain(&mut d);
        let err = d.finish().unwrap_err();
        assert_eq!(
            err,
            DemuxError::Truncated {
                offset: 37,
                kind: Some(TagKind::Video),
                tag_offset: Some(32)
            }
        );
        // Missing the final PreviousTagSize is fine.
        let mut d = Demuxer::new();
        d.push(&bytes[..bytes.len() - 4]);
        assert_eq!(drain(&mut d).len(), 5);
        d.finish().unwrap();
    }

    #[test]
    fn tag_data_is_zero_copy() {
        let (bytes, _) = sample();
        let mut d = Demuxer::new();
        d.push(&bytes);
        let t1 = d.pull().unwrap().unwrap();
        let t2 = d.pull().unwrap().unwrap();
        // Both bodies point into the same buffer.
        let gap = t2.data.as_ptr() as usize - t1.data.as_ptr() as usize;
        assert_eq!(gap, t1.data.len() + 4 + 11);
    }
}
