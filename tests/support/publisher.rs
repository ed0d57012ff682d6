//! A str0m WebRTC publisher for the end-to-end tests: one UDP socket on 127.0.0.1, an SDP offer
//! with a send-only H.264 video and (optionally) a send-only Opus audio m-section, then real-time
//! media from the synthesizers in `testsupport::synth`. Video keyframes are sent only when the
//! server asks for one (PLI or FIR), like a browser; the encoder's first frame is the only
//! unrequested keyframe.
//!
//! Blocking and single-threaded on purpose: run [`Publisher::run`] on its own thread
//! (`tokio::task::spawn_blocking`), signaling stays async in the test.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use streamify_testsupport::synth;

/// What to publish and for how long.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Video width in pixels.
    pub width: u32,
    /// Video height in pixels.
    pub height: u32,
    /// Video frames per second.
    pub fps: u32,
    /// Whether to offer and send an Opus track.
    pub audio: bool,
    /// How much media to send once connected.
    pub media_time: Duration,
    /// How long ICE + DTLS may take before the publish fails.
    pub connect_timeout: Duration,
    /// The address the publisher's UDP socket binds (its host candidate).
    pub bind_ip: std::net::IpAddr,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            width: 640,
            height: 360,
            fps: 30,
            audio: true,
            media_time: Duration::from_secs(12),
            connect_timeout: Duration::from_secs(20),
            bind_ip: Ipv4Addr::LOCALHOST.into(),
        }
    }
}

/// What the publisher did, for the test's assertions and report.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// From the start of [`Publisher::run`] to str0m's `Connected` (ICE + DTLS).
    pub connect_time: Duration,
    /// Video frames written.
    pub video_frames: u64,
    /// Video keyframes written (the first frame plus one per honoured request).
    pub keyframes: u64,
    /// Audio packets (20 ms) written.
    pub audio_packets: u64,
    /// Media time sent: video frames / fps.
    pub media_sent: Duration,
    /// When each keyframe request (PLI/FIR) arrived, counted from the first frame.
    pub keyframe_requests: Vec<Duration>,
    /// How late the sender fell behind its schedule at worst (a busy machine shows here).
    pub max_lateness: Duration,
}

/// A publisher with its offer made, waiting for the server's answer.
pub struct Publisher {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    video_mid: Mid,
    audio_mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    offer: String,
    options: PublishOptions,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Binds a UDP socket on `options.bind_ip` (127.0.0.1 by default) and makes the offer
    /// (H.264 + Opus only, host candidate included, no trickle needed).
    pub fn new(options: PublishOptions) -> Publisher {
        let socket = UdpSocket::bind((options.bind_ip, 0)).expect("bind publisher UDP");
        let local = socket.local_addr().expect("publisher local addr");
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("host candidate"));
        let mut change = rtc.sdp_api();
        let video_mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let audio_mid = options
            .audio
            .then(|| change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let (offer, pending) = change.apply().expect("offer with media");
        Publisher {
            rtc,
            socket,
            local,
            video_mid,
            audio_mid,
            pending: Some(pending),
            offer: offer.to_sdp_string(),
            options,
        }
    }

    /// The SDP offer to send to the server.
    pub fn offer(&self) -> &str {
        &self.offer
    }

    /// The publisher's UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Applies the server's answer, connects and sends `media_time` of media in real time, then
    /// keeps the connection up 300 ms longer (retransmissions, last RTCP). Blocking.
    pub fn run(mut self, answer_sdp: &str) -> Result<PublishReport, String> {
        let answer = SdpAnswer::from_sdp_string(answer_sdp)
            .map_err(|e| format!("the server's answer does not parse: {e}\n{answer_sdp}"))?;
        let pending = self.pending.take().expect("offer pending");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| format!("str0m refused the server's answer: {e}\n{answer_sdp}"))?;
        let started = Instant::now();
        let mut sender = MediaSender::new(&self.options)?;
        let mut report = PublishReport::default();
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = self.drain(&mut sender, &mut report)?;
            let now = Instant::now();
            if sender.connected_at.is_none()
                && now.duration_since(started) > self.options.connect_timeout
            {
                return Err(format!(
                    "not connected (ICE + DTLS) after {:?}: last ICE state {:?}",
                    self.options.connect_timeout, sender.ice_state
                ));
            }
            if sender.finished(now) {
                break;
            }
            if sender.write_due(
                now,
                &mut self.rtc,
                self.video_mid,
                self.audio_mid,
                &mut report,
            )? {
                continue;
            }
            let wake = sender
                .next_due()
                .map_or(timeout, |due| due.min(timeout))
                .min(started + self.options.connect_timeout + Duration::from_millis(10));
            let input = if wake <= now {
                Input::Timeout(now)
            } else {
                let wait = (wake - now).max(Duration::from_millis(1));
                self.socket
                    .set_read_timeout(Some(wait))
                    .map_err(|e| e.to_string())?;
                match self.socket.recv_from(&mut buf) {
                    Ok((n, source)) => {
                        let contents = buf[..n]
                            .try_into()
                            .map_err(|e| format!("bad datagram from {source}: {e:?}"))?;
                        Input::Receive(
                            Instant::now(),
                            Receive {
                                proto: Protocol::Udp,
                                source,
                                destination: self.local,
                                contents,
                            },
                        )
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        Input::Timeout(Instant::now())
                    }
                    Err(e) => return Err(format!("publisher socket: {e}")),
                }
            };
            if let Err(e) = self.rtc.handle_input(input) {
                // A garbage datagram is the server's bug, not a reason to stop publishing;
                // note it and carry on.
                eprintln!("publisher: str0m rejected input: {e}");
            }
        }
        report.video_frames = sender.video_index;
        report.audio_packets = sender.audio_index;
        report.media_sent =
            Duration::from_secs_f64(sender.video_index as f64 / self.options.fps as f64);
        report.connect_time = sender
            .connected_at
            .map(|t| t.duration_since(started))
            .unwrap_or_default();
        Ok(report)
    }

    /// Drains str0m until it asks for a timeout: sends datagrams, handles events.
    fn drain(
        &mut self,
        sender: &mut MediaSender,
        report: &mut PublishReport,
    ) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| format!("str0m: {e}"))? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // Loopback sends only fail when the server's socket is gone; str0m copes.
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Output::Event(event) => match event {
                    Event::Connected => sender.on_connected(Instant::now()),
                    Event::KeyframeRequest(req) if req.mid == self.video_mid => {
                        let since = sender
                            .media_start()
                            .map(|t| t.elapsed())
                            .unwrap_or_default();
                        report.keyframe_requests.push(since);
                        sender.keyframe_wanted = true;
                    }
                    Event::IceConnectionStateChange(state) => {
                        sender.ice_state = Some(state);
                        if state != IceConnectionState::Disconnected
                            || sender.connected_at.is_none()
                        {
                            continue;
                        }
                        return Err(format!(
                            "ICE disconnected after {} video frames",
                            sender.video_index
                        ));
                    }
                    _ => {}
                },
            }
        }
    }
}

/// The media schedule: frame `n` is due at `connected + n / fps`, packet `n` at
/// `connected + n * 20 ms`. RTP times follow the schedule exactly, whatever the machine's load.
struct MediaSender {
    video: synth::VideoSynth,
    audio: Option<synth::AudioSynth>,
    fps: u32,
    total_video: u64,
    total_audio: u64,
    connected_at: Option<Instant>,
    video_index: u64,
    audio_index: u64,
    linger: Duration,
    ice_state: Option<IceConnectionState>,
    /// A PLI/FIR arrived since the last keyframe: the next frame is an IDR.
    keyframe_wanted: bool,
}

const AUDIO_PACKET: Duration = Duration::from_millis(20);
const VIDEO_BITRATE: u32 = 800_000;

impl MediaSender {
    fn new(options: &PublishOptions) -> Result<MediaSender, String> {
        let video =
            synth::VideoSynth::new(options.width, options.height, options.fps, VIDEO_BITRATE);
        let audio = options.audio.then(|| synth::AudioSynth::new(2));
        let seconds = options.media_time.as_secs_f64();
        Ok(MediaSender {
            video,
            audio,
            fps: options.fps,
            total_video: (seconds * options.fps as f64).round() as u64,
            total_audio: if options.audio {
                (seconds / AUDIO_PACKET.as_secs_f64()).round() as u64
            } else {
                0
            },
            connected_at: None,
            video_index: 0,
            audio_index: 0,
            linger: Duration::from_millis(300),
            ice_state: None,
            keyframe_wanted: false,
        })
    }

    fn on_connected(&mut self, now: Instant) {
        // Start the media clock a little after DTLS so the first frames are not written while
        // SRTP is being set up on the server side.
        self.connected_at
            .get_or_insert(now + Duration::from_millis(20));
    }

    fn media_start(&self) -> Option<Instant> {
        self.connected_at
    }

    fn video_due(&self) -> Option<Instant> {
        let t0 = self.connected_at?;
        (self.video_index < self.total_video)
            .then(|| t0 + Duration::from_secs_f64(self.video_index as f64 / self.fps as f64))
    }

    fn audio_due(&self) -> Option<Instant> {
        let t0 = self.connected_at?;
        (self.audio_index < self.total_audio).then(|| t0 + AUDIO_PACKET * self.audio_index as u32)
    }

    fn next_due(&self) -> Option<Instant> {
        match (self.video_due(), self.audio_due()) {
            (Some(v), Some(a)) => Some(v.min(a)),
            (v, a) => v.or(a),
        }
    }

    fn finished(&self, now: Instant) -> bool {
        let Some(t0) = self.connected_at else {
            return false;
        };
        self.next_due().is_none()
            && now
                >= t0
                    + Duration::from_secs_f64(self.total_video as f64 / self.fps as f64)
                    + self.linger
    }

    /// Writes one frame or packet if one is due (one str0m mutation); true if it wrote.
    fn write_due(
        &mut self,
        now: Instant,
        rtc: &mut Rtc,
        video_mid: Mid,
        audio_mid: Option<Mid>,
        report: &mut PublishReport,
    ) -> Result<bool, String> {
        let video_due = self.video_due().filter(|&t| t <= now);
        let audio_due = self.audio_due().filter(|&t| t <= now);
        let write_video = match (video_due, audio_due) {
            (Some(v), Some(a)) => v <= a,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return Ok(false),
        };
        if write_video {
            let due = video_due.expect("video due");
            report.max_lateness = report.max_lateness.max(now.duration_since(due));
            let (frame, keyframe) = self
                .video
                .next_frame(std::mem::take(&mut self.keyframe_wanted));
            if keyframe {
                report.keyframes += 1;
            }
            let rtp = MediaTime::from_90khz(self.video_index * 90_000 / self.fps as u64);
            let writer = rtc.writer(video_mid).ok_or("no video writer")?;
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::H264)
                .map(|p| p.pt())
                .ok_or("the server's answer has no H.264 for the video m-section")?;
            writer
                .write(pt, due, rtp, frame)
                .map_err(|e| format!("write video: {e}"))?;
            self.video_index += 1;
        } else {
            let due = audio_due.expect("audio due");
            report.max_lateness = report.max_lateness.max(now.duration_since(due));
            let packet = self.audio.as_mut().expect("audio synth").next_packet();
            let rtp = MediaTime::new(
                self.audio_index * 960,
                str0m::media::Frequency::FORTY_EIGHT_KHZ,
            );
            let mid = audio_mid.ok_or("no audio mid")?;
            let writer = rtc.writer(mid).ok_or("no audio writer")?;
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
                .ok_or("the server's answer has no Opus for the audio m-section")?;
            writer
                .write(pt, due, rtp, packet)
                .map_err(|e| format!("write audio: {e}"))?;
            self.audio_index += 1;
        }
        Ok(true)
    }
}
