//! Small, text-level SDP checks and edits around str0m's negotiation: what the offer contains
//! (for a clear 422), what the answer accepted, and host candidates in every m-section.

use crate::error::{Error, ErrorCode, Result};

/// What an offer contains, as far as our checks go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferSummary {
    /// Codec names offered in video m-sections (upper case, deduplicated, in order).
    pub video_codecs: Vec<String>,
    /// `profile-level-id`s of the offered H.264 formats.
    pub h264_profiles: Vec<String>,
    /// Whether any audio m-section offers Opus.
    pub has_opus: bool,
}

/// Longest error detail quoted back.
const CLIP: usize = 160;

/// `s` cut to a short, single-line detail.
pub fn clip(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= CLIP {
        one_line
    } else {
        let mut out: String = one_line.chars().take(CLIP).collect();
        out.push_str("...");
        out
    }
}

struct Section<'a> {
    media: &'a str,
    port: &'a str,
    lines: Vec<&'a str>,
}

fn sections(sdp: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section<'_>> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            out.push(Section {
                media: parts.next().unwrap_or(""),
                port: parts.next().unwrap_or(""),
                lines: Vec::new(),
            });
        } else if let Some(section) = out.last_mut() {
            section.lines.push(line);
        }
    }
    out
}

/// `(payload type, codec name)` of each `a=rtpmap` line.
fn rtpmaps<'a, 'b>(section: &'b Section<'a>) -> impl Iterator<Item = (&'a str, &'a str)> + 'b {
    section.lines.iter().filter_map(|l| {
        let rest = l.strip_prefix("a=rtpmap:")?;
        let (pt, codec) = rest.split_once(' ')?;
        Some((pt, codec.split('/').next().unwrap_or("")))
    })
}

/// Summarizes an offer (already accepted by the SDP parser) and refuses one without H.264
/// video with `no_h264_offered`.
pub fn summarize_offer(offer: &str) -> Result<OfferSummary> {
    let mut summary = OfferSummary::default();
    let mut has_video = false;
    for section in sections(offer) {
        match section.media {
            "video" => {
                has_video = true;
                for (pt, codec) in rtpmaps(&section) {
                    let name = codec.to_ascii_uppercase();
                    if name == "H264" {
                        let fmtp = format!("a=fmtp:{pt} ");
                        if let Some(params) = section
                            .lines
                            .iter()
                            .find_map(|l| l.strip_prefix(fmtp.as_str()))
                        {
                            if let Some(p) = params
                                .split(';')
                                .find_map(|kv| kv.trim().strip_prefix("profile-level-id="))
                            {
                                if !summary.h264_profiles.iter().any(|x| x == p) {
                                    summary.h264_profiles.push(p.to_string());
                                }
                            }
                        }
                    }
                    if !matches!(name.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03")
                        && !summary.video_codecs.contains(&name)
                    {
                        summary.video_codecs.push(name);
                    }
                }
            }
            "audio" => {
                summary.has_opus |= rtpmaps(&section).any(|(_, c)| c.eq_ignore_ascii_case("opus"));
            }
            _ => {}
        }
    }
    if !has_video {
        return Err(Error::new(
            ErrorCode::NoH264Offered,
            "the offer has no video: Streamify needs H.264 video (add a camera or screen track)",
        ));
    }
    if !summary.video_codecs.iter().any(|c| c == "H264") {
        let offered = if summary.video_codecs.is_empty() {
            "no codec".to_string()
        } else {
            summary.video_codecs.join(", ")
        };
        return Err(Error::new(
            ErrorCode::NoH264Offered,
            format!(
                "the offer has no H.264 video (it offers {offered}): Streamify passes H.264 \
                 through to RTMP, so the publisher must offer H.264"
            ),
        ));
    }
    Ok(summary)
}

/// Refuses an answer in which no H.264 format was accepted (offered profiles unsupported).
pub fn check_answer_has_h264(answer: &str, offer: &OfferSummary) -> Result<()> {
    let accepted = sections(answer).iter().any(|s| {
        s.media == "video"
            && s.port != "0"
            && rtpmaps(s).any(|(_, c)| c.eq_ignore_ascii_case("H264"))
    });
    if accepted {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::NoH264Offered,
        format!(
            "none of the offered H.264 formats is supported (profile-level-id {}): Streamify \
             accepts the constrained baseline, baseline and main profiles with \
             packetization-mode=1",
            if offer.h264_profiles.is_empty() {
                "unspecified".to_string()
            } else {
                offer.h264_profiles.join(", ")
            }
        ),
    ))
}

/// Whether the answer accepted Opus audio.
pub fn answer_has_opus(answer: &str) -> bool {
    sections(answer).iter().any(|s| {
        s.media == "audio"
            && s.port != "0"
            && rtpmaps(s).any(|(_, c)| c.eq_ignore_ascii_case("opus"))
    })
}

/// Copies the candidate lines (and `a=end-of-candidates`) into every m-section that has none:
/// str0m writes them only into the first, and some max-bundle clients read another.
pub fn spread_candidates(answer: &str) -> String {
    let lines: Vec<&str> = answer.lines().collect();
    let is_candidate = |l: &str| l.starts_with("a=candidate:") || l == "a=end-of-candidates";
    let mut seen = std::collections::HashSet::new();
    let candidates: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| is_candidate(l))
        .filter(|l| seen.insert(*l))
        .collect();
    let mut out = String::with_capacity(answer.len() + 256);
    let mut in_media = false;
    let mut section_has = false;
    let flush = |out: &mut String, in_media: bool, section_has: bool| {
        if in_media && !section_has {
            for c in &candidates {
                out.push_str(c);
                out.push_str("\r\n");
            }
        }
    };
    for line in &lines {
        if line.starts_with("m=") {
            flush(&mut out, in_media, section_has);
            in_media = true;
            section_has = false;
        } else if is_candidate(line) {
            section_has = true;
        }
        if line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    flush(&mut out, in_media, section_has);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
        a=candidate:1 1 udp 2130706175 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 108\r\na=mid:1\r\na=rtpmap:108 H264/90000\r\n";

    #[test]
    fn candidates_copied_into_every_section() {
        let out = spread_candidates(ANSWER);
        let video = out.split("m=video").nth(1).unwrap();
        assert!(video.contains("a=candidate:1 1 udp 2130706175 127.0.0.1 5000 typ host\r\n"));
        assert!(video.contains("a=end-of-candidates\r\n"));
        assert_eq!(out.matches("a=candidate:").count(), 2);
        assert!(out.ends_with("\r\n"));
        assert!(answer_has_opus(&out));
        check_answer_has_h264(&out, &OfferSummary::default()).unwrap();
    }

    #[test]
    fn vp8_only_offer_is_refused_with_the_codecs_named() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\n\
                     a=rtpmap:97 rtx/90000\r\n";
        let e = summarize_offer(offer).unwrap_err();
        assert_eq!(e.code, ErrorCode::NoH264Offered);
        assert!(
            e.message.contains("no H.264") && e.message.contains("VP8"),
            "{e}"
        );
        assert!(!e.message.contains("RTX"));
        let audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(
            summarize_offer(audio_only).unwrap_err().code,
            ErrorCode::NoH264Offered
        );
    }

    #[test]
    fn h264_profiles_are_collected() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n\
                     a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640034\r\n";
        let s = summarize_offer(offer).unwrap();
        assert_eq!(s.h264_profiles, ["640034"]);
        let e = check_answer_has_h264("v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 0\r\n", &s).unwrap_err();
        assert!(e.message.contains("640034"));
    }

    #[test]
    fn clip_is_short_and_single_line() {
        let s = clip(&"x\n".repeat(500));
        assert!(s.len() <= CLIP + 3 && !s.contains('\n'));
    }
}
