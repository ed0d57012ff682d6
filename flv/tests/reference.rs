//! A reference FLV made by ffmpeg (libx264 High 720p + AAC-LC 48 kHz stereo):
//! every tag demuxes and parses, and muxing the tags again gives the file back
//! byte for byte.

use bytes::BytesMut;
use flv::aac::{AacPacketType, AudioSpecificConfig};
use flv::avc::{avcc_nal_units, AvcDecoderConfig, AvcPacketType};
use flv::media::{AudioData, VideoData};
use flv::metadata::OnMetaData;
use flv::{Demuxer, Muxer, Tag, TagKind};

const FILE: &[u8] = include_bytes!("data/ffmpeg_x264_high_720p_aac.flv");

fn demux_all(pieces: usize) -> Vec<Tag> {
    let mut demuxer = Demuxer::new();
    let mut tags = Vec::new();
    for piece in FILE.chunks(pieces) {
        demuxer.push(piece);
        while let Some(tag) = demuxer.pull().unwrap() {
            tags.push(tag);
        }
    }
    demuxer.finish().unwrap();
    tags
}

#[test]
fn ffmpeg_reference_file_parses() {
    let tags = demux_all(FILE.len());
    assert_eq!(tags[0].kind, TagKind::Script);
    let meta = OnMetaData::parse(&tags[0].data).unwrap();
    assert_eq!(meta.framerate, Some(30.0));

    let mut video_frames = 0;
    let mut keyframes = 0;
    let mut audio_frames = 0;
    let mut config = None;
    let mut asc = None;
    let mut end_of_sequence = 0;
    let mut last_video_ts = 0;
    for tag in &tags[1..] {
        match tag.kind {
            TagKind::Video => match tag.video().unwrap() {
                VideoData::Avc {
                    packet_type: AvcPacketType::SequenceHeader,
                    data,
                    ..
                } => config = Some(AvcDecoderConfig::parse(&data).unwrap()),
                VideoData::Avc {
                    packet_type: AvcPacketType::Nalu,
                    frame_type,
                    composition_time,
                    data,
                } => {
                    assert!(config.is_some(), "sequence header first");
                    assert!(composition_time >= 0);
                    assert!(tag.timestamp >= last_video_ts);
                    last_video_ts = tag.timestamp;
                    let units: Vec<_> = avcc_nal_units(&data, 4).map(Result::unwrap).collect();
                    assert!(!units.is_empty());
                    video_frames += 1;
                    if frame_type == 1 {
                        keyframes += 1;
                        assert!(units.iter().any(|u| u[0] & 0x1F == 5), "IDR in keyframe");
                    }
                }
                VideoData::Avc {
                    packet_type: AvcPacketType::EndOfSequence,
                    data,
                    ..
                } => {
                    assert!(data.is_empty());
                    end_of_sequence += 1;
                }
                other => panic!("unexpected {other:?}"),
            },
            TagKind::Audio => match tag.audio().unwrap() {
                AudioData::Aac {
                    packet_type: AacPacketType::SequenceHeader,
                    data,
                } => {
                    assert_eq!(&data[..2], &[0x11, 0x90]);
                    asc = Some(AudioSpecificConfig::parse(&data).unwrap());
                }
                AudioData::Aac {
                    packet_type: AacPacketType::Raw,
                    ..
                } => audio_frames += 1,
                other => panic!("unexpected {other:?}"),
            },
            TagKind::Script => {}
        }
    }
    let config = config.unwrap();
    assert_eq!(config.profile, 100);
    let sps = config.parse_sps().unwrap();
    assert_eq!((sps.width, sps.height), (1280, 720));
    assert_eq!(asc.unwrap(), AudioSpecificConfig::aac_lc(48_000, 2));
    assert_eq!(video_frames, 30);
    assert_eq!(keyframes, 2);
    assert_eq!(
        end_of_sequence, 1,
        "ffmpeg ends the stream with an AVC end of sequence"
    );
    assert!(audio_frames >= 46, "{audio_frames}");
}

#[test]
fn ffmpeg_reference_file_remuxes_byte_exact() {
    let tags = demux_all(1000);
    assert_eq!(tags, demux_all(FILE.len()));
    let mut muxer = Muxer::new();
    let mut out = BytesMut::new();
    muxer.write_header(&mut out, true, true);
    for tag in &tags {
        assert_eq!(tag.offset, out.len() as u64);
        muxer.write_tag(&mut out, tag.kind, tag.timestamp, &tag.data);
    }
    assert_eq!(&out[..], FILE);
}
