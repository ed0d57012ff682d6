//! Opus packets to AAC-LC 48 kHz stereo tag bodies.
//!
//! The audio timeline is a sample count: position 0 is the output origin, and every sample
//! position from there on is filled exactly once, by decoded Opus, by Opus packet-loss
//! concealment (or in-band FEC) for short gaps, or by silence for long ones and when the
//! publisher sends no audio. AAC frame `k` therefore always starts at sample `k * 1024`,
//! whatever the network did, and its timestamp is taken from that count.

use std::time::Instant;

use bytes::Bytes;
use flv::aac::{self, AudioSpecificConfig};

use super::{MediaError, TagArena};

/// Output sample rate (and Opus RTP clock).
pub(crate) const RATE: i64 = 48_000;
/// Output channels.
const CHANNELS: usize = 2;
/// Samples per channel in one AAC-LC frame.
pub(crate) const AAC_FRAME: i64 = 1024;
/// fdk-aac's delay for AAC-LC 48 kHz (see `aac_encoder_delay_is_2048_samples`): output frame
/// `k` decodes to input samples from `k * 1024 - 2048` on.
pub(crate) const ENCODER_DELAY: i64 = 2048;
/// The largest Opus packet: 120 ms.
const MAX_OPUS_SAMPLES: usize = 5760;
/// Gaps up to this long are concealed by the Opus decoder; longer ones become silence.
const MAX_CONCEALED_GAP: i64 = RATE / 5;
/// A jump of the RTP clock further than this from the timeline is a discontinuity (a new
/// source, a bogus timestamp): the timeline continues where it is instead of filling it.
const MAX_GAP: i64 = 10 * RATE;
/// PCM buffered before encoding: at most one frame plus one silence chunk or packet.
const SILENCE_CHUNK: i64 = 4 * AAC_FRAME;

/// What became of an Opus packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PacketFate {
    /// Decoded into the timeline.
    Used,
    /// Not decodable, or entirely older than the timeline.
    Dropped,
}

/// The Opus decoder, the PCM timeline and the AAC encoder of one stream.
pub(crate) struct AudioTrack {
    decoder: opus::Decoder,
    encoder: fdk_aac::enc::Encoder,
    /// Interleaved stereo PCM not yet encoded, from `pcm_read` on.
    pcm: Vec<i16>,
    pcm_read: usize,
    scratch: Vec<i16>,
    aac: Vec<u8>,
    /// Samples (per channel) placed on the timeline so far.
    filled: i64,
    /// AAC frames produced so far.
    frames: u64,
    /// (extended RTP time, timeline position, clock epoch) tying RTP to the timeline.
    anchor: Option<(i64, i64, u64)>,
    /// Timeline position after the newest packet and when it arrived.
    last_packet: Option<(i64, Instant)>,
    sequence_header: Bytes,
    sequence_header_sent: bool,
    /// Samples of the publisher's audio that were concealed (lost, late or stalled).
    pub(crate) concealed_samples: u64,
}

impl std::fmt::Debug for AudioTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioTrack")
            .field("filled", &self.filled)
            .field("frames", &self.frames)
            .field("concealed_samples", &self.concealed_samples)
            .finish_non_exhaustive()
    }
}

/// The AAC-LC encoder the pipeline uses.
pub(crate) fn aac_encoder(bitrate: u32) -> Result<fdk_aac::enc::Encoder, MediaError> {
    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
    Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(bitrate),
        sample_rate: RATE as u32,
        transport: Transport::Raw,
        channels: ChannelMode::Stereo,
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .map_err(|e| MediaError(format!("AAC encoder ({bitrate} bit/s): {e}")))
}

impl AudioTrack {
    pub(crate) fn new(aac_bitrate: u32) -> Result<Self, MediaError> {
        let decoder = opus::Decoder::new(RATE as u32, opus::Channels::Stereo)
            .map_err(|e| MediaError(format!("Opus decoder: {e}")))?;
        let mut header = bytes::BytesMut::with_capacity(8);
        aac::write_sequence_header_tag(&mut header, &AudioSpecificConfig::aac_lc(48_000, 2));
        Ok(AudioTrack {
            decoder,
            encoder: aac_encoder(aac_bitrate)?,
            pcm: Vec::with_capacity(
                (AAC_FRAME + SILENCE_CHUNK + MAX_OPUS_SAMPLES as i64) as usize * CHANNELS,
            ),
            pcm_read: 0,
            scratch: vec![0; MAX_OPUS_SAMPLES * CHANNELS],
            aac: vec![0; 8192],
            filled: 0,
            frames: 0,
            anchor: None,
            last_packet: None,
            sequence_header: header.freeze(),
            sequence_header_sent: false,
            concealed_samples: 0,
        })
    }

    /// Concealed audio in 20 ms packets' worth, rounded.
    pub(crate) fn concealed_packets(&self) -> u64 {
        (self.concealed_samples + 480) / 960
    }

    /// Samples placed on the timeline.
    pub(crate) fn filled(&self) -> i64 {
        self.filled
    }

    /// Samples buffered but not yet encoded.
    fn buffered(&self) -> i64 {
        ((self.pcm.len() - self.pcm_read) / CHANNELS) as i64
    }

    /// Samples still needed before the next AAC frame can be made.
    pub(crate) fn needed_for_next_frame(&self) -> i64 {
        (AAC_FRAME - self.buffered()).max(1)
    }

    /// Timeline position after the newest packet and when it arrived.
    pub(crate) fn last_packet(&self) -> Option<(i64, Instant)> {
        self.last_packet
    }

    /// Output timestamp (ms) of AAC frame `frame`: its first sample's time, shifted by the
    /// encoder delay so that the first frame is at 0 and input sample 0 plays at
    /// [`ENCODER_DELAY`] samples.
    pub(crate) fn frame_ms(frame: u64) -> u32 {
        (frame as i64 * AAC_FRAME * 1000 / RATE) as u32
    }

    /// The timestamp the next AAC frame will have: no audio tag will be earlier.
    pub(crate) fn watermark_ms(&self) -> u32 {
        Self::frame_ms(self.frames)
    }

    /// Decodes a packet that arrives before the timeline starts (keeps the decoder's state).
    pub(crate) fn discard(&mut self, packet: &[u8]) {
        let _ = self.decoder.decode(packet, &mut self.scratch, false);
    }

    /// The timeline position of a packet with extended RTP time `ext`: continuous with the
    /// previous packets unless the clock mapping changed (`epoch`), in which case `mapped`
    /// (the position from the A/V clock) is taken.
    pub(crate) fn position(&mut self, ext: i64, mapped: i64, epoch: u64) -> i64 {
        match self.anchor {
            Some((a_ext, a_pos, a_epoch)) if a_epoch == epoch => {
                let pos = a_pos + (ext - a_ext);
                if (pos - self.filled).abs() > MAX_GAP {
                    tracing::warn!(
                        jump = pos - self.filled,
                        "Opus RTP timestamps jumped; continuing the timeline"
                    );
                    self.anchor = Some((ext, self.filled, epoch));
                    self.filled
                } else {
                    pos
                }
            }
            _ => {
                let pos = if (mapped - self.filled).abs() > MAX_GAP && self.anchor.is_some() {
                    self.filled
                } else {
                    mapped
                };
                self.anchor = Some((ext, pos, epoch));
                pos
            }
        }
    }

    /// Places one Opus packet at timeline position `pos`, concealing any gap before it, and
    /// encodes what is ready into `out` as (timestamp ms, tag body, is sequence header).
    pub(crate) fn push(
        &mut self,
        now: Instant,
        pos: i64,
        packet: &[u8],
        arena: &mut TagArena,
        out: &mut impl FnMut(u32, Bytes, bool),
    ) -> PacketFate {
        let samples = match opus::packet::get_nb_samples(packet, RATE as u32) {
            Ok(n) if (1..=MAX_OPUS_SAMPLES).contains(&n) => n as i64,
            _ => return PacketFate::Dropped,
        };
        if pos + samples <= self.filled {
            return PacketFate::Dropped;
        }
        if pos > self.filled {
            let gap = pos - self.filled;
            self.concealed_samples += gap as u64;
            if gap <= MAX_CONCEALED_GAP {
                self.conceal(gap, samples, packet, arena, out);
            } else {
                self.fill_silence(gap, arena, out);
            }
        }
        let skip = (self.filled - pos).max(0) as usize;
        let decoded = match self.decoder.decode(packet, &mut self.scratch, false) {
            Ok(n) => n.min(MAX_OPUS_SAMPLES),
            Err(err) => {
                tracing::debug!(%err, "undecodable Opus packet");
                return PacketFate::Dropped;
            }
        };
        if skip < decoded {
            self.pcm
                .extend_from_slice(&self.scratch[skip * CHANNELS..decoded * CHANNELS]);
            self.filled += (decoded - skip) as i64;
        }
        self.last_packet = Some((self.filled, now));
        self.encode_ready(arena, out);
        PacketFate::Used
    }

    /// Fills `gap` samples by packet-loss concealment; the last lost packet's worth comes
    /// from `next`'s in-band FEC when it carries some.
    fn conceal(
        &mut self,
        gap: i64,
        packet_samples: i64,
        next: &[u8],
        arena: &mut TagArena,
        out: &mut impl FnMut(u32, Bytes, bool),
    ) {
        const STEP: i64 = 120; // 2.5 ms, the Opus frame-size granule.
        let fec = if gap >= packet_samples && packet_samples % STEP == 0 {
            packet_samples
        } else {
            0
        };
        let mut plc = (gap - fec) / STEP * STEP;
        let silence = gap - fec - plc;
        self.fill_silence(silence, arena, out);
        while plc > 0 {
            let n = plc.min(960);
            self.decode_into_timeline(&[], n, false);
            plc -= n;
            self.encode_ready(arena, out);
        }
        if fec > 0 {
            self.decode_into_timeline(next, fec, true);
        }
        self.encode_ready(arena, out);
    }

    /// Decodes (or conceals, for an empty packet) exactly `n` samples into the timeline.
    fn decode_into_timeline(&mut self, packet: &[u8], n: i64, fec: bool) {
        let n = n as usize;
        let got = self
            .decoder
            .decode(packet, &mut self.scratch[..n * CHANNELS], fec)
            .unwrap_or(0)
            .min(n);
        self.pcm.extend_from_slice(&self.scratch[..got * CHANNELS]);
        // Whatever the decoder did not give is silence: the timeline has no holes.
        self.pcm.resize(self.pcm.len() + (n - got) * CHANNELS, 0);
        self.filled += n as i64;
    }

    /// Appends `n` samples of silence, encoding as it goes so the buffer stays small.
    pub(crate) fn fill_silence(
        &mut self,
        mut n: i64,
        arena: &mut TagArena,
        out: &mut impl FnMut(u32, Bytes, bool),
    ) {
        while n > 0 {
            let chunk = n.min(SILENCE_CHUNK);
            self.pcm
                .resize(self.pcm.len() + chunk as usize * CHANNELS, 0);
            self.filled += chunk;
            n -= chunk;
            self.encode_ready(arena, out);
        }
    }

    /// Encodes every whole AAC frame buffered.
    fn encode_ready(&mut self, arena: &mut TagArena, out: &mut impl FnMut(u32, Bytes, bool)) {
        let frame_len = AAC_FRAME as usize * CHANNELS;
        while self.pcm.len() - self.pcm_read >= frame_len {
            let input = &self.pcm[self.pcm_read..self.pcm_read + frame_len];
            let info = match self.encoder.encode(input, &mut self.aac) {
                Ok(info) => info,
                Err(err) => {
                    tracing::warn!(%err, "AAC encoder error; dropping a frame of PCM");
                    self.pcm_read += frame_len;
                    continue;
                }
            };
            // fdk-aac takes a whole frame per call; never spin if it takes nothing.
            self.pcm_read += info.input_consumed.clamp(1, frame_len);
            if info.output_size == 0 {
                continue;
            }
            if !self.sequence_header_sent {
                self.sequence_header_sent = true;
                out(0, self.sequence_header.clone(), true);
            }
            let frame = &self.aac[..info.output_size.min(self.aac.len())];
            let body = arena.begin(2 + frame.len());
            aac::write_raw_tag(body, frame);
            let body = arena.finish();
            out(Self::frame_ms(self.frames), body, false);
            self.frames += 1;
        }
        if self.pcm_read > 0 {
            self.pcm.drain(..self.pcm_read);
            self.pcm_read = 0;
        }
    }
}
