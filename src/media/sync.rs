//! One clock for both tracks: RTP timestamps (unwrapped past 2^32) mapped to the pipeline's
//! media clock, microseconds since the pipeline was created.
//!
//! Until RTCP sender reports for both tracks are known, each track is mapped by the arrival
//! time of its first packet. Once both are known, video stays as it is (so its timestamps
//! never jump) and audio is mapped through the wall clock of the sender reports, which puts
//! both tracks on the sender's capture clock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Track;

/// A track whose media time strays this far from the arrival time has jumped.
const MAX_DRIFT_US: i64 = 5_000_000;

/// Extends 32-bit RTP timestamps to 64 bits, across wraps in either direction.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RtpUnwrapper {
    last: Option<(u32, i64)>,
}

impl RtpUnwrapper {
    /// The extended value of `ts`, remembered as the newest.
    pub(crate) fn unwrap(&mut self, ts: u32) -> i64 {
        let ext = self.peek(ts);
        self.last = Some((ts, ext));
        ext
    }

    /// The extended value of `ts`; remembered only if it is the first.
    pub(crate) fn unwrap_or_peek(&mut self, ts: u32) -> i64 {
        if self.last.is_none() {
            self.unwrap(ts)
        } else {
            self.peek(ts)
        }
    }

    /// The extended value of `ts` without remembering it.
    pub(crate) fn peek(&self, ts: u32) -> i64 {
        match self.last {
            None => i64::from(ts),
            Some((last, ext)) => ext + i64::from(ts.wrapping_sub(last) as i32),
        }
    }
}

/// Microseconds of `ticks` at `rate` Hz.
pub(crate) fn ticks_to_us(ticks: i64, rate: u32) -> i64 {
    (i128::from(ticks) * 1_000_000 / i128::from(rate)) as i64
}

/// Microseconds from `start` to `now` (0 if `now` is earlier).
pub(crate) fn us_since(start: Instant, now: Instant) -> i64 {
    i64::try_from(now.saturating_duration_since(start).as_micros()).unwrap_or(i64::MAX)
}

#[derive(Debug, Clone, Copy, Default)]
struct TrackClock {
    unwrapper: RtpUnwrapper,
    /// media_us = ticks_to_us(ext) + offset.
    offset: Option<i64>,
    /// (extended RTP time, wall clock in microseconds since 1970) of the latest sender report.
    report: Option<(i64, i64)>,
}

/// The A/V clock of one pipeline. Video is the reference: its mapping never changes once
/// set, so video timestamps never jump; audio follows it through the sender reports, and the
/// audio timeline absorbs the change with silence or by dropping samples.
#[derive(Debug, Clone)]
pub(crate) struct AvClock {
    start: Instant,
    video: TrackClock,
    audio: TrackClock,
    /// Bumped whenever the audio mapping changes after its first packet.
    audio_epoch: u64,
}

impl AvClock {
    pub(crate) fn new(start: Instant) -> Self {
        AvClock {
            start,
            video: TrackClock::default(),
            audio: TrackClock::default(),
            audio_epoch: 0,
        }
    }

    /// The media clock now.
    pub(crate) fn now_us(&self, now: Instant) -> i64 {
        us_since(self.start, now)
    }

    fn rate(track: Track) -> u32 {
        match track {
            Track::Video => 90_000,
            Track::Audio => 48_000,
        }
    }

    fn clock(&mut self, track: Track) -> &mut TrackClock {
        match track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        }
    }

    /// Unwraps a packet's RTP timestamp and returns (extended RTP time, media time in us).
    pub(crate) fn packet(&mut self, track: Track, now: Instant, rtp_time: u32) -> (i64, i64) {
        let arrival = self.now_us(now);
        let rate = Self::rate(track);
        let ext = self.clock(track).unwrapper.unwrap(rtp_time);
        if self.clock(track).offset.is_none() {
            let derived = match track {
                Track::Audio => self.derived_audio_offset(),
                Track::Video => None,
            };
            self.clock(track).offset = Some(derived.unwrap_or(arrival - ticks_to_us(ext, rate)));
            if track == Track::Video {
                self.remap_audio();
            }
        }
        let offset = self.clock(track).offset.unwrap_or_default();
        let media = ticks_to_us(ext, rate) + offset;
        if (media - arrival).abs() > MAX_DRIFT_US {
            // The sender's RTP clock jumped (or a bogus timestamp): start this track's
            // mapping again from the arrival time; its old sender report no longer applies.
            tracing::warn!(
                ?track,
                jump_us = media - arrival,
                "RTP timestamp discontinuity"
            );
            let clock = self.clock(track);
            clock.offset = Some(arrival - ticks_to_us(ext, rate));
            clock.report = None;
            self.audio_epoch += u64::from(track == Track::Audio);
            return (ext, arrival);
        }
        (ext, media)
    }

    /// Media time of an extended RTP time of `track` (None before its first packet).
    #[cfg(test)]
    pub(crate) fn media_us(&self, track: Track, ext: i64) -> Option<i64> {
        let clock = match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        };
        clock
            .offset
            .map(|o| ticks_to_us(ext, Self::rate(track)) + o)
    }

    /// An RTCP sender report; may re-map audio onto video's clock.
    pub(crate) fn sender_report(&mut self, track: Track, rtp_time: u32, ntp: SystemTime) {
        let Ok(wall) = ntp.duration_since(UNIX_EPOCH) else {
            return;
        };
        let Ok(wall_us) = i64::try_from(wall.as_micros()) else {
            return;
        };
        let clock = self.clock(track);
        // A report before the first packet starts the unwrapping, so both agree.
        let ext = clock.unwrapper.unwrap_or_peek(rtp_time);
        clock.report = Some((ext, wall_us));
        self.remap_audio();
    }

    fn remap_audio(&mut self) {
        if self.audio.offset.is_none() {
            return;
        }
        if let Some(offset) = self.derived_audio_offset() {
            if self.audio.offset != Some(offset) {
                self.audio.offset = Some(offset);
                self.audio_epoch += 1;
            }
        }
    }

    /// Changes whenever the audio track's mapping changes.
    pub(crate) fn audio_epoch(&self) -> u64 {
        self.audio_epoch
    }

    /// The audio offset that puts audio on video's clock through the wall clocks of both
    /// tracks' sender reports.
    fn derived_audio_offset(&self) -> Option<i64> {
        let (v_ext, v_wall) = self.video.report?;
        let v_media = ticks_to_us(v_ext, Self::rate(Track::Video)) + self.video.offset?;
        // wall - media on the video track.
        let k = v_wall - v_media;
        let (a_ext, a_wall) = self.audio.report?;
        Some(a_wall - k - ticks_to_us(a_ext, Self::rate(Track::Audio)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unwrap_across_wrap_and_reorder() {
        let mut u = RtpUnwrapper::default();
        assert_eq!(u.unwrap(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(u.unwrap(5), i64::from(u32::MAX) + 6);
        assert_eq!(u.unwrap(u32::MAX - 1), i64::from(u32::MAX - 1));
        assert_eq!(u.unwrap(100), i64::from(u32::MAX) + 101);
        assert_eq!(u.peek(u32::MAX), i64::from(u32::MAX));
    }

    #[test]
    fn reports_put_the_second_track_on_the_first_tracks_clock() {
        let t0 = Instant::now();
        let mut clock = AvClock::new(t0);
        // Video sampled at wall W arrives at 10 ms; audio sampled at the same W arrives at 250 ms.
        let (_, v) = clock.packet(Track::Video, t0 + Duration::from_millis(10), 9000);
        assert_eq!(v, 10_000);
        let (ea, a) = clock.packet(Track::Audio, t0 + Duration::from_millis(250), 48_000);
        assert_eq!(a, 250_000);
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        clock.sender_report(Track::Video, 9000, wall);
        assert_eq!(clock.audio_epoch(), 0);
        clock.sender_report(Track::Audio, 48_000, wall);
        assert_eq!(clock.audio_epoch(), 1);
        assert_eq!(clock.media_us(Track::Audio, ea), Some(10_000));
        assert_eq!(clock.media_us(Track::Video, 9000), Some(10_000));
    }

    #[test]
    fn video_stays_the_reference_when_audio_comes_first_and_reports_come_early() {
        let t0 = Instant::now();
        let mut clock = AvClock::new(t0);
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Reports before any packet, with RTP times just before the wrap.
        clock.sender_report(Track::Audio, u32::MAX - 479, wall);
        clock.sender_report(Track::Video, u32::MAX - 899, wall);
        let (ea, a) = clock.packet(Track::Audio, t0 + Duration::from_millis(5), 0);
        assert_eq!(ea, i64::from(u32::MAX) + 1);
        assert_eq!(a, 5_000);
        // Video of the same instant arrives 300 ms later and is not moved; audio is.
        let (ev, v) = clock.packet(Track::Video, t0 + Duration::from_millis(305), 0);
        assert_eq!(v, 305_000);
        assert_eq!(clock.audio_epoch(), 1);
        assert_eq!(clock.media_us(Track::Audio, ea), Some(305_000));
        assert_eq!(ev, i64::from(u32::MAX) + 1);
    }
}
