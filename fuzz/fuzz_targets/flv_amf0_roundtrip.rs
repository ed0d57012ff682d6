//! AMF0: decoding never panics; whatever decodes re-encodes to bytes that decode
//! to the same value, and re-encoding those canonical bytes is byte-identical.
#![no_main]

use bytes::BytesMut;
use flv::amf0::{self, Value};
use libfuzzer_sys::fuzz_target;

/// Structural equality with numbers compared bit for bit (NaN == NaN, 0.0 != -0.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.to_bits() == y.to_bits(),
        (
            Value::Date {
                millis: x,
                timezone: tx,
            },
            Value::Date {
                millis: y,
                timezone: ty,
            },
        ) => x.to_bits() == y.to_bits() && tx == ty,
        (Value::Object(x), Value::Object(y)) | (Value::EcmaArray(x), Value::EcmaArray(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        (Value::StrictArray(x), Value::StrictArray(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    if let Ok(value) = amf0::decode(&mut input) {
        let consumed = data.len() - input.len();
        assert!(consumed > 0);
        let mut canonical = BytesMut::new();
        amf0::encode(&value, &mut canonical);
        let mut rest = &canonical[..];
        let again = amf0::decode(&mut rest).expect("canonical bytes decode");
        assert!(rest.is_empty(), "decode consumed all canonical bytes");
        assert!(same(&value, &again), "{value:?} != {again:?}");
        let mut reencoded = BytesMut::new();
        amf0::encode(&again, &mut reencoded);
        assert_eq!(canonical, reencoded, "canonical encoding is stable");
    }
    match amf0::decode_all(data) {
        Ok(values) => {
            let mut out = BytesMut::new();
            for v in &values {
                amf0::encode(v, &mut out);
            }
            let back = amf0::decode_all(&out).expect("canonical bytes decode");
            assert_eq!(back.len(), values.len());
            assert!(values.iter().zip(&back).all(|(a, b)| same(a, b)));
        }
        Err(err) => assert!(err.offset() <= data.len()),
    }
});
