//! Media message classification and the back-pressure drop policy.

use bytes::Bytes;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// An FLV audio tag body (message type 8).
    Audio,
    /// An FLV video tag body (message type 9).
    Video,
}

/// What a media message is, as far as dropping is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameClass {
    /// A decoder configuration (AVC/AAC sequence header, enhanced-RTMP sequence start),
    /// or a video command frame. Never dropped.
    SequenceHeader,
    /// A video keyframe. Dropping stops here if the queue allows.
    Keyframe,
    /// A video inter frame. Droppable.
    Interframe,
    /// An audio frame. Dropped only past the (larger) audio bound.
    AudioFrame,
}

impl FrameClass {
    /// Classifies an FLV tag body (legacy or Enhanced RTMP).
    pub fn of(kind: MediaKind, body: &[u8]) -> FrameClass {
        let Some(&b0) = body.first() else {
            return FrameClass::SequenceHeader;
        };
        match kind {
            MediaKind::Video => {
                if b0 & 0x80 != 0 {
                    // Enhanced RTMP: [isExHeader:1][frameType:3][packetType:4].
                    let frame_type = (b0 >> 4) & 0x07;
                    let packet_type = b0 & 0x0F;
                    return match (frame_type, packet_type) {
                        (5, _) => FrameClass::SequenceHeader,
                        // SequenceStart, Metadata, MPEG2TSSequenceStart, Multitrack.
                        (_, 0 | 4 | 5 | 6) => FrameClass::SequenceHeader,
                        (1 | 4, _) => FrameClass::Keyframe,
                        _ => FrameClass::Interframe,
                    };
                }
                let frame_type = b0 >> 4;
                let codec = b0 & 0x0F;
                let is_config = matches!(codec, 7 | 12 | 13) && body.get(1) == Some(&0);
                match frame_type {
                    _ if is_config => FrameClass::SequenceHeader,
                    5 => FrameClass::SequenceHeader,
                    1 | 4 => FrameClass::Keyframe,
                    _ => FrameClass::Interframe,
                }
            }
            MediaKind::Audio => {
                let format = b0 >> 4;
                let config = match format {
                    10 => body.get(1) == Some(&0),
                    // Enhanced RTMP audio: SequenceStart (0) or MultichannelConfig (4).
                    9 => matches!(b0 & 0x0F, 0 | 4),
                    _ => false,
                };
                if config {
                    FrameClass::SequenceHeader
                } else {
                    FrameClass::AudioFrame
                }
            }
        }
    }
}

/// One audio or video message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaMessage {
    /// Audio or video.
    pub kind: MediaKind,
    /// Timestamp in milliseconds (the FLV tag timestamp).
    pub timestamp: u32,
    /// The FLV tag body.
    pub payload: Bytes,
    /// How it may be dropped under back-pressure.
    pub class: FrameClass,
}

impl MediaMessage {
    /// A video message, classified from its body.
    pub fn video(timestamp: u32, payload: Bytes) -> Self {
        let class = FrameClass::of(MediaKind::Video, &payload);
        MediaMessage {
            kind: MediaKind::Video,
            timestamp,
            payload,
            class,
        }
    }

    /// An audio message, classified from its body.
    pub fn audio(timestamp: u32, payload: Bytes) -> Self {
        let class = FrameClass::of(MediaKind::Audio, &payload);
        MediaMessage {
            kind: MediaKind::Audio,
            timestamp,
            payload,
            class,
        }
    }

    /// Whether back-pressure may drop it.
    pub fn is_droppable(&self) -> bool {
        self.class != FrameClass::SequenceHeader
    }
}

/// Whether a message was queued or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Encoded into the output buffer.
    Queued,
    /// Dropped because the output was backed up.
    Dropped,
}

/// Counts of what back-pressure dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Video messages dropped.
    pub video_frames: u64,
    /// Bytes of video payload dropped.
    pub video_bytes: u64,
    /// Audio messages dropped.
    pub audio_frames: u64,
    /// Bytes of audio payload dropped.
    pub audio_bytes: u64,
}

/// The drop policy: past `video_bound` queued bytes, video is dropped up to the next
/// keyframe that finds the queue below the bound again; audio only past `audio_bound`;
/// sequence headers never.
#[derive(Debug, Clone)]
pub struct DropPolicy {
    video_bound: usize,
    audio_bound: usize,
    skipping_to_keyframe: bool,
    stats: DropStats,
}

impl DropPolicy {
    /// A policy with the given bounds in queued bytes.
    pub fn new(video_bound: usize, audio_bound: usize) -> Self {
        DropPolicy {
            video_bound,
            audio_bound: audio_bound.max(video_bound),
            skipping_to_keyframe: false,
            stats: DropStats::default(),
        }
    }

    /// What has been dropped so far.
    pub fn stats(&self) -> DropStats {
        self.stats
    }

    /// Decides for one message, given how many bytes are queued.
    pub fn admit(&mut self, msg: &MediaMessage, queued: usize) -> Admission {
        let drop = match msg.class {
            FrameClass::SequenceHeader => false,
            FrameClass::Keyframe => {
                self.skipping_to_keyframe = queued > self.video_bound;
                self.skipping_to_keyframe
            }
            FrameClass::Interframe => {
                if queued > self.video_bound {
                    self.skipping_to_keyframe = true;
                }
                self.skipping_to_keyframe
            }
            FrameClass::AudioFrame => queued > self.audio_bound,
        };
        if !drop {
            return Admission::Queued;
        }
        let len = msg.payload.len() as u64;
        match msg.kind {
            MediaKind::Video => {
                self.stats.video_frames += 1;
                self.stats.video_bytes += len;
            }
            MediaKind::Audio => {
                self.stats.audio_frames += 1;
                self.stats.audio_bytes += len;
            }
        }
        Admission::Dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let v = |b: &[u8]| FrameClass::of(MediaKind::Video, b);
        let a = |b: &[u8]| FrameClass::of(MediaKind::Audio, b);
        assert_eq!(v(&[0x17, 0, 0, 0, 0]), FrameClass::SequenceHeader);
        assert_eq!(v(&[0x17, 1, 0, 0, 0]), FrameClass::Keyframe);
        assert_eq!(v(&[0x27, 1, 0, 0, 0]), FrameClass::Interframe);
        assert_eq!(v(&[0x57, 0]), FrameClass::SequenceHeader);
        // Enhanced RTMP: keyframe + SequenceStart, keyframe + CodedFrames, inter + CodedFramesX.
        assert_eq!(
            v(&[0x90, b'h', b'v', b'c', b'1']),
            FrameClass::SequenceHeader
        );
        assert_eq!(v(&[0x91, b'h', b'v', b'c', b'1']), FrameClass::Keyframe);
        assert_eq!(v(&[0xa3, b'a', b'v', b'0', b'1']), FrameClass::Interframe);
        assert_eq!(a(&[0xaf, 0, 0x11, 0x90]), FrameClass::SequenceHeader);
        assert_eq!(a(&[0xaf, 1, 0x21]), FrameClass::AudioFrame);
        assert_eq!(a(&[]), FrameClass::SequenceHeader);
    }

    #[test]
    fn drops_video_to_the_next_keyframe_then_audio_last() {
        let mut p = DropPolicy::new(100, 200);
        let key = MediaMessage::video(0, Bytes::from_static(&[0x17, 1, 0, 0, 0]));
        let inter = MediaMessage::video(33, Bytes::from_static(&[0x27, 1, 0, 0, 0]));
        let seq = MediaMessage::video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0]));
        let audio = MediaMessage::audio(0, Bytes::from_static(&[0xaf, 1, 0]));
        assert_eq!(p.admit(&inter, 50), Admission::Queued);
        assert_eq!(p.admit(&inter, 150), Admission::Dropped);
        // Queue drained, but still skipping until a keyframe.
        assert_eq!(p.admit(&inter, 0), Admission::Dropped);
        assert_eq!(p.admit(&seq, 1000), Admission::Queued);
        assert_eq!(p.admit(&audio, 150), Admission::Queued);
        assert_eq!(p.admit(&audio, 250), Admission::Dropped);
        assert_eq!(p.admit(&key, 150), Admission::Dropped);
        assert_eq!(p.admit(&inter, 0), Admission::Dropped);
        assert_eq!(p.admit(&key, 0), Admission::Queued);
        assert_eq!(p.admit(&inter, 0), Admission::Queued);
        let s = p.stats();
        assert_eq!(
            (s.video_frames, s.video_bytes, s.audio_frames, s.audio_bytes),
            (4, 20, 1, 3)
        );
    }
}
