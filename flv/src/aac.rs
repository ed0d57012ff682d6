//! AAC for FLV: the AudioSpecificConfig (ISO/IEC 14496-3) and the audio tag
//! bodies of an AAC sequence header and of raw AAC frames.
//!
//! ```
//! use bytes::BytesMut;
//! use flv::aac::{self, AudioSpecificConfig};
//!
//! let asc = AudioSpecificConfig::aac_lc(48_000, 2);
//! assert_eq!(&asc.to_bytes()[..], &[0x11, 0x90]);
//!
//! let mut body = BytesMut::new();
//! aac::write_sequence_header_tag(&mut body, &asc);
//! assert_eq!(&body[..], &[0xAF, 0x00, 0x11, 0x90]);
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::hexdump::HexDump;

/// The FLV sound format of AAC.
pub const SOUND_FORMAT_AAC: u8 = 10;

/// First byte of every AAC audio tag: AAC, 44 kHz, 16 bit, stereo (FLV requires
/// these flags for AAC whatever the real parameters; the AudioSpecificConfig tells).
pub const AAC_TAG_FLAGS: u8 = 0xAF;

/// The 2-byte tag header of an AAC sequence header.
pub const SEQUENCE_HEADER_TAG_HEADER: [u8; 2] = [AAC_TAG_FLAGS, 0x00];

/// The 2-byte tag header of a raw AAC frame.
pub const RAW_TAG_HEADER: [u8; 2] = [AAC_TAG_FLAGS, 0x01];

/// AAC-LC audio object type.
pub const OBJECT_TYPE_AAC_LC: u8 = 2;

/// The sampling frequencies by index.
pub const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// The AAC packet type (second byte of an AAC audio tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AacPacketType {
    /// AudioSpecificConfig (0).
    SequenceHeader,
    /// A raw AAC frame (1).
    Raw,
}

impl AacPacketType {
    /// The byte value.
    pub const fn value(self) -> u8 {
        match self {
            AacPacketType::SequenceHeader => 0,
            AacPacketType::Raw => 1,
        }
    }
}

/// An error in AAC data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AacError {
    /// The AudioSpecificConfig ends too early.
    #[error("AAC: AudioSpecificConfig ends too early at bit {bit} (bytes: {bytes})")]
    Truncated {
        /// Bit offset where more bits were needed.
        bit: usize,
        /// The config bytes.
        bytes: HexDump,
    },
    /// A reserved sampling frequency index (13 or 14) or a zero sample rate.
    #[error("AAC: invalid sampling frequency index {index} (bytes: {bytes})")]
    InvalidFrequency {
        /// The index.
        index: u8,
        /// The config bytes.
        bytes: HexDump,
    },
}

/// The AudioSpecificConfig: what an AAC decoder needs to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type (2 is AAC-LC, 5 SBR/HE-AAC, 29 PS/HE-AACv2).
    pub object_type: u8,
    /// Sampling rate in Hz (of the core for HE-AAC).
    pub sample_rate: u32,
    /// Channel configuration (1 mono, 2 stereo, ... 0 means defined in-band).
    pub channel_config: u8,
    /// For explicit SBR/PS signalling (object type 5 or 29): the output
    /// sampling rate and the core object type.
    pub sbr: Option<SbrConfig>,
}

/// Explicit SBR signalling in an AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbrConfig {
    /// The extension (output) sampling rate.
    pub sample_rate: u32,
    /// The core's audio object type (usually 2).
    pub core_object_type: u8,
}

impl AudioSpecificConfig {
    /// An AAC-LC config.
    pub const fn aac_lc(sample_rate: u32, channels: u8) -> Self {
        AudioSpecificConfig {
            object_type: OBJECT_TYPE_AAC_LC,
            sample_rate,
            channel_config: channels,
            sbr: None,
        }
    }

    /// The output sample rate (the SBR rate for explicit HE-AAC).
    pub fn output_sample_rate(&self) -> u32 {
        self.sbr.map_or(self.sample_rate, |s| s.sample_rate)
    }

    /// The channel count (0 when the channel configuration is in-band).
    pub fn channels(&self) -> u8 {
        match self.channel_config {
            c @ 0..=6 => c,
            7 => 8,
            _ => 0,
        }
    }

    /// Appends the config. Object types above 31 use the escape code; rates not in
    /// the table are written explicitly; the GASpecificConfig flags are zero.
    pub fn write(&self, out: &mut BytesMut) {
        let mut w = BitWriter::default();
        write_object_type(&mut w, self.object_type);
        write_frequency(&mut w, self.sample_rate);
        w.put(4, u32::from(self.channel_config & 0x0F));
        if let Some(sbr) = self.sbr {
            write_frequency(&mut w, sbr.sample_rate);
            write_object_type(&mut w, sbr.core_object_type);
        }
        // GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag.
        w.put(3, 0);
        w.finish(out);
    }

    /// The config as bytes (`11 90` for AAC-LC, 48 kHz, stereo).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(8);
        self.write(&mut out);
        out.freeze()
    }

    /// Parses the leading fields of a config (object type, rate, channels and
    /// explicit SBR/PS signalling); what follows them is not interpreted.
    pub fn parse(data: &[u8]) -> Result<Self, AacError> {
        let mut r = BitReader { data, bit: 0 };
        let object_type = read_object_type(&mut r)?;
        let sample_rate = read_frequency(&mut r)?;
        let channel_config = r.get(4)? as u8;
        let mut sbr = None;
        // Explicit SBR/PS: the signalled object type (5 or 29) stays in
        // `object_type`, the core's is in `sbr`.
        if object_type == 5 || object_type == 29 {
            let ext_rate = read_frequency(&mut r)?;
            let core = read_object_type(&mut r)?;
            sbr = Some(SbrConfig {
                sample_rate: ext_rate,
                core_object_type: core,
            });
        }
        Ok(AudioSpecificConfig {
            object_type,
            sample_rate,
            channel_config,
            sbr,
        })
    }
}

fn write_object_type(w: &mut BitWriter, object_type: u8) {
    if object_type >= 31 {
        // 31 is the escape itself; types from 32 to 95 follow it in 6 bits.
        w.put(5, 31);
        w.put(6, u32::from(object_type.saturating_sub(32)).min(63));
    } else {
        w.put(5, u32::from(object_type));
    }
}

fn write_frequency(w: &mut BitWriter, rate: u32) {
    match SAMPLE_RATES.iter().position(|&r| r == rate) {
        Some(i) => w.put(4, i as u32),
        None => {
            w.put(4, 15);
            w.put(24, rate & 0x00FF_FFFF);
        }
    }
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, AacError> {
    let t = r.get(5)? as u8;
    if t == 31 {
        Ok(32 + r.get(6)? as u8)
    } else {
        Ok(t)
    }
}

fn read_frequency(r: &mut BitReader<'_>) -> Result<u32, AacError> {
    let index = r.get(4)? as u8;
    let rate = match index {
        15 => r.get(24)?,
        i => match SAMPLE_RATES.get(usize::from(i)) {
            Some(&rate) => rate,
            None => 0,
        },
    };
    if rate == 0 {
        return Err(AacError::InvalidFrequency {
            index,
            bytes: HexDump::new(r.data),
        });
    }
    Ok(rate)
}

#[derive(Default)]
struct BitWriter {
    acc: u64,
    bits: u32,
    bytes: [u8; 16],
    len: usize,
}

impl BitWriter {
    fn put(&mut self, n: u32, v: u32) {
        self.acc = self.acc << n | u64::from(v) & ((1u64 << n) - 1);
        self.bits += n;
        while self.bits >= 8 {
            self.bits -= 8;
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = (self.acc >> self.bits) as u8;
                self.len += 1;
            }
        }
    }

    fn finish(mut self, out: &mut BytesMut) {
        if self.bits > 0 {
            self.put(8 - self.bits, 0);
        }
        out.put_slice(&self.bytes[..self.len]);
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn get(&mut self, n: u32) -> Result<u32, AacError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.bit / 8).ok_or(AacError::Truncated {
                bit: self.bit,
                bytes: HexDump::new(self.data),
            })?;
            v = v << 1 | u32::from(byte >> (7 - self.bit % 8) & 1);
            self.bit += 1;
        }
        Ok(v)
    }
}

/// Appends the tag body of an AAC sequence header: `AF 00` and the config.
pub fn write_sequence_header_tag(out: &mut BytesMut, config: &AudioSpecificConfig) {
    out.put_slice(&SEQUENCE_HEADER_TAG_HEADER);
    config.write(out);
}

/// Appends the tag body of one raw AAC frame: `AF 01` and the frame.
pub fn write_raw_tag(out: &mut BytesMut, frame: &[u8]) {
    out.reserve(2 + frame.len());
    out.put_slice(&RAW_TAG_HEADER);
    out.put_slice(frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_48k_stereo_is_1190() {
        let asc = AudioSpecificConfig::aac_lc(48_000, 2);
        assert_eq!(&asc.to_bytes()[..], &[0x11, 0x90]);
        assert_eq!(AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap(), asc);
    }

    #[test]
    fn other_common_configs() {
        // 44.1 kHz stereo, 48 kHz mono.
        assert_eq!(
            &AudioSpecificConfig::aac_lc(44_100, 2).to_bytes()[..],
            &[0x12, 0x10]
        );
        assert_eq!(
            &AudioSpecificConfig::aac_lc(48_000, 1).to_bytes()[..],
            &[0x11, 0x88]
        );
    }

    #[test]
    fn explicit_rate_and_escaped_object_type() {
        let asc = AudioSpecificConfig {
            object_type: 42,
            sample_rate: 12_345,
            channel_config: 7,
            sbr: None,
        };
        let bytes = asc.to_bytes();
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
        assert_eq!(asc.channels(), 8);
    }

    #[test]
    fn he_aac_explicit_sbr() {
        // HE-AAC: object type 5, core 24 kHz, output 48 kHz, stereo, core AAC-LC.
        let asc = AudioSpecificConfig {
            object_type: 5,
            sample_rate: 24_000,
            channel_config: 2,
            sbr: Some(SbrConfig {
                sample_rate: 48_000,
                core_object_type: 2,
            }),
        };
        let bytes = asc.to_bytes();
        assert_eq!(&bytes[..], &[0x2B, 0x11, 0x88, 0x00]);
        let parsed = AudioSpecificConfig::parse(&bytes).unwrap();
        assert_eq!(parsed, asc);
        assert_eq!(parsed.output_sample_rate(), 48_000);
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            AudioSpecificConfig::parse(&[]),
            Err(AacError::Truncated { bit: 0, .. })
        ));
        assert!(matches!(
            AudioSpecificConfig::parse(&[0x11]),
            Err(AacError::Truncated { .. })
        ));
        // Index 13 is reserved.
        assert!(matches!(
            AudioSpecificConfig::parse(&[0x16, 0x90]),
            Err(AacError::InvalidFrequency { index: 13, .. })
        ));
    }

    #[test]
    fn tag_bodies() {
        let mut out = BytesMut::new();
        write_sequence_header_tag(&mut out, &AudioSpecificConfig::aac_lc(48_000, 2));
        write_raw_tag(&mut out, &[0x21, 0x10]);
        assert_eq!(&out[..], &[0xAF, 0, 0x11, 0x90, 0xAF, 1, 0x21, 0x10]);
    }
}
