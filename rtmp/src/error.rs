//! Error types. Every parse error says where it happened: the byte offset in the
//! stream, the chunk stream id and message type where known, and a capped hex dump.

use std::fmt;

/// At most this many bytes are kept in a [`HexDump`].
pub const HEX_DUMP_CAP: usize = 32;

/// A capped hex dump of the bytes an error is about.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexDump {
    bytes: Vec<u8>,
    total: usize,
}

impl HexDump {
    /// Keeps the first [`HEX_DUMP_CAP`] bytes of `bytes` and remembers the full length.
    pub fn new(bytes: &[u8]) -> Self {
        HexDump {
            bytes: bytes[..bytes.len().min(HEX_DUMP_CAP)].to_vec(),
            total: bytes.len(),
        }
    }

    /// The kept bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Display for HexDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes.is_empty() {
            return f.write_str("(none)");
        }
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        if self.total > self.bytes.len() {
            write!(f, " .. (+{} bytes)", self.total - self.bytes.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for HexDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexDump({self})")
    }
}

/// An error in the RTMP handshake.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// C0 or S0 announced a version other than 3 (plain RTMP).
    #[error("handshake: byte offset 0: unsupported RTMP version {version} (expected 3; RTMPE and others are not supported)")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
}

/// An error while decoding the chunk stream.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A fmt 1, 2 or 3 chunk header on a chunk stream that never had a fmt 0 header.
    #[error("chunk stream {csid}, byte offset {offset}: fmt {fmt} chunk header without an earlier fmt 0 header on this chunk stream; bytes: {dump}")]
    NoPreviousHeader {
        /// Byte offset of the chunk header.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// The chunk header format (1, 2 or 3).
        fmt: u8,
        /// The bytes at `offset`.
        dump: HexDump,
    },
    /// A message longer than the configured maximum.
    #[error("chunk stream {csid}, byte offset {offset}: message type {type_id} declares {length} bytes, more than the maximum of {max}; bytes: {dump}")]
    MessageTooLarge {
        /// Byte offset of the chunk header.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Message type id.
        type_id: u8,
        /// Declared message length.
        length: u32,
        /// Configured maximum message size.
        max: u32,
        /// The bytes at `offset`.
        dump: HexDump,
    },
    /// A new message header arrived on a chunk stream whose previous message was incomplete.
    #[error("chunk stream {csid}, byte offset {offset}: fmt {fmt} header starts a new message while message type {type_id} has {received} of {length} bytes; bytes: {dump}")]
    InterruptedMessage {
        /// Byte offset of the chunk header.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// The chunk header format.
        fmt: u8,
        /// Type of the incomplete message.
        type_id: u8,
        /// Bytes of it received so far.
        received: u32,
        /// Its declared length.
        length: u32,
        /// The bytes at `offset`.
        dump: HexDump,
    },
    /// More distinct chunk streams than the decoder tracks.
    #[error("chunk stream {csid}, byte offset {offset}: more than {max} chunk streams in use; bytes: {dump}")]
    TooManyChunkStreams {
        /// Byte offset of the chunk header.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Configured maximum.
        max: usize,
        /// The bytes at `offset`.
        dump: HexDump,
    },
    /// A protocol control message (types 1-6) with a malformed body.
    #[error("chunk stream {csid}, byte offset {offset}: protocol control message type {type_id} is malformed: {reason}; payload: {dump}")]
    MalformedControl {
        /// Byte offset of the message's first chunk header.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Message type id.
        type_id: u8,
        /// What is wrong.
        reason: &'static str,
        /// The message payload.
        dump: HexDump,
    },
}

/// An error at the session level (commands, responses, timers).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A command or data message whose AMF0 body does not decode or lacks required fields.
    #[error("chunk stream {csid}, byte offset {offset}: message type {type_id} on message stream {stream_id}: {reason}; payload: {dump}")]
    MalformedCommand {
        /// Byte offset of the message's first chunk header.
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// Message type id.
        type_id: u8,
        /// Message stream id.
        stream_id: u32,
        /// What is wrong.
        reason: String,
        /// The message payload.
        dump: HexDump,
    },
    /// The peer did not answer in time.
    #[error("timed out after {after_ms} ms waiting for {waiting_for}")]
    Timeout {
        /// What the session was waiting for.
        waiting_for: &'static str,
        /// How long it waited.
        after_ms: u64,
    },
}

/// Any protocol error of an RTMP session. Errors are sticky: after the first one,
/// the session reports it again on every call and produces no more output.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Handshake failure.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// Chunk stream failure.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// Session failure.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// A call that the session's current state does not allow. Not sticky: the session
/// is unchanged.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// Media or metadata was sent before the server acknowledged the publish.
    #[error("not publishing yet (wait for Event::Publishing)")]
    NotPublishing,
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// The session failed earlier with this protocol error.
    #[error("the session failed earlier: {0}")]
    Failed(Error),
    /// The stream id is unknown to this server session.
    #[error("unknown message stream {0}")]
    UnknownStream(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_is_capped_and_says_how_much_was_left_out() {
        let bytes: Vec<u8> = (0..40).collect();
        let dump = HexDump::new(&bytes);
        assert_eq!(dump.bytes().len(), HEX_DUMP_CAP);
        let text = dump.to_string();
        assert!(text.starts_with("00 01 02"), "{text}");
        assert!(text.ends_with("1f .. (+8 bytes)"), "{text}");
        assert_eq!(HexDump::new(&[]).to_string(), "(none)");
    }
}
