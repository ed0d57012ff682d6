//! H.264 Annex-B access units to FLV AVC tag bodies: parameter-set tracking (a new sequence
//! header only when SPS or PPS change), keyframe gating (drop until a keyframe, at the start
//! and after a loss) and `onMetaData`.

use bytes::{BufMut, Bytes, BytesMut};
use flv::avc::{self, nal_type, AvcDecoderConfig, AvcPacketType, FrameType};
use flv::metadata::OnMetaData;

use super::TagArena;

/// What one access unit contains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AccessUnit {
    /// Contains an IDR slice.
    pub(crate) key: bool,
    /// Contains at least one NAL unit.
    pub(crate) non_empty: bool,
}

/// The parameter sets and headers of the video track.
#[derive(Debug, Default)]
pub(crate) struct VideoTrack {
    sps: Vec<u8>,
    pps: Vec<u8>,
    /// The AVC sequence header tag body for the current SPS/PPS.
    pub(crate) sequence_header: Option<Bytes>,
    /// The sequence header changed and must go out before the next frame.
    pub(crate) sequence_header_pending: bool,
    /// Display size from the current SPS.
    pub(crate) resolution: Option<(u32, u32)>,
    /// Frame rate from the SPS timing info, if any.
    pub(crate) frame_rate: Option<f64>,
    /// The resolution changed since the last `onMetaData`.
    pub(crate) metadata_pending: bool,
    /// Parameter sets that did not parse.
    pub(crate) bad_parameter_sets: u64,
}

impl VideoTrack {
    /// Writes the access unit's NALU tag body into the arena (one pass: each NAL unit is
    /// classified and copied behind its 4-byte length) and takes note of new parameter sets.
    /// The caller keeps the body with [`TagArena::finish`] or drops it with
    /// [`TagArena::abandon`].
    pub(crate) fn convert(&mut self, arena: &mut TagArena, annexb: &[u8]) -> AccessUnit {
        let mut unit = AccessUnit::default();
        let mut sps: Option<&[u8]> = None;
        let mut pps: Option<&[u8]> = None;
        let body = arena.begin(avc::VIDEO_TAG_HEADER_LEN + annexb.len() + 64);
        avc::write_video_tag_header(body, FrameType::Inter, AvcPacketType::Nalu, 0);
        for nal in avc::annexb_nal_units(annexb) {
            unit.non_empty = true;
            match avc::nal_unit_type(nal) {
                Some(nal_type::IDR) => unit.key = true,
                Some(nal_type::SPS) if sps.is_none() => sps = Some(nal),
                Some(nal_type::PPS) if pps.is_none() => pps = Some(nal),
                _ => {}
            }
            // An access unit is far below 4 GiB (the caller bounds it).
            body.put_u32(nal.len() as u32);
            body.put_slice(nal);
        }
        if unit.key {
            body[0] = avc::video_tag_header(FrameType::Key, AvcPacketType::Nalu, 0)[0];
        }
        let new_sps = sps.filter(|s| *s != &self.sps[..]);
        let new_pps = pps.filter(|p| *p != &self.pps[..]);
        if new_sps.is_some() || new_pps.is_some() {
            // Rare (start, resolution change): copies are fine here.
            let sps = new_sps.map_or_else(|| self.sps.clone(), <[u8]>::to_vec);
            let pps = new_pps.map_or_else(|| self.pps.clone(), <[u8]>::to_vec);
            if !sps.is_empty() && !pps.is_empty() {
                self.update_parameter_sets(sps, pps);
            } else {
                // One set may come in a later unit; keep this one for then.
                self.sps = sps;
                self.pps = pps;
            }
        }
        unit
    }

    fn update_parameter_sets(&mut self, sps: Vec<u8>, pps: Vec<u8>) {
        let config = match AvcDecoderConfig::from_sps_pps(&sps, &pps) {
            Ok(config) => config,
            Err(err) => {
                self.bad_parameter_sets += 1;
                tracing::warn!(%err, "ignoring H.264 parameter sets that do not parse");
                return;
            }
        };
        let parsed = config.parse_sps().ok();
        let resolution = parsed.as_ref().map(|s| (s.width, s.height));
        if resolution != self.resolution {
            self.metadata_pending = true;
        }
        self.resolution = resolution;
        self.frame_rate = parsed.and_then(|s| s.frame_rate());
        let mut body = BytesMut::with_capacity(16 + sps.len() + pps.len());
        avc::write_sequence_header_tag(&mut body, &config);
        self.sequence_header = Some(body.freeze());
        self.sequence_header_pending = true;
        self.sps = sps;
        self.pps = pps;
    }

    /// Whether a decoder could start at a keyframe now (SPS and PPS are known).
    pub(crate) fn configured(&self) -> bool {
        self.sequence_header.is_some()
    }

    /// The `onMetaData` script tag body (FLV form: `"onMetaData"` and the ECMA array).
    pub(crate) fn metadata_body(&self, aac_bitrate: u32) -> Bytes {
        let meta = OnMetaData {
            width: self.resolution.map(|r| f64::from(r.0)),
            height: self.resolution.map(|r| f64::from(r.1)),
            framerate: self.frame_rate,
            videocodecid: Some(f64::from(avc::CODEC_ID_AVC)),
            audiocodecid: Some(f64::from(flv::aac::SOUND_FORMAT_AAC)),
            audiodatarate: Some(f64::from(aac_bitrate) / 1000.0),
            audiosamplerate: Some(48_000.0),
            audiosamplesize: Some(16.0),
            stereo: Some(true),
            audiochannels: Some(2.0),
            encoder: Some(concat!("streamify ", env!("CARGO_PKG_VERSION")).to_owned()),
            ..OnMetaData::default()
        };
        let mut body = BytesMut::with_capacity(256);
        meta.write(&mut body);
        body.freeze()
    }
}
