//! Real media made in the test itself: H.264 from openh264 and Opus from libopus.
//!
//! - [`VideoSynth`]: Annex-B access units (start codes, SPS + PPS in front of every IDR) of a
//!   moving pattern at a chosen size, frame rate and bit rate. Rate control is
//!   `RateControlMode::Bitrate` with frame skipping off; the only keyframes are the first frame
//!   and the frames asked for with `force_key` (like a browser, which sends keyframes only when
//!   asked). [`VideoSynth::set_size`] changes the resolution mid-stream (new SPS/PPS and an IDR).
//! - [`AudioSynth`]: 20 ms Opus packets (48 kHz, mono or stereo) of a tone.
//!
//! ```no_run
//! use streamify_testsupport::synth::{AudioSynth, VideoSynth};
//!
//! let mut video = VideoSynth::new(640, 360, 30, 800_000);
//! let (first, is_key) = video.next_frame(false);
//! assert!(is_key && first.starts_with(&[0, 0, 0, 1]));
//! let mut audio = AudioSynth::new(2);
//! let packet = audio.next_packet();
//! assert!(!packet.is_empty());
//! ```

use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, RateControlMode,
    UsageType,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;

/// RTP clock rate of video (90 kHz).
pub const VIDEO_CLOCK: u32 = 90_000;
/// Sample rate (and RTP clock rate) of Opus.
pub const AUDIO_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms Opus packet.
pub const AUDIO_PACKET_SAMPLES: usize = 960;

/// An H.264 encoder of a moving test pattern.
pub struct VideoSynth {
    encoder: Encoder,
    width: usize,
    height: usize,
    fps: u32,
    frame: u64,
    planes: Vec<u8>,
    out: Vec<u8>,
}

impl std::fmt::Debug for VideoSynth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoSynth")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

impl VideoSynth {
    /// An encoder for `width` x `height` (both even) at `fps` frames per second and
    /// `bitrate` bit/s.
    ///
    /// # Panics
    /// If openh264 cannot be initialised or a dimension is odd or zero.
    pub fn new(width: u32, height: u32, fps: u32, bitrate: u32) -> VideoSynth {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate))
            .rate_control_mode(RateControlMode::Bitrate)
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .usage_type(UsageType::CameraVideoRealTime)
            .num_threads(1);
        let encoder =
            Encoder::with_api_config(OpenH264API::from_source(), config).expect("openh264 encoder");
        let mut synth = VideoSynth {
            encoder,
            width: 0,
            height: 0,
            fps: fps.max(1),
            frame: 0,
            planes: Vec::new(),
            out: Vec::with_capacity(256 * 1024),
        };
        synth.set_size(width, height);
        synth
    }

    /// Changes the picture size; the next frame is an IDR with a new SPS and PPS.
    ///
    /// # Panics
    /// If a dimension is odd or zero.
    pub fn set_size(&mut self, width: u32, height: u32) {
        assert!(
            width > 0 && height > 0 && width % 2 == 0 && height % 2 == 0,
            "video size must be even and non-zero, not {width}x{height}"
        );
        self.width = width as usize;
        self.height = height as usize;
        self.planes = vec![0; self.width * self.height * 3 / 2];
    }

    /// Width and height of the frames now produced.
    pub fn size(&self) -> (u32, u32) {
        (self.width as u32, self.height as u32)
    }

    /// Frames per second.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// Frames produced so far.
    pub fn frames(&self) -> u64 {
        self.frame
    }

    /// The 90 kHz RTP timestamp of frame number `n` (starting at 0), before any random offset.
    pub fn rtp_time_of(&self, n: u64) -> u32 {
        (n * u64::from(VIDEO_CLOCK) / u64::from(self.fps)) as u32
    }

    /// Encodes the next picture; with `force_key` it is an IDR. Returns the Annex-B access
    /// unit and whether it is a keyframe (IDR).
    ///
    /// # Panics
    /// If openh264 fails to encode.
    pub fn next_frame(&mut self, force_key: bool) -> (Vec<u8>, bool) {
        let (au, key) = self.next_frame_ref(force_key);
        (au.to_vec(), key)
    }

    /// Like [`next_frame`](VideoSynth::next_frame), without a copy: the access unit is valid
    /// until the next call.
    ///
    /// # Panics
    /// If openh264 fails to encode.
    pub fn next_frame_ref(&mut self, force_key: bool) -> (&[u8], bool) {
        self.paint();
        if force_key {
            self.encoder.force_intra_frame();
        }
        let (w, h) = (self.width, self.height);
        let (y, uv) = self.planes.split_at(w * h);
        let (u, v) = uv.split_at(w * h / 4);
        let yuv = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let stream = self.encoder.encode(&yuv).expect("openh264 encode");
        let key = stream.frame_type() == FrameType::IDR;
        self.out.clear();
        stream.write_vec(&mut self.out);
        self.frame += 1;
        (&self.out, key)
    }

    /// A diagonal gradient that scrolls, a bright square that moves across, and slowly
    /// cycling colours: enough motion for the encoder to spend its bit rate.
    fn paint(&mut self) {
        let (w, h) = (self.width, self.height);
        let t = self.frame as usize;
        let (y_plane, uv) = self.planes.split_at_mut(w * h);
        let square = (h / 4).max(2);
        let sx = (t * 7) % w.saturating_sub(square).max(1);
        let sy = (t * 3) % h.saturating_sub(square).max(1);
        for (row, line) in y_plane.chunks_exact_mut(w).enumerate() {
            let base = row.wrapping_add(t * 2);
            for (col, px) in line.iter_mut().enumerate() {
                *px = (base.wrapping_add(col) & 0xFF) as u8 / 2 + 32;
            }
            if (sy..sy + square).contains(&row) {
                line[sx..sx + square].fill(235);
            }
        }
        let (u_plane, v_plane) = uv.split_at_mut(w * h / 4);
        let u_val = (128 + ((t % 120) as i32 - 60)) as u8;
        let v_val = (128 - ((t % 90) as i32 - 45)) as u8;
        for (row, line) in u_plane.chunks_exact_mut(w / 2).enumerate() {
            line.fill(u_val.wrapping_add((row / 8) as u8));
        }
        v_plane.fill(v_val);
    }
}

/// An Opus encoder of a tone, 20 ms per packet at 48 kHz.
pub struct AudioSynth {
    encoder: opus::Encoder,
    channels: usize,
    samples: u64,
    frequency: f64,
    tone: bool,
    pcm: Vec<i16>,
    out: Vec<u8>,
}

impl std::fmt::Debug for AudioSynth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioSynth")
            .field("channels", &self.channels)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

impl AudioSynth {
    /// A 440 Hz tone in `channels` (1 or 2) channels.
    ///
    /// # Panics
    /// If `channels` is not 1 or 2, or libopus cannot be initialised.
    pub fn new(channels: u8) -> AudioSynth {
        AudioSynth::with_frequency(channels, 440.0)
    }

    /// A tone of `frequency` Hz in `channels` (1 or 2) channels.
    ///
    /// # Panics
    /// If `channels` is not 1 or 2, or libopus cannot be initialised.
    pub fn with_frequency(channels: u8, frequency: f64) -> AudioSynth {
        let mode = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => panic!("AudioSynth supports 1 or 2 channels, not {n}"),
        };
        let mut encoder =
            opus::Encoder::new(AUDIO_RATE, mode, opus::Application::Audio).expect("opus encoder");
        encoder
            .set_bitrate(opus::Bitrate::Bits(64_000))
            .expect("opus bitrate");
        AudioSynth {
            encoder,
            channels: usize::from(channels),
            samples: 0,
            frequency,
            tone: true,
            pcm: vec![0; AUDIO_PACKET_SAMPLES * usize::from(channels)],
            out: vec![0; 4000],
        }
    }

    /// Switches the tone on or off (off: the packets carry silence). For A/V sync tests: the
    /// tone's onset is easy to find in the decoded output.
    pub fn set_tone(&mut self, on: bool) {
        self.tone = on;
    }

    /// Channels (1 or 2).
    pub fn channels(&self) -> u8 {
        self.channels as u8
    }

    /// Samples per channel produced so far (the RTP timestamp of the next packet, before any
    /// random offset).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Encodes the next 20 ms of the tone.
    ///
    /// # Panics
    /// If libopus fails to encode.
    pub fn next_packet(&mut self) -> Vec<u8> {
        self.next_packet_ref().to_vec()
    }

    /// Like [`next_packet`](AudioSynth::next_packet), without a copy: the packet is valid
    /// until the next call.
    ///
    /// # Panics
    /// If libopus fails to encode.
    pub fn next_packet_ref(&mut self) -> &[u8] {
        let step = std::f64::consts::TAU * self.frequency / f64::from(AUDIO_RATE);
        for (i, frame) in self.pcm.chunks_exact_mut(self.channels).enumerate() {
            let n = self.samples + i as u64;
            let value = if self.tone {
                ((n as f64 * step).sin() * 8000.0) as i16
            } else {
                0
            };
            frame.fill(value);
        }
        self.samples += AUDIO_PACKET_SAMPLES as u64;
        let len = self
            .encoder
            .encode(&self.pcm, &mut self.out)
            .expect("opus encode");
        &self.out[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nal_types(au: &[u8]) -> Vec<u8> {
        let mut types = Vec::new();
        let mut i = 0;
        while i + 3 < au.len() {
            if au[i..i + 3] == [0, 0, 1] {
                types.push(au[i + 3] & 0x1F);
                i += 3;
            } else {
                i += 1;
            }
        }
        types
    }

    #[test]
    fn video_keyframes_only_at_start_and_on_request() {
        let mut synth = VideoSynth::new(320, 180, 30, 300_000);
        let (first, key) = synth.next_frame(false);
        assert!(key);
        let types = nal_types(&first);
        assert!(
            types.contains(&7) && types.contains(&8) && types.contains(&5),
            "{types:?}"
        );
        for _ in 0..40 {
            let (au, key) = synth.next_frame(false);
            assert!(!key);
            assert!(!au.is_empty(), "no skipped frames");
            assert!(!nal_types(&au).contains(&5));
        }
        let (au, key) = synth.next_frame(true);
        assert!(key);
        assert!(nal_types(&au).contains(&7));
    }

    #[test]
    fn audio_packets_are_20ms() {
        for channels in [1u8, 2] {
            let mut synth = AudioSynth::new(channels);
            let packet = synth.next_packet();
            assert_eq!(
                opus::packet::get_nb_samples(&packet, AUDIO_RATE).unwrap(),
                AUDIO_PACKET_SAMPLES
            );
            let want = if channels == 1 {
                opus::Channels::Mono
            } else {
                opus::Channels::Stereo
            };
            assert_eq!(opus::packet::get_nb_channels(&packet).unwrap(), want);
            assert_eq!(synth.samples(), 960);
        }
    }
}
