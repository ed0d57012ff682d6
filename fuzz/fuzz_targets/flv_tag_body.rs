//! Audio/video/script tag bodies (legacy and Enhanced RTMP), the configs inside
//! them and onMetaData: parsing never panics, and onMetaData that parses
//! re-encodes to bytes that parse and re-encode identically.
#![no_main]

use bytes::{Bytes, BytesMut};
use flv::aac::{AacPacketType, AudioSpecificConfig};
use flv::avc::{avcc_nal_units, AvcDecoderConfig, AvcPacketType};
use flv::media::{AudioData, VideoData};
use flv::metadata::OnMetaData;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    if let Ok(video) = VideoData::parse(&body) {
        match video {
            VideoData::Avc {
                packet_type: AvcPacketType::SequenceHeader,
                data,
                ..
            } => {
                if let Ok(config) = AvcDecoderConfig::parse(&data) {
                    let _ = config.parse_sps();
                }
            }
            VideoData::Avc { data, .. } => {
                let total: usize = avcc_nal_units(&data, 4)
                    .map_while(Result::ok)
                    .map(|u| u.len() + 4)
                    .sum();
                assert!(total <= data.len());
            }
            VideoData::Enhanced(v) => assert!(v.data.len() < data.len()),
            _ => {}
        }
    }
    if let Ok(AudioData::Aac {
        packet_type: AacPacketType::SequenceHeader,
        data,
    }) = AudioData::parse(&body)
    {
        let _ = AudioSpecificConfig::parse(&data);
    }
    if let Ok(meta) = OnMetaData::parse(data) {
        let mut first = BytesMut::new();
        meta.write_set_data_frame(&mut first);
        let again = OnMetaData::parse(&first).expect("written metadata parses");
        let mut second = BytesMut::new();
        again.write_set_data_frame(&mut second);
        assert_eq!(first, second);
    }
});
