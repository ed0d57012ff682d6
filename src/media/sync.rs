//! One clock for both tracks: RTP timestamps (unwrapped past 2^32) mapped to the pipeline's
//! media clock, microseconds since the pipeline was created.
//!
//! Until RTCP sender reports for both tracks are known, each track is mapped by the arrival
//! time of its first packet. Once both are known, the track that was mapped first stays as it
//! is (so its output never jumps) and the other is mapped through the wall clock of the sender
//! reports, which puts both tracks on the sender's capture clock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Track;

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

/// The A/V clock of one pipeline.
#[derive(Debug, Clone)]
pub(crate) struct AvClock {
    start: Instant,
    video: TrackClock,
    audio: TrackClock,
    /// The track whose arrival-based mapping anchors the other once reports are in.
    reference: Option<Track>,
    /// Bumped whenever the audio mapping changes after its first packet.
    audio_epoch: u64,
}

impl AvClock {
    pub(crate) fn new(start: Instant) -> Self {
        AvClock {
            start,
            video: TrackClock::default(),
            audio: TrackClock::default(),
            reference: None,
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
            let offset = self
                .derived_offset(track)
                .unwrap_or(arrival - ticks_to_us(ext, rate));
            self.clock(track).offset = Some(offset);
            if self.reference.is_none() {
                self.reference = Some(track);
            }
        }
        let offset = self.clock(track).offset.unwrap_or_default();
        (ext, ticks_to_us(ext, rate) + offset)
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

    /// An RTCP sender report; may re-map the non-reference track.
    pub(crate) fn sender_report(&mut self, track: Track, rtp_time: u32, ntp: SystemTime) {
        let Ok(wall) = ntp.duration_since(UNIX_EPOCH) else {
            return;
        };
        let Ok(wall_us) = i64::try_from(wall.as_micros()) else {
            return;
        };
        let clock = self.clock(track);
        let ext = clock.unwrapper.peek(rtp_time);
        clock.report = Some((ext, wall_us));
        // Re-map whichever track is not the reference.
        let Some(reference) = self.reference else {
            return;
        };
        let other = match reference {
            Track::Video => Track::Audio,
            Track::Audio => Track::Video,
        };
        if self.clock(other).offset.is_none() {
            return;
        }
        if let Some(offset) = self.derived_offset(other) {
            let clock = self.clock(other);
            if clock.offset != Some(offset) {
                clock.offset = Some(offset);
                if other == Track::Audio {
                    self.audio_epoch += 1;
                }
            }
        }
    }

    /// Changes whenever the audio track's mapping changes.
    pub(crate) fn audio_epoch(&self) -> u64 {
        self.audio_epoch
    }

    /// The offset of `track` that puts it on the reference track's clock through the
    /// wall clocks of both tracks' sender reports.
    fn derived_offset(&self, track: Track) -> Option<i64> {
        let reference = self.reference.filter(|r| *r != track)?;
        let (ref_clock, clock) = match reference {
            Track::Video => (&self.video, &self.audio),
            Track::Audio => (&self.audio, &self.video),
        };
        let (ref_ext, ref_wall) = ref_clock.report?;
        let ref_media = ticks_to_us(ref_ext, Self::rate(reference)) + ref_clock.offset?;
        // wall - media on the reference track.
        let k = ref_wall - ref_media;
        let (ext, wall) = clock.report?;
        Some(wall - k - ticks_to_us(ext, Self::rate(track)))
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
}
