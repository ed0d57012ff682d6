//! Annex-B -> AVCC: never panics, and the output is well-formed: after whatever
//! the buffer held before, each 4-byte length prefix covers exactly one NAL unit
//! of the input, in order, and the lengths add up to the bytes written. Every
//! input byte outside the units belongs to a start code or zero padding.
#![no_main]

use bytes::BytesMut;
use flv::avc::{annexb_nal_units, annexb_to_avcc, avcc_len_of_annexb, avcc_nal_units};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&prefix_len, input)) = data.split_first() else {
        return;
    };
    let prefix_len = usize::from(prefix_len % 8);
    let mut out = BytesMut::with_capacity(prefix_len + input.len() / 2);
    out.extend_from_slice(&[0xEE; 8][..prefix_len]);

    let written = annexb_to_avcc(input, &mut out).expect("fits in 4-byte lengths");
    assert_eq!(written, out.len() - prefix_len);
    assert_eq!(written, avcc_len_of_annexb(input));
    assert_eq!(&out[..prefix_len], &[0xEE; 8][..prefix_len]);

    let units: Vec<&[u8]> = annexb_nal_units(input).collect();
    let mut pos = prefix_len;
    for unit in &units {
        assert!(!unit.is_empty());
        assert_ne!(unit.last(), Some(&0));
        assert!(!unit.windows(3).any(|w| w == [0, 0, 1]));
        let len = u32::from_be_bytes(out[pos..pos + 4].try_into().unwrap()) as usize;
        assert_eq!(len, unit.len());
        assert_eq!(&out[pos + 4..pos + 4 + len], *unit);
        pos += 4 + len;
    }
    assert_eq!(pos, out.len());

    let back: Vec<&[u8]> = avcc_nal_units(&out[prefix_len..], 4)
        .map(|u| u.expect("well-formed AVCC"))
        .collect();
    assert_eq!(back, units);

    // Units are in-order sub-slices of the input; the gaps are start codes and zeros.
    let base = input.as_ptr() as usize;
    let mut cursor = 0;
    for (i, unit) in units.iter().enumerate() {
        let start = unit.as_ptr() as usize - base;
        assert!(start >= cursor);
        let gap = &input[cursor..start];
        assert!(gap.iter().all(|&b| b <= 1));
        if i > 0 || !gap.is_empty() {
            assert!(gap.windows(3).any(|w| w == [0, 0, 1]), "gap {gap:?}");
        }
        cursor = start + unit.len();
    }
    assert!(input[cursor..].iter().all(|&b| b <= 1));
});
