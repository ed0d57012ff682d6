//! AMF0 (Action Message Format version 0) values: encoding and decoding.
//!
//! AMF0 is the serialisation used by FLV script tags (`onMetaData`) and by RTMP
//! command messages (`connect`, `publish`, `_result`, ...).
//!
//! ```
//! use bytes::BytesMut;
//! use flv::amf0::{self, Value};
//!
//! let value = Value::Object(vec![
//!     ("app".to_owned(), Value::from("live")),
//!     ("tcUrl".to_owned(), Value::from("rtmp://127.0.0.1/live")),
//! ]);
//! let mut out = BytesMut::new();
//! amf0::encode(&Value::from("connect"), &mut out);
//! amf0::encode(&Value::Number(1.0), &mut out);
//! amf0::encode(&value, &mut out);
//!
//! let values = amf0::decode_all(&out).unwrap();
//! assert_eq!(values[0].as_str(), Some("connect"));
//! assert_eq!(values[2].get("app").and_then(Value::as_str), Some("live"));
//! ```

use bytes::{BufMut, BytesMut};

use crate::hexdump::HexDump;

/// Type markers of AMF0.
pub mod marker {
    /// IEEE-754 double, big endian.
    pub const NUMBER: u8 = 0x00;
    /// One byte, zero is false.
    pub const BOOLEAN: u8 = 0x01;
    /// UTF-8 with a 16-bit length.
    pub const STRING: u8 = 0x02;
    /// Key/value pairs ended by an empty key and [`OBJECT_END`].
    pub const OBJECT: u8 = 0x03;
    /// Reserved, not supported.
    pub const MOVIECLIP: u8 = 0x04;
    /// Null.
    pub const NULL: u8 = 0x05;
    /// Undefined.
    pub const UNDEFINED: u8 = 0x06;
    /// Reference to an earlier complex value (not supported).
    pub const REFERENCE: u8 = 0x07;
    /// 32-bit associative count, then key/value pairs like an object.
    pub const ECMA_ARRAY: u8 = 0x08;
    /// Ends an object or ECMA array (after an empty key).
    pub const OBJECT_END: u8 = 0x09;
    /// 32-bit count, then that many values.
    pub const STRICT_ARRAY: u8 = 0x0A;
    /// Double milliseconds since the epoch, then a 16-bit time zone.
    pub const DATE: u8 = 0x0B;
    /// UTF-8 with a 32-bit length.
    pub const LONG_STRING: u8 = 0x0C;
}

/// The maximum nesting depth of objects and arrays that [`decode`] accepts.
pub const MAX_DEPTH: usize = 64;

/// Strings longer than this are encoded as AMF0 long strings.
pub const MAX_SHORT_STRING_LEN: usize = 0xFFFF;

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (always a double in AMF0).
    Number(f64),
    /// A boolean.
    Boolean(bool),
    /// A string; longer than 65535 bytes it is encoded as a long string.
    String(String),
    /// An anonymous object; keys keep their order (and may repeat).
    Object(Vec<(String, Value)>),
    /// Null.
    Null,
    /// Undefined.
    Undefined,
    /// An ECMA (associative) array; keys keep their order.
    EcmaArray(Vec<(String, Value)>),
    /// A strict (dense) array.
    StrictArray(Vec<Value>),
    /// A date.
    Date {
        /// Milliseconds since 1970-01-01 UTC.
        millis: f64,
        /// Time zone offset in minutes; AMF0 says it should be zero.
        timezone: i16,
    },
}

impl Value {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The key/value pairs, if this is an object or an ECMA array.
    pub fn as_properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// The first value stored under `key`, if this is an object or an ECMA array.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Whether this is null or undefined.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null | Value::Undefined)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

/// An AMF0 decoding error. Every variant says the byte offset (from the start of
/// the input given to [`decode`] or [`decode_all`]) where decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Amf0Error {
    /// The input ended inside a value.
    #[error("AMF0: input ends at offset {offset} but {needed} more bytes are needed")]
    UnexpectedEof {
        /// Offset where more bytes were needed.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A type marker this crate does not know or does not support
    /// (movieclip, reference, unsupported, recordset, XML, typed object, AMF3 switch).
    #[error("AMF0: unsupported type marker 0x{marker:02x} at offset {offset} (bytes: {bytes})")]
    UnsupportedMarker {
        /// Offset of the marker.
        offset: usize,
        /// The marker byte.
        marker: u8,
        /// Up to 16 bytes from the marker on.
        bytes: HexDump,
    },
    /// An object-end marker where a value was expected.
    #[error("AMF0: object-end marker outside an object at offset {offset}")]
    UnexpectedObjectEnd {
        /// Offset of the marker.
        offset: usize,
    },
    /// A string that is not valid UTF-8.
    #[error("AMF0: string at offset {offset} is not valid UTF-8 (bytes: {bytes})")]
    InvalidUtf8 {
        /// Offset of the string's first byte (after its length).
        offset: usize,
        /// Up to 16 bytes of the string.
        bytes: HexDump,
    },
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("AMF0: nesting deeper than {limit} at offset {offset}")]
    TooDeep {
        /// Offset of the value that went too deep.
        offset: usize,
        /// The limit.
        limit: usize,
    },
}

impl Amf0Error {
    /// Byte offset of the error from the start of the decoded input.
    pub fn offset(&self) -> usize {
        match self {
            Amf0Error::UnexpectedEof { offset, .. }
            | Amf0Error::UnsupportedMarker { offset, .. }
            | Amf0Error::UnexpectedObjectEnd { offset }
            | Amf0Error::InvalidUtf8 { offset, .. }
            | Amf0Error::TooDeep { offset, .. } => *offset,
        }
    }
}

/// Appends the AMF0 encoding of `value` to `out`.
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Value::String(s) => encode_string(s, out),
        Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            encode_properties(props, out);
        }
        Value::Null => out.put_u8(marker::NULL),
        Value::Undefined => out.put_u8(marker::UNDEFINED),
        Value::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            encode_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.put_u8(marker::STRICT_ARRAY);
            // A strict array cannot say more than u32::MAX items; encode at most that many.
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.put_u32(count);
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Value::Date { millis, timezone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
    }
}

/// Appends `s` as an AMF0 string value (a long string when longer than 65535 bytes).
pub fn encode_string(s: &str, out: &mut BytesMut) {
    match u16::try_from(s.len()) {
        Ok(len) => {
            out.put_u8(marker::STRING);
            out.put_u16(len);
            out.put_slice(s.as_bytes());
        }
        Err(_) => {
            out.put_u8(marker::LONG_STRING);
            // Strings over 4 GiB cannot be represented; they are truncated at a char boundary.
            let bytes = truncate_utf8(s, u32::MAX as usize);
            out.put_u32(bytes.len() as u32);
            out.put_slice(bytes.as_bytes());
        }
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends an object key (a string without a type marker).
fn encode_key(key: &str, out: &mut BytesMut) {
    // Keys have a 16-bit length; longer keys are truncated at a char boundary.
    let key = truncate_utf8(key, MAX_SHORT_STRING_LEN);
    out.put_u16(key.len() as u16);
    out.put_slice(key.as_bytes());
}

fn encode_properties(props: &[(String, Value)], out: &mut BytesMut) {
    for (key, value) in props {
        encode_key(key, out);
        encode(value, out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}

/// Decodes one AMF0 value from the front of `input` and advances `input` past it.
///
/// Error offsets count from the start of `input` as given. On error `input` is
/// left unchanged.
pub fn decode(input: &mut &[u8]) -> Result<Value, Amf0Error> {
    let mut reader = Reader { buf: input, pos: 0 };
    let value = reader.value(0)?;
    *input = &input[reader.pos..];
    Ok(value)
}

/// Decodes every value in `input` (for example a whole script tag or an RTMP
/// command message).
pub fn decode_all(input: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut reader = Reader { buf: input, pos: 0 };
    let mut values = Vec::new();
    while reader.pos < input.len() {
        values.push(reader.value(0)?);
    }
    Ok(values)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        match rest.get(..n) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(Amf0Error::UnexpectedEof {
                offset: self.buf.len(),
                needed: n - rest.len(),
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn utf8(&mut self, len: usize) -> Result<String, Amf0Error> {
        let start = self.pos;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(Amf0Error::InvalidUtf8 {
                offset: start,
                bytes: HexDump::new(bytes),
            }),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        let start = self.pos;
        let m = self.u8()?;
        let value = match m {
            marker::NUMBER => Value::Number(self.f64()?),
            marker::BOOLEAN => Value::Boolean(self.u8()? != 0),
            marker::STRING => {
                let len = self.u16()?;
                Value::String(self.utf8(usize::from(len))?)
            }
            marker::LONG_STRING => {
                let len = self.u32()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                Value::String(self.utf8(len)?)
            }
            marker::OBJECT => {
                self.check_depth(start, depth)?;
                Value::Object(self.properties(depth)?)
            }
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            marker::ECMA_ARRAY => {
                self.check_depth(start, depth)?;
                // The count is only a hint (encoders get it wrong); the end marker decides.
                let _count = self.u32()?;
                Value::EcmaArray(self.properties(depth)?)
            }
            marker::STRICT_ARRAY => {
                self.check_depth(start, depth)?;
                let count = self.u32()?;
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                // Every value takes at least one byte: never reserve more than the input holds.
                let remaining = self.buf.len().saturating_sub(self.pos);
                let mut items = Vec::with_capacity(count.min(remaining));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = self.f64()?;
                let timezone = self.u16()? as i16;
                Value::Date { millis, timezone }
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd { offset: start }),
            other => {
                let end = self.buf.len().min(start + 16);
                return Err(Amf0Error::UnsupportedMarker {
                    offset: start,
                    marker: other,
                    bytes: HexDump::new(&self.buf[start..end]),
                });
            }
        };
        Ok(value)
    }

    fn check_depth(&self, offset: usize, depth: usize) -> Result<(), Amf0Error> {
        if depth >= MAX_DEPTH {
            Err(Amf0Error::TooDeep {
                offset,
                limit: MAX_DEPTH,
            })
        } else {
            Ok(())
        }
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let key_len = self.u16()?;
            if key_len == 0 && self.buf.get(self.pos) == Some(&marker::OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let key = self.utf8(usize::from(key_len))?;
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(v, &mut out);
        out.to_vec()
    }

    fn roundtrip(v: Value) {
        let bytes = enc(&v);
        let mut input = &bytes[..];
        let back = decode(&mut input).unwrap();
        assert!(input.is_empty());
        assert_eq!(back, v);
    }

    #[test]
    fn number_vector() {
        assert_eq!(
            enc(&Value::Number(1.0)),
            [0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn string_and_bool_vectors() {
        assert_eq!(enc(&Value::from("ab")), [0x02, 0x00, 0x02, b'a', b'b']);
        assert_eq!(enc(&Value::Boolean(true)), [0x01, 0x01]);
        assert_eq!(enc(&Value::Null), [0x05]);
        assert_eq!(enc(&Value::Undefined), [0x06]);
    }

    #[test]
    fn object_keeps_key_order() {
        let v = Value::Object(vec![
            ("z".into(), Value::Number(1.0)),
            ("a".into(), Value::Boolean(false)),
            ("m".into(), Value::Null),
        ]);
        let bytes = enc(&v);
        assert_eq!(&bytes[..4], &[0x03, 0x00, 0x01, b'z']);
        assert_eq!(&bytes[bytes.len() - 3..], &[0x00, 0x00, 0x09]);
        roundtrip(v);
    }

    #[test]
    fn all_types_roundtrip() {
        roundtrip(Value::Number(-0.5));
        roundtrip(Value::Boolean(false));
        roundtrip(Value::from(""));
        roundtrip(Value::from("héllo"));
        roundtrip(Value::Null);
        roundtrip(Value::Undefined);
        roundtrip(Value::EcmaArray(vec![
            ("duration".into(), Value::Number(0.0)),
            (
                "x".into(),
                Value::StrictArray(vec![Value::Null, Value::from("s")]),
            ),
        ]));
        roundtrip(Value::StrictArray(vec![]));
        roundtrip(Value::Date {
            millis: 1.7e12,
            timezone: -60,
        });
        roundtrip(Value::Object(vec![]));
    }

    #[test]
    fn long_string_over_64k() {
        let s = "x".repeat(0x1_0000);
        let bytes = enc(&Value::String(s.clone()));
        assert_eq!(&bytes[..5], &[0x0C, 0x00, 0x01, 0x00, 0x00]);
        roundtrip(Value::String(s));
        // Exactly 0xFFFF stays a short string.
        let bytes = enc(&Value::String("y".repeat(0xFFFF)));
        assert_eq!(&bytes[..3], &[0x02, 0xFF, 0xFF]);
    }

    #[test]
    fn short_long_string_decodes() {
        let bytes = [0x0C, 0, 0, 0, 2, b'h', b'i'];
        assert_eq!(decode_all(&bytes).unwrap(), vec![Value::from("hi")]);
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        // Count says 5 but there is one pair.
        let bytes = [0x08, 0, 0, 0, 5, 0, 1, b'a', 0x05, 0, 0, 0x09];
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![Value::EcmaArray(vec![("a".into(), Value::Null)])]
        );
    }

    #[test]
    fn ecma_array_encodes_count() {
        let bytes = enc(&Value::EcmaArray(vec![("a".into(), Value::Null)]));
        assert_eq!(bytes, [0x08, 0, 0, 0, 1, 0, 1, b'a', 0x05, 0, 0, 0x09]);
    }

    #[test]
    fn decode_advances_slice() {
        let mut out = BytesMut::new();
        encode(&Value::from("_result"), &mut out);
        encode(&Value::Number(1.0), &mut out);
        let mut input = &out[..];
        assert_eq!(decode(&mut input).unwrap().as_str(), Some("_result"));
        assert_eq!(input.len(), 9);
        assert_eq!(decode(&mut input).unwrap().as_f64(), Some(1.0));
        assert!(input.is_empty());
    }

    #[test]
    fn errors_say_offset() {
        // Truncated number after a good string.
        let bytes = [0x02, 0, 1, b'a', 0x00, 0x3F];
        let err = decode_all(&bytes).unwrap_err();
        assert_eq!(
            err,
            Amf0Error::UnexpectedEof {
                offset: 6,
                needed: 7
            }
        );
        let err = decode_all(&[0x05, 0x07, 0, 1]).unwrap_err();
        assert_eq!(err.offset(), 1);
        assert!(err.to_string().contains("0x07"), "{err}");
        assert_eq!(
            decode_all(&[0x09]).unwrap_err(),
            Amf0Error::UnexpectedObjectEnd { offset: 0 }
        );
        let err = decode_all(&[0x02, 0, 2, 0xC3, 0x28]).unwrap_err();
        assert!(matches!(err, Amf0Error::InvalidUtf8 { offset: 3, .. }));
    }

    #[test]
    fn decode_leaves_input_on_error() {
        let bytes = [0x00, 1, 2];
        let mut input = &bytes[..];
        assert!(decode(&mut input).is_err());
        assert_eq!(input.len(), 3);
    }

    #[test]
    fn depth_limit() {
        let mut bytes = [0x0A, 0, 0, 0, 1].repeat(MAX_DEPTH);
        bytes.push(0x05);
        assert!(decode_all(&bytes).is_ok());
        let mut bytes = [0x0A, 0, 0, 0, 1].repeat(MAX_DEPTH + 1);
        bytes.push(0x05);
        assert!(matches!(
            decode_all(&bytes).unwrap_err(),
            Amf0Error::TooDeep { .. }
        ));
        // Deeply nested objects do not overflow the stack.
        let bytes = [0x03, 0, 1, b'k'].repeat(100_000);
        assert!(decode_all(&bytes).is_err());
    }

    #[test]
    fn huge_strict_array_count_does_not_reserve() {
        let bytes = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05];
        assert!(matches!(
            decode_all(&bytes).unwrap_err(),
            Amf0Error::UnexpectedEof { .. }
        ));
    }

    #[test]
    fn empty_key_with_value_is_a_property() {
        let bytes = [0x03, 0, 0, 0x05, 0, 0, 0x09];
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![Value::Object(vec![(String::new(), Value::Null)])]
        );
    }

    #[test]
    fn accessors() {
        let v = Value::Object(vec![("n".into(), Value::Number(2.0))]);
        assert_eq!(v.get("n").and_then(Value::as_f64), Some(2.0));
        assert_eq!(v.get("missing"), None);
        assert_eq!(Value::Null.get("n"), None);
        assert_eq!(Value::Boolean(true).as_bool(), Some(true));
        assert!(Value::Undefined.is_null());
    }
}
