//! The chunk stream (RTMP specification, section 5.3): an encoder with header
//! compression and a decoder with per-chunk-stream message assembly.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ChunkError, HexDump};

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest legal chunk size (31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Default maximum size of one incoming message.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 8 << 20;
/// Default maximum number of chunk streams a decoder tracks at once.
pub const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;
/// Timestamps (and deltas) at or above this use the extended timestamp field.
const EXTENDED: u32 = 0x00FF_FFFF;
/// Longest chunk header: 3 basic + 11 message + 4 extended timestamp.
const MAX_HEADER: usize = 18;
/// The most a decoder reserves on a chunk stream before the bytes arrive.
const PREALLOCATE_MAX: u32 = 64 * 1024;

/// Message type ids.
pub mod msg_type {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Command message, AMF3.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0.
    pub const DATA_AMF0: u8 = 18;
    /// Command message, AMF0.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message.
    pub const AGGREGATE: u8 = 22;
}

/// The header fields of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Timestamp in milliseconds.
    pub timestamp: u32,
    /// Message type id (see [`msg_type`]).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

/// One complete message as it came off the chunk stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream id it arrived on.
    pub csid: u32,
    /// Timestamp, type and message stream id.
    pub header: MessageHeader,
    /// The payload.
    pub payload: Bytes,
    /// Byte offset of the message's first chunk header in the stream.
    pub offset: u64,
}

/// Header compression state of one outgoing chunk stream.
#[derive(Debug, Clone, Copy)]
struct EncoderStream {
    csid: u32,
    timestamp: u32,
    delta: u32,
    /// Whether `delta` was written explicitly (fmt 1 or 2) and can be repeated by fmt 3.
    delta_explicit: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Encodes messages into chunks, compressing headers per chunk stream id.
///
/// Chunk headers and payload go into the caller's `BytesMut`; the payload is copied
/// exactly once and nothing is allocated once `out` has room.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: Vec<EncoderStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

fn write_basic_header(fmt: u8, csid: u32, out: &mut BytesMut) {
    match csid {
        2..=63 => out.put_u8(fmt << 6 | csid as u8),
        64..=319 => {
            out.put_u8(fmt << 6);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            out.put_u8(fmt << 6 | 1);
            let v = csid - 64;
            out.put_u8(v as u8);
            out.put_u8((v >> 8) as u8);
        }
    }
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_u8((v >> 16) as u8);
    out.put_u8((v >> 8) as u8);
    out.put_u8(v as u8);
}

impl ChunkEncoder {
    /// An encoder with the default chunk size (128).
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    /// The outgoing chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Changes the outgoing chunk size. Send a Set Chunk Size message with the same value
    /// first (see [`ChunkEncoder::write_set_chunk_size`]).
    ///
    /// # Panics
    /// If `size` is 0 or above [`MAX_CHUNK_SIZE`].
    pub fn set_chunk_size(&mut self, size: u32) {
        assert!(
            (1..=MAX_CHUNK_SIZE).contains(&size),
            "invalid chunk size {size}"
        );
        self.chunk_size = size;
    }

    /// Writes a Set Chunk Size message (with the current size) and then switches to `size`.
    pub fn write_set_chunk_size(&mut self, size: u32, out: &mut BytesMut) {
        let header = MessageHeader {
            timestamp: 0,
            type_id: msg_type::SET_CHUNK_SIZE,
            stream_id: 0,
        };
        self.write(2, header, &size.to_be_bytes(), out);
        self.set_chunk_size(size);
    }

    /// How many bytes [`ChunkEncoder::write`] appends at most for a payload of `len`.
    pub fn max_encoded_len(&self, len: usize) -> usize {
        let chunks = len.div_ceil(self.chunk_size as usize).max(1);
        len + MAX_HEADER + (chunks - 1) * 7
    }

    /// Appends one message, split into chunks, to `out`.
    ///
    /// # Panics
    /// If `csid` is not in 2..=65599 or the payload is longer than 2^24-1 bytes.
    pub fn write(&mut self, csid: u32, header: MessageHeader, payload: &[u8], out: &mut BytesMut) {
        assert!(
            (2..=65599).contains(&csid),
            "invalid chunk stream id {csid}"
        );
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= 0xFF_FFFF)
            .expect("RTMP message payload longer than 16 MiB");
        out.reserve(self.max_encoded_len(payload.len()));

        let idx = match self.streams.iter().position(|s| s.csid == csid) {
            Some(i) => Some(i),
            None => {
                self.streams.push(EncoderStream {
                    csid,
                    timestamp: 0,
                    delta: 0,
                    delta_explicit: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                });
                None
            }
        };
        let idx = idx.unwrap_or(self.streams.len() - 1);
        let prev = self.streams[idx];
        let fresh = prev.type_id == 0;

        // Choose the most compact header that the decoder can reconstruct unambiguously.
        let (fmt, ts_field) =
            if fresh || prev.stream_id != header.stream_id || header.timestamp < prev.timestamp {
                (0u8, header.timestamp)
            } else {
                let delta = header.timestamp - prev.timestamp;
                if prev.length == length && prev.type_id == header.type_id {
                    if prev.delta_explicit && delta == prev.delta && delta < EXTENDED {
                        (3, delta)
                    } else {
                        (2, delta)
                    }
                } else {
                    (1, delta)
                }
            };
        let extended = ts_field >= EXTENDED;

        write_basic_header(fmt, csid, out);
        if fmt < 3 {
            put_u24(out, if extended { EXTENDED } else { ts_field });
        }
        if fmt < 2 {
            put_u24(out, length);
            out.put_u8(header.type_id);
        }
        if fmt == 0 {
            out.put_u32_le(header.stream_id);
        }
        if extended {
            out.put_u32(ts_field);
        }
        let chunk = self.chunk_size as usize;
        let first = payload.len().min(chunk);
        out.put_slice(&payload[..first]);
        let mut rest = &payload[first..];
        while !rest.is_empty() {
            write_basic_header(3, csid, out);
            if extended {
                out.put_u32(ts_field);
            }
            let n = rest.len().min(chunk);
            out.put_slice(&rest[..n]);
            rest = &rest[n..];
        }

        self.streams[idx] = EncoderStream {
            csid,
            timestamp: header.timestamp,
            delta: if fmt == 0 { 0 } else { ts_field },
            delta_explicit: fmt != 0,
            length,
            type_id: header.type_id,
            stream_id: header.stream_id,
        };
    }
}

/// Configuration of a [`ChunkDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest message accepted; longer declared lengths are an error.
    pub max_message_size: u32,
    /// Most chunk streams tracked at once.
    pub max_chunk_streams: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_chunk_streams: DEFAULT_MAX_CHUNK_STREAMS,
        }
    }
}

/// Assembly state of one incoming chunk stream.
#[derive(Debug)]
struct DecoderStream {
    csid: u32,
    header: MessageHeader,
    delta: u32,
    length: u32,
    /// The extended timestamp value of the current message's header, if it had one.
    extended: Option<u32>,
    received: u32,
    offset: u64,
    buf: BytesMut,
    /// The block before `buf`'s, taken back once the consumer has dropped every message
    /// carved out of it (double buffering: the messages of one `decode` call are still held
    /// while the next block is needed).
    spare: BytesMut,
}

#[derive(Debug, Clone, Copy)]
enum DecodeState {
    Header,
    Payload { idx: usize, remaining: u32 },
}

/// Bytes taken into the header buffer that belong after the header.
#[derive(Debug, Default)]
struct Lookahead {
    buf: [u8; MAX_HEADER],
    len: usize,
}

impl Lookahead {
    fn new(bytes: &[u8]) -> Self {
        let mut buf = [0; MAX_HEADER];
        buf[..bytes.len()].copy_from_slice(bytes);
        Lookahead {
            buf,
            len: bytes.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What parsing a chunk header found.
struct ParsedHeader {
    fmt: u8,
    csid: u32,
    len: usize,
    /// 24-bit timestamp field (fmt 0-2) or the extended value if present.
    ts: Option<u32>,
    length: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
    /// Extended timestamp value read (fmt 0-2 when the field is 0xFFFFFF; fmt 3 when it applies).
    extended: Option<u32>,
}

/// Decodes the chunk stream into [`RawMessage`]s. Input may be split anywhere.
///
/// It applies Set Chunk Size and Abort itself (they change how the following bytes are
/// read) and still hands them on. Errors are sticky.
#[derive(Debug)]
pub struct ChunkDecoder {
    config: DecoderConfig,
    chunk_size: u32,
    streams: Vec<DecoderStream>,
    state: DecodeState,
    header_buf: [u8; MAX_HEADER],
    header_len: usize,
    offset: u64,
    error: Option<ChunkError>,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(DecoderConfig::default())
    }
}

impl ChunkDecoder {
    /// A decoder at byte offset 0 with the default chunk size (128).
    pub fn new(config: DecoderConfig) -> Self {
        Self::with_offset(config, 0)
    }

    /// A decoder whose first byte is at `offset` in the connection (e.g. after the
    /// handshake), so error offsets match a capture.
    pub fn with_offset(config: DecoderConfig, offset: u64) -> Self {
        ChunkDecoder {
            config,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            state: DecodeState::Header,
            header_buf: [0; MAX_HEADER],
            header_len: 0,
            offset,
            error: None,
        }
    }

    /// The incoming chunk size currently in effect.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes consumed so far, counting from the starting offset.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Decodes `input`, appending every completed message to `out`.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<RawMessage>) -> Result<(), ChunkError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let result = self.decode_bytes(input, out);
        if let Err(e) = &result {
            self.error = Some(e.clone());
        }
        result
    }

    fn decode_bytes(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<RawMessage>,
    ) -> Result<(), ChunkError> {
        while !input.is_empty() {
            match self.state {
                DecodeState::Header => {
                    let lookahead = self.step_header(&mut input, out)?;
                    // Bytes an earlier read left in the header buffer that turned out
                    // to follow the header: decode them before the rest of `input`.
                    // They start in the payload, so this nests at most once.
                    if !lookahead.is_empty() {
                        self.decode_bytes(lookahead.bytes(), out)?;
                    }
                }
                DecodeState::Payload { idx, remaining } => {
                    self.step_payload(idx, remaining, &mut input, out)?
                }
            }
        }
        Ok(())
    }

    fn step_header(
        &mut self,
        input: &mut &[u8],
        out: &mut Vec<RawMessage>,
    ) -> Result<Lookahead, ChunkError> {
        let had = self.header_len;
        let take = (MAX_HEADER - had).min(input.len());
        self.header_buf[had..had + take].copy_from_slice(&input[..take]);
        let avail = had + take;
        // Bytes buffered by earlier calls were counted already.
        let header_offset = self.offset - had as u64;
        let parsed = match self.parse_header(&self.header_buf[..avail])? {
            None => {
                self.header_len = avail;
                self.offset += take as u64;
                *input = &input[take..];
                return Ok(Lookahead::default());
            }
            Some(p) => p,
        };
        // A fmt 3 header may be shorter than what was buffered while looking ahead
        // for a repeated extended timestamp; the excess is handed back.
        let lookahead = Lookahead::new(&self.header_buf[parsed.len.min(had)..had]);
        *input = &input[parsed.len.saturating_sub(had)..];
        self.offset = header_offset + parsed.len as u64;
        self.header_len = 0;
        let dump = || HexDump::new(&self.header_buf[..parsed.len]);

        let idx = match self.streams.iter().position(|s| s.csid == parsed.csid) {
            Some(i) => i,
            None => {
                if parsed.fmt != 0 {
                    return Err(ChunkError::NoPreviousHeader {
                        offset: header_offset,
                        csid: parsed.csid,
                        fmt: parsed.fmt,
                        dump: dump(),
                    });
                }
                if self.streams.len() >= self.config.max_chunk_streams {
                    return Err(ChunkError::TooManyChunkStreams {
                        offset: header_offset,
                        csid: parsed.csid,
                        max: self.config.max_chunk_streams,
                        dump: dump(),
                    });
                }
                self.streams.push(DecoderStream {
                    csid: parsed.csid,
                    header: MessageHeader {
                        timestamp: 0,
                        type_id: 0,
                        stream_id: 0,
                    },
                    delta: 0,
                    length: 0,
                    extended: None,
                    received: 0,
                    offset: 0,
                    buf: BytesMut::new(),
                    spare: BytesMut::new(),
                });
                self.streams.len() - 1
            }
        };
        let max = self.config.max_message_size;
        let chunk_size = self.chunk_size;
        let st = &mut self.streams[idx];
        let in_progress = st.received > 0 && st.received < st.length;
        if parsed.fmt == 3 && in_progress {
            // Continuation chunk: nothing changes.
            let remaining = (st.length - st.received).min(chunk_size);
            self.state = DecodeState::Payload { idx, remaining };
            return Ok(lookahead);
        }
        if in_progress {
            return Err(ChunkError::InterruptedMessage {
                offset: header_offset,
                csid: parsed.csid,
                fmt: parsed.fmt,
                type_id: st.header.type_id,
                received: st.received,
                length: st.length,
                dump: dump(),
            });
        }
        match parsed.fmt {
            0 => {
                let ts = parsed.ts.unwrap_or(0);
                st.header.timestamp = ts;
                // Per the specification a fmt 3 header after fmt 0 repeats the fmt 0
                // timestamp as its delta.
                st.delta = ts;
            }
            _ => {
                let delta = parsed.ts.unwrap_or(st.delta);
                st.header.timestamp = st.header.timestamp.wrapping_add(delta);
                st.delta = delta;
            }
        }
        if let Some(l) = parsed.length {
            st.length = l;
        }
        if let Some(t) = parsed.type_id {
            st.header.type_id = t;
        }
        if let Some(s) = parsed.stream_id {
            st.header.stream_id = s;
        }
        if parsed.fmt < 3 {
            st.extended = parsed.extended;
        }
        if st.length > max {
            return Err(ChunkError::MessageTooLarge {
                offset: header_offset,
                csid: parsed.csid,
                type_id: st.header.type_id,
                length: st.length,
                max,
                dump: dump(),
            });
        }
        st.received = 0;
        st.offset = header_offset;
        st.buf.clear();
        // The declared length is trusted for the allocation only up to
        // PREALLOCATE_MAX; beyond, the buffer grows with the data. Messages are carved
        // out of blocks of that size (one allocation for many small messages), and a
        // block whose `Bytes` the consumer has all dropped is reused: this one, else the
        // spare one, else a new block (the current one becomes the spare).
        let need = st.length.min(PREALLOCATE_MAX) as usize;
        if st.buf.capacity() < need && !st.buf.try_reclaim(need) {
            if st.spare.try_reclaim(need) {
                std::mem::swap(&mut st.buf, &mut st.spare);
            } else {
                let full = std::mem::replace(
                    &mut st.buf,
                    BytesMut::with_capacity(PREALLOCATE_MAX as usize),
                );
                st.spare = full;
            }
        }
        if st.length == 0 {
            self.finish_message(idx, out)?;
            return Ok(lookahead);
        }
        let remaining = st.length.min(chunk_size);
        self.state = DecodeState::Payload { idx, remaining };
        Ok(lookahead)
    }

    fn step_payload(
        &mut self,
        idx: usize,
        remaining: u32,
        input: &mut &[u8],
        out: &mut Vec<RawMessage>,
    ) -> Result<(), ChunkError> {
        let n = (remaining as usize).min(input.len());
        let st = &mut self.streams[idx];
        st.buf.extend_from_slice(&input[..n]);
        st.received += n as u32;
        *input = &input[n..];
        self.offset += n as u64;
        let remaining = remaining - n as u32;
        if remaining > 0 {
            self.state = DecodeState::Payload { idx, remaining };
            return Ok(());
        }
        self.state = DecodeState::Header;
        if st.received == st.length {
            self.finish_message(idx, out)?;
        }
        Ok(())
    }

    fn finish_message(&mut self, idx: usize, out: &mut Vec<RawMessage>) -> Result<(), ChunkError> {
        self.state = DecodeState::Header;
        let st = &mut self.streams[idx];
        let payload = st.buf.split().freeze();
        let msg = RawMessage {
            csid: st.csid,
            header: st.header,
            payload,
            offset: st.offset,
        };
        // Mark complete so a following fmt 3 starts a new message.
        st.received = 0;
        st.length = msg.payload.len() as u32;
        let malformed = |reason| ChunkError::MalformedControl {
            offset: msg.offset,
            csid: msg.csid,
            type_id: msg.header.type_id,
            reason,
            dump: HexDump::new(&msg.payload),
        };
        match msg.header.type_id {
            msg_type::SET_CHUNK_SIZE => {
                let size = read_u32(&msg.payload).ok_or_else(|| malformed("expected 4 bytes"))?;
                if size == 0 || size > MAX_CHUNK_SIZE {
                    return Err(malformed("chunk size must be 1..=2147483647"));
                }
                self.chunk_size = size;
            }
            msg_type::ABORT => {
                let csid = read_u32(&msg.payload).ok_or_else(|| malformed("expected 4 bytes"))?;
                if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
                    s.received = 0;
                    s.buf.clear();
                }
            }
            _ => {}
        }
        out.push(msg);
        Ok(())
    }

    fn parse_header(&self, b: &[u8]) -> Result<Option<ParsedHeader>, ChunkError> {
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3F {
            0 => match b.get(1) {
                Some(&v) => (64 + v as u32, 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + lo as u32 + 256 * hi as u32, 3),
                _ => return Ok(None),
            },
            v => (v as u32, 1),
        };
        let mh_len = [11, 7, 3, 0][fmt as usize];
        if b.len() < pos + mh_len {
            return Ok(None);
        }
        let mh = &b[pos..pos + mh_len];
        pos += mh_len;
        let u24 = |s: &[u8]| (s[0] as u32) << 16 | (s[1] as u32) << 8 | s[2] as u32;
        let mut ts = (fmt < 3).then(|| u24(&mh[0..3]));
        let length = (fmt < 2).then(|| u24(&mh[3..6]));
        let type_id = (fmt < 2).then(|| mh[6]);
        let stream_id = (fmt == 0).then(|| u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]));
        let mut extended = None;
        if ts == Some(EXTENDED) {
            let Some(v) = b.get(pos..pos + 4) else {
                return Ok(None);
            };
            let v = read_u32(v).unwrap_or(0);
            ts = Some(v);
            extended = Some(v);
            pos += 4;
        } else if fmt == 3 {
            // After a header with an extended timestamp, fmt 3 chunks repeat it. On a
            // continuation chunk some peers leave it out; accept both by comparing.
            if let Some(st) = self.streams.iter().find(|s| s.csid == csid) {
                if let Some(prev) = st.extended {
                    let Some(v) = b.get(pos..pos + 4) else {
                        return Ok(None);
                    };
                    let v = read_u32(v).unwrap_or(0);
                    let continuation = st.received > 0 && st.received < st.length;
                    if !continuation {
                        ts = Some(v);
                        extended = Some(v);
                        pos += 4;
                    } else if v == prev {
                        pos += 4;
                    }
                }
            }
        }
        Ok(Some(ParsedHeader {
            fmt,
            csid,
            len: pos,
            ts,
            length,
            type_id,
            stream_id,
            extended,
        }))
    }
}

fn read_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(timestamp: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            timestamp,
            type_id,
            stream_id,
        }
    }

    fn decode_all(bytes: &[u8], split: usize) -> Vec<RawMessage> {
        let mut dec = ChunkDecoder::default();
        let mut out = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            dec.decode(piece, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn spec_example_audio_headers_compress_to_fmt_3() {
        // RTMP specification 5.3.2.1: audio messages with the same length and delta.
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let payload = [0u8; 32];
        enc.write(3, header(1000, 8, 12345), &payload, &mut out);
        assert_eq!(out[0], 0x03);
        assert_eq!(
            &out[1..12],
            &[0x00, 0x03, 0xe8, 0, 0, 32, 8, 0x39, 0x30, 0, 0]
        );
        out.clear();
        enc.write(3, header(1020, 8, 12345), &payload, &mut out);
        assert_eq!(&out[..4], &[0x83, 0, 0, 20], "fmt 2 with delta 20");
        out.clear();
        enc.write(3, header(1040, 8, 12345), &payload, &mut out);
        assert_eq!(out[0], 0xc3, "fmt 3");
        assert_eq!(out.len(), 33);
        out.clear();
        enc.write(3, header(1060, 9, 12345), &[1; 40], &mut out);
        assert_eq!(&out[..8], &[0x43, 0, 0, 20, 0, 0, 40, 9], "fmt 1");
    }

    #[test]
    fn long_message_is_split_into_fmt_3_continuations() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let payload: Vec<u8> = (0..307).map(|i| i as u8).collect();
        enc.write(4, header(0, 9, 1), &payload, &mut out);
        // 12 + 128 + 1 + 128 + 1 + 51
        assert_eq!(out.len(), 12 + 307 + 2);
        assert_eq!(out[12 + 128], 0xc4);
        assert_eq!(out[12 + 128 + 1 + 128], 0xc4);
        let msgs = decode_all(&out, 1000);
        assert_eq!(msgs.len(), 1);
        assert_eq!(&msgs[0].payload[..], &payload[..]);
        assert_eq!(msgs[0].offset, 0);
    }

    #[test]
    fn basic_header_forms() {
        for csid in [2u32, 63, 64, 319, 320, 65599] {
            let mut enc = ChunkEncoder::new();
            let mut out = BytesMut::new();
            enc.write(csid, header(5, 20, 0), b"abc", &mut out);
            let msgs = decode_all(&out, 1);
            assert_eq!(msgs[0].csid, csid);
            assert_eq!(&msgs[0].payload[..], b"abc");
        }
    }

    #[test]
    fn extended_timestamps_including_fmt_3_continuations() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let big = vec![7u8; 300];
        enc.write(6, header(0x0100_0000, 9, 1), &big, &mut out);
        // fmt 0 header with 0xFFFFFF, then 4-byte extended timestamp.
        assert_eq!(&out[1..4], &[0xff, 0xff, 0xff]);
        assert_eq!(&out[12..16], &[0x01, 0, 0, 0]);
        // The fmt 3 continuation carries the extended timestamp too.
        assert_eq!(out[16 + 128], 0xc6);
        assert_eq!(&out[17 + 128..21 + 128], &[0x01, 0, 0, 0]);
        enc.write(6, header(0x0100_0000 + 40, 9, 1), &big, &mut out);
        // A delta that is itself extended.
        enc.write(6, header(0x0300_0000, 9, 1), &[1, 2, 3], &mut out);
        enc.write(6, header(0x0300_0010, 9, 1), &[4, 5, 6], &mut out);
        for split in [1, 2, 3, 17, 1000] {
            let msgs = decode_all(&out, split);
            let ts: Vec<u32> = msgs.iter().map(|m| m.header.timestamp).collect();
            assert_eq!(ts, vec![0x0100_0000, 0x0100_0028, 0x0300_0000, 0x0300_0010]);
            assert_eq!(&msgs[1].payload[..], &big[..]);
        }
    }

    #[test]
    fn continuation_without_repeated_extended_timestamp_is_accepted() {
        // Some encoders leave the extended timestamp out of fmt 3 continuations.
        let mut bytes = vec![
            0x06, 0xff, 0xff, 0xff, 0, 0, 200, 9, 1, 0, 0, 0, 0x01, 0, 0, 0,
        ];
        bytes.extend_from_slice(&[0xAA; 128]);
        bytes.push(0xc6);
        bytes.extend_from_slice(&[0xBB; 72]);
        let msgs = decode_all(&bytes, 5);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].payload.len(), 200);
        assert_eq!(msgs[0].header.timestamp, 0x0100_0000);
        assert_eq!(msgs[0].payload[199], 0xBB);
    }

    #[test]
    fn continuation_without_extended_timestamp_split_inside_the_lookahead() {
        // The decoder looks 4 bytes past a fmt 3 continuation header to see whether
        // the extended timestamp is repeated. When those bytes were payload and the
        // read ended inside them, it subtracted past zero (a panic) instead of giving
        // the bytes back to the payload.
        let mut bytes = vec![
            0x06, 0xff, 0xff, 0xff, 0, 0, 200, 9, 1, 0, 0, 0, 0x01, 0, 0, 0,
        ];
        bytes.extend_from_slice(&[0xAA; 128]);
        bytes.push(0xc6);
        bytes.extend((0..72).map(|i| 0xB0 + i as u8));
        let whole = decode_all(&bytes, usize::MAX);
        assert_eq!(whole.len(), 1);
        assert_eq!(&whole[0].payload[128..], &bytes[145..]);
        for a in 0..=bytes.len() {
            for b in a..=(a + 6).min(bytes.len()) {
                let mut dec = ChunkDecoder::default();
                let mut got = Vec::new();
                for piece in [&bytes[..a], &bytes[a..b], &bytes[b..]] {
                    dec.decode(piece, &mut got).unwrap();
                }
                assert_eq!(got, whole, "split at {a} and {b}");
                assert_eq!(dec.offset(), bytes.len() as u64);
            }
        }
    }

    #[test]
    fn timestamps_going_backwards_use_fmt_0() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.write(4, header(100, 8, 1), b"a", &mut out);
        let n = out.len();
        enc.write(4, header(50, 8, 1), b"b", &mut out);
        assert_eq!(out[n] >> 6, 0);
        let msgs = decode_all(&out, 1);
        assert_eq!(msgs[1].header.timestamp, 50);
    }

    #[test]
    fn fmt_3_after_fmt_0_follows_the_specification() {
        // fmt 0 at ts 40, then a fmt 3 new message: delta = 40 -> ts 80.
        let mut bytes = vec![0x04, 0, 0, 40, 0, 0, 1, 8, 1, 0, 0, 0, b'a'];
        bytes.extend_from_slice(&[0xc4, b'b']);
        let msgs = decode_all(&bytes, 1);
        assert_eq!(msgs[1].header.timestamp, 80);
        assert_eq!(&msgs[1].payload[..], b"b");
    }

    #[test]
    fn chunk_size_changes_mid_stream() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let payload: Vec<u8> = (0..10_000).map(|i| (i * 7) as u8).collect();
        enc.write(6, header(0, 9, 1), &payload, &mut out);
        enc.write_set_chunk_size(4096, &mut out);
        enc.write(6, header(33, 9, 1), &payload, &mut out);
        enc.write_set_chunk_size(1, &mut out);
        enc.write(6, header(66, 9, 1), &payload[..300], &mut out);
        enc.write_set_chunk_size(65536, &mut out);
        enc.write(6, header(99, 9, 1), &payload, &mut out);
        for split in [1, 4, 127, 128, 129, 4096, 100_000] {
            let msgs = decode_all(&out, split);
            let media: Vec<_> = msgs.iter().filter(|m| m.header.type_id == 9).collect();
            assert_eq!(media.len(), 4);
            assert_eq!(&media[0].payload[..], &payload[..]);
            assert_eq!(&media[1].payload[..], &payload[..]);
            assert_eq!(&media[2].payload[..], &payload[..300]);
            assert_eq!(&media[3].payload[..], &payload[..]);
            assert_eq!(media[3].header.timestamp, 99);
        }
    }

    #[test]
    fn interleaved_chunk_streams_assemble_separately() {
        let mut enc = ChunkEncoder::new();
        let video: Vec<u8> = (0..500).map(|i| i as u8).collect();
        let audio: Vec<u8> = (0..300).map(|i| (i as u8) ^ 0x55).collect();
        let (mut v, mut a) = (BytesMut::new(), BytesMut::new());
        enc.write(6, header(0, 9, 1), &video, &mut v);
        enc.write(4, header(0, 8, 1), &audio, &mut a);
        // Interleave chunk by chunk: v chunk0 (12+128), a chunk0 (12+128), v (1+128) ...
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&v[..140]);
        bytes.extend_from_slice(&a[..140]);
        bytes.extend_from_slice(&v[140..269]);
        bytes.extend_from_slice(&a[140..]);
        bytes.extend_from_slice(&v[269..]);
        let msgs = decode_all(&bytes, 3);
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0].payload[..], &audio[..]);
        assert_eq!(&msgs[1].payload[..], &video[..]);
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.write(3, header(0, 20, 0), &[1; 200], &mut out);
        enc.write(4, header(10, 8, 1), &[2; 20], &mut out);
        enc.write(4, header(31, 8, 1), &[3; 20], &mut out);
        enc.write(4, header(52, 8, 1), &[4; 20], &mut out);
        enc.write(6, header(0x00FF_FFFF, 9, 1), &[5; 260], &mut out);
        enc.write_set_chunk_size(50, &mut out);
        enc.write(6, header(0x0100_0021, 9, 1), &[6; 120], &mut out);
        enc.write(6, header(0x0100_0021, 9, 1), &[], &mut out);
        let whole = decode_all(&out, usize::MAX);
        assert_eq!(whole.len(), 8);
        for a in 0..=out.len() {
            let mut dec = ChunkDecoder::default();
            let mut got = Vec::new();
            dec.decode(&out[..a], &mut got).unwrap();
            dec.decode(&out[a..], &mut got).unwrap();
            assert_eq!(got, whole, "split at {a}");
        }
    }

    #[test]
    fn abort_discards_a_partial_message() {
        let mut bytes = vec![0x06, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0];
        bytes.extend_from_slice(&[9; 128]);
        // Abort (type 2) for csid 6 on csid 2.
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 6]);
        // A new fmt 0 message on csid 6 is then fine.
        bytes.extend_from_slice(&[0x06, 0, 0, 5, 0, 0, 2, 9, 1, 0, 0, 0, 1, 2]);
        let msgs = decode_all(&bytes, 7);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].header.type_id, msg_type::ABORT);
        assert_eq!(&msgs[1].payload[..], &[1, 2]);
    }

    #[test]
    fn errors_say_where_and_are_sticky() {
        let mut dec = ChunkDecoder::with_offset(DecoderConfig::default(), 3073);
        let mut out = Vec::new();
        let err = dec
            .decode(&[0x45, 0, 0, 1, 0, 0, 4, 8], &mut out)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("chunk stream 5"), "{text}");
        assert!(text.contains("byte offset 3073"), "{text}");
        assert!(text.contains("45 00 00 01"), "{text}");
        assert_eq!(dec.decode(&[0x03], &mut out), Err(err));
    }

    #[test]
    fn declared_length_over_the_maximum_is_refused_before_any_allocation() {
        let mut dec = ChunkDecoder::new(DecoderConfig {
            max_message_size: 1000,
            ..DecoderConfig::default()
        });
        let mut out = Vec::new();
        let err = dec
            .decode(&[0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0], &mut out)
            .unwrap_err();
        assert!(matches!(
            err,
            ChunkError::MessageTooLarge {
                length: 0xFF_FFFF,
                csid: 4,
                type_id: 9,
                ..
            }
        ));
        assert!(err.to_string().contains("message type 9"));
    }

    #[test]
    fn invalid_chunk_size_is_an_error() {
        let mut out = Vec::new();
        let mut dec = ChunkDecoder::default();
        let err = dec
            .decode(
                &[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                &mut out,
            )
            .unwrap_err();
        assert!(
            matches!(err, ChunkError::MalformedControl { type_id: 1, .. }),
            "{err}"
        );
        let mut dec = ChunkDecoder::default();
        let err = dec
            .decode(&[0x02, 0, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 1, 0, 0], &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("expected 4 bytes"), "{err}");
    }

    #[test]
    fn new_header_during_a_message_is_an_error() {
        let mut bytes = vec![0x06, 0, 0, 0, 0, 1, 0, 9, 1, 0, 0, 0];
        bytes.extend_from_slice(&[9; 128]);
        bytes.extend_from_slice(&[0x46, 0, 0, 0, 0, 0, 1, 9, 0]);
        let mut dec = ChunkDecoder::default();
        let err = dec.decode(&bytes, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(
                err,
                ChunkError::InterruptedMessage {
                    received: 128,
                    length: 256,
                    offset: 140,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn too_many_chunk_streams() {
        let mut dec = ChunkDecoder::new(DecoderConfig {
            max_chunk_streams: 2,
            ..DecoderConfig::default()
        });
        let mut out = Vec::new();
        for csid in 3..5u8 {
            dec.decode(&[csid, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0], &mut out)
                .unwrap();
        }
        let err = dec
            .decode(&[5, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0], &mut out)
            .unwrap_err();
        assert!(matches!(
            err,
            ChunkError::TooManyChunkStreams { csid: 5, .. }
        ));
    }
}
