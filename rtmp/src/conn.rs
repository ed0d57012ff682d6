//! The part both session sides share: chunk encoder/decoder, the output buffer,
//! protocol control messages (acknowledgements, window size, peer bandwidth, ping).

use bytes::{BufMut, BytesMut};
use flv::amf0::{self, Value};

use crate::chunk::{
    msg_type, ChunkDecoder, ChunkEncoder, DecoderConfig, MessageHeader, RawMessage,
};
use crate::error::{ChunkError, HexDump};

/// Chunk stream ids used for outgoing messages.
pub(crate) mod csid {
    /// Protocol control messages.
    pub const CONTROL: u32 = 2;
    /// NetConnection commands.
    pub const COMMAND: u32 = 3;
    /// Audio.
    pub const AUDIO: u32 = 4;
    /// NetStream commands and data messages.
    pub const STREAM: u32 = 5;
    /// Video.
    pub const VIDEO: u32 = 6;
}

/// User Control event types.
pub(crate) mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub enc: ChunkEncoder,
    pub dec: ChunkDecoder,
    pub out: BytesMut,
    pub inbox: Vec<RawMessage>,
    scratch: BytesMut,
    /// Bytes received on the connection, handshake included.
    received: u64,
    /// `received` when the last Acknowledgement was sent.
    acked: u64,
    /// The window the peer asked us to acknowledge.
    ack_window: Option<u32>,
    /// The window we last announced to the peer.
    announced_window: Option<u32>,
    /// The last sequence number the peer acknowledged.
    pub peer_acked: Option<u32>,
}

impl Conn {
    pub fn new(config: DecoderConfig) -> Self {
        Conn {
            enc: ChunkEncoder::new(),
            dec: ChunkDecoder::new(config),
            out: BytesMut::with_capacity(64 * 1024),
            inbox: Vec::new(),
            scratch: BytesMut::new(),
            received: 0,
            acked: 0,
            ack_window: None,
            announced_window: None,
            peer_acked: None,
        }
    }

    /// Starts the chunk decoder after `handshake_len` handshake bytes.
    pub fn start_chunks(&mut self, config: DecoderConfig, handshake_len: u64) {
        self.dec = ChunkDecoder::with_offset(config, handshake_len);
    }

    pub fn count_received(&mut self, n: usize) {
        self.received += n as u64;
    }

    /// Decodes chunk bytes into `inbox`, then sends an Acknowledgement if one is due.
    pub fn decode(&mut self, input: &[u8]) -> Result<(), ChunkError> {
        self.count_received(input.len());
        self.dec.decode(input, &mut self.inbox)?;
        Ok(())
    }

    pub fn maybe_ack(&mut self) {
        if let Some(window) = self.ack_window {
            if window > 0 && self.received - self.acked >= window as u64 {
                self.acked = self.received;
                // The sequence number wraps at 2^32 by design.
                self.write_control(
                    msg_type::ACKNOWLEDGEMENT,
                    &(self.received as u32).to_be_bytes(),
                );
            }
        }
    }

    pub fn write_control(&mut self, type_id: u8, payload: &[u8]) {
        let header = MessageHeader {
            timestamp: 0,
            type_id,
            stream_id: 0,
        };
        self.enc
            .write(csid::CONTROL, header, payload, &mut self.out);
    }

    pub fn write_user_control(&mut self, event: u16, value: u32) {
        let mut p = [0u8; 6];
        p[..2].copy_from_slice(&event.to_be_bytes());
        p[2..].copy_from_slice(&value.to_be_bytes());
        self.write_control(msg_type::USER_CONTROL, &p);
    }

    pub fn write_window_ack_size(&mut self, size: u32) {
        self.announced_window = Some(size);
        self.write_control(msg_type::WINDOW_ACK_SIZE, &size.to_be_bytes());
    }

    pub fn write_set_peer_bandwidth(&mut self, size: u32, limit_type: u8) {
        let mut p = [0u8; 5];
        p[..4].copy_from_slice(&size.to_be_bytes());
        p[4] = limit_type;
        self.write_control(msg_type::SET_PEER_BANDWIDTH, &p);
    }

    pub fn write_set_chunk_size(&mut self, size: u32) {
        self.enc.write_set_chunk_size(size, &mut self.out);
    }

    /// Writes an AMF0 command (or data) message made of `values`.
    pub fn write_amf(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        values: &[Value],
    ) {
        self.scratch.clear();
        for v in values {
            amf0::encode(v, &mut self.scratch);
        }
        let header = MessageHeader {
            timestamp,
            type_id,
            stream_id,
        };
        self.enc.write(csid, header, &self.scratch, &mut self.out);
    }

    /// Writes a data message: the AMF0 `prefix` values followed by already-encoded AMF0 bytes.
    pub fn write_data_with_prefix(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        prefix: &str,
        body: &[u8],
    ) {
        self.scratch.clear();
        amf0::encode_string(prefix, &mut self.scratch);
        self.scratch.put_slice(body);
        let header = MessageHeader {
            timestamp,
            type_id: msg_type::DATA_AMF0,
            stream_id,
        };
        self.enc
            .write(csid::STREAM, header, &self.scratch, &mut self.out);
    }

    /// Handles protocol control messages (types 1-6); returns every other message.
    pub fn handle_control(&mut self, msg: RawMessage) -> Result<Option<RawMessage>, ChunkError> {
        let malformed = |reason| ChunkError::MalformedControl {
            offset: msg.offset,
            csid: msg.csid,
            type_id: msg.header.type_id,
            reason,
            dump: HexDump::new(&msg.payload),
        };
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(
                msg.payload.get(i..i + 4)?.try_into().ok()?,
            ))
        };
        match msg.header.type_id {
            // Applied by the decoder already.
            msg_type::SET_CHUNK_SIZE | msg_type::ABORT => Ok(None),
            msg_type::ACKNOWLEDGEMENT => {
                self.peer_acked = Some(u32_at(0).ok_or_else(|| malformed("expected 4 bytes"))?);
                Ok(None)
            }
            msg_type::WINDOW_ACK_SIZE => {
                let size = u32_at(0).ok_or_else(|| malformed("expected 4 bytes"))?;
                self.ack_window = Some(size);
                Ok(None)
            }
            msg_type::SET_PEER_BANDWIDTH => {
                let size = u32_at(0).ok_or_else(|| malformed("expected 5 bytes"))?;
                // Answer with our Window Acknowledgement Size when it differs.
                if self.announced_window != Some(size) {
                    self.write_window_ack_size(size);
                }
                Ok(None)
            }
            msg_type::USER_CONTROL => {
                let event = msg
                    .payload
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .ok_or_else(|| malformed("shorter than 2 bytes"))?;
                if event == user_control::PING_REQUEST {
                    let t =
                        u32_at(2).ok_or_else(|| malformed("ping request without a timestamp"))?;
                    self.write_user_control(user_control::PING_RESPONSE, t);
                }
                Ok(None)
            }
            _ => Ok(Some(msg)),
        }
    }
}
