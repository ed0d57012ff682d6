//! SPS, AVCDecoderConfigurationRecord and AudioSpecificConfig parsing: never
//! panics; whatever parses is sane and re-encodes to bytes that parse the same.
#![no_main]

use flv::aac::AudioSpecificConfig;
use flv::avc::{AvcDecoderConfig, Sps};
use libfuzzer_sys::fuzz_target;

/// A valid PPS NAL unit (x264 baseline).
const PPS: &[u8] = &[0x68, 0xCE, 0x3C, 0x80];

fuzz_target!(|data: &[u8]| {
    if let Ok(sps) = Sps::parse(data) {
        assert!(sps.width > 0 && sps.height > 0);
        assert!(sps.width <= 65536 * 16 && sps.height <= 2 * 65536 * 16);
        assert!(sps.chroma_format_idc <= 3);
        assert!((8..=14).contains(&sps.bit_depth_luma));
        if data.len() <= 0xFFFF {
            let config = AvcDecoderConfig::from_sps_pps(data, PPS).expect("SPS parsed");
            let bytes = config.to_bytes();
            assert_eq!(AvcDecoderConfig::parse(&bytes).unwrap(), config);
            assert_eq!(config.parse_sps().unwrap(), sps);
        }
    }
    if let Ok(config) = AvcDecoderConfig::parse(data) {
        let bytes = config.to_bytes();
        let again = AvcDecoderConfig::parse(&bytes).expect("re-encoded record parses");
        assert_eq!(again, config);
        assert_eq!(again.to_bytes(), bytes);
    }
    if let Ok(asc) = AudioSpecificConfig::parse(data) {
        assert!(asc.sample_rate > 0);
        let bytes = asc.to_bytes();
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
    }
});
