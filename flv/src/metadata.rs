//! A typed `onMetaData` script tag, in FLV form (`"onMetaData", {...}`) and in
//! the RTMP form (`"@setDataFrame", "onMetaData", {...}`).
//!
//! ```
//! use bytes::BytesMut;
//! use flv::metadata::OnMetaData;
//!
//! let meta = OnMetaData {
//!     width: Some(1280.0),
//!     height: Some(720.0),
//!     framerate: Some(30.0),
//!     videocodecid: Some(7.0),
//!     audiocodecid: Some(10.0),
//!     audiosamplerate: Some(48_000.0),
//!     stereo: Some(true),
//!     encoder: Some("streamify".into()),
//!     ..OnMetaData::default()
//! };
//! let mut body = BytesMut::new();
//! meta.write_set_data_frame(&mut body); // for an RTMP data message
//! assert_eq!(OnMetaData::parse(&body).unwrap(), meta);
//! ```

use bytes::BytesMut;

use crate::amf0::{self, Amf0Error, Value};
use crate::hexdump::HexDump;

/// The name of the metadata script data object.
pub const ON_METADATA: &str = "onMetaData";
/// The RTMP command that stores a data frame on the server.
pub const SET_DATA_FRAME: &str = "@setDataFrame";

/// An error decoding `onMetaData`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The AMF0 data is malformed.
    #[error(transparent)]
    Amf0(#[from] Amf0Error),
    /// The script data is not `onMetaData` (optionally behind `@setDataFrame`)
    /// followed by an object or ECMA array.
    #[error("FLV: script data is not onMetaData (bytes: {bytes})")]
    NotOnMetaData {
        /// The first bytes.
        bytes: HexDump,
    },
}

/// The well-known `onMetaData` properties. Every property is optional; unknown
/// ones are kept in `extra`, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OnMetaData {
    /// Duration in seconds (0 or absent for live streams).
    pub duration: Option<f64>,
    /// Video width in pixels.
    pub width: Option<f64>,
    /// Video height in pixels.
    pub height: Option<f64>,
    /// Frames per second.
    pub framerate: Option<f64>,
    /// FLV video codec id (7 is AVC).
    pub videocodecid: Option<f64>,
    /// Video bit rate in kbit/s.
    pub videodatarate: Option<f64>,
    /// FLV sound format (10 is AAC).
    pub audiocodecid: Option<f64>,
    /// Audio bit rate in kbit/s.
    pub audiodatarate: Option<f64>,
    /// Audio sample rate in Hz.
    pub audiosamplerate: Option<f64>,
    /// Audio sample size in bits.
    pub audiosamplesize: Option<f64>,
    /// Whether audio is stereo.
    pub stereo: Option<bool>,
    /// Audio channel count.
    pub audiochannels: Option<f64>,
    /// The encoding software.
    pub encoder: Option<String>,
    /// File size in bytes.
    pub filesize: Option<f64>,
    /// Other properties, in their original order.
    pub extra: Vec<(String, Value)>,
}

impl OnMetaData {
    /// The properties as an ECMA array, in a fixed order, `None`s left out.
    pub fn to_value(&self) -> Value {
        let mut props = Vec::new();
        let mut num = |key: &str, v: Option<f64>| {
            if let Some(v) = v {
                props.push((key.to_owned(), Value::Number(v)));
            }
        };
        num("duration", self.duration);
        num("width", self.width);
        num("height", self.height);
        num("framerate", self.framerate);
        num("videocodecid", self.videocodecid);
        num("videodatarate", self.videodatarate);
        num("audiocodecid", self.audiocodecid);
        num("audiodatarate", self.audiodatarate);
        num("audiosamplerate", self.audiosamplerate);
        num("audiosamplesize", self.audiosamplesize);
        num("audiochannels", self.audiochannels);
        num("filesize", self.filesize);
        if let Some(stereo) = self.stereo {
            props.push(("stereo".to_owned(), Value::Boolean(stereo)));
        }
        if let Some(encoder) = &self.encoder {
            props.push(("encoder".to_owned(), Value::String(encoder.clone())));
        }
        props.extend(self.extra.iter().cloned());
        Value::EcmaArray(props)
    }

    /// Reads the properties of an object or ECMA array. Known keys with an
    /// unexpected type are kept in `extra`.
    pub fn from_value(value: &Value) -> Option<Self> {
        let props = value.as_properties()?;
        let mut meta = OnMetaData::default();
        for (key, v) in props {
            let slot = match key.as_str() {
                "duration" => &mut meta.duration,
                "width" => &mut meta.width,
                "height" => &mut meta.height,
                "framerate" => &mut meta.framerate,
                "videocodecid" => &mut meta.videocodecid,
                "videodatarate" => &mut meta.videodatarate,
                "audiocodecid" => &mut meta.audiocodecid,
                "audiodatarate" => &mut meta.audiodatarate,
                "audiosamplerate" => &mut meta.audiosamplerate,
                "audiosamplesize" => &mut meta.audiosamplesize,
                "audiochannels" => &mut meta.audiochannels,
                "filesize" => &mut meta.filesize,
                "stereo" if v.as_bool().is_some() && meta.stereo.is_none() => {
                    meta.stereo = v.as_bool();
                    continue;
                }
                "encoder" if v.as_str().is_some() && meta.encoder.is_none() => {
                    meta.encoder = v.as_str().map(str::to_owned);
                    continue;
                }
                _ => {
                    meta.extra.push((key.clone(), v.clone()));
                    continue;
                }
            };
            match v.as_f64() {
                Some(n) if slot.is_none() => *slot = Some(n),
                _ => meta.extra.push((key.clone(), v.clone())),
            }
        }
        Some(meta)
    }

    /// Appends the FLV script tag body: `"onMetaData"` and the ECMA array.
    pub fn write(&self, out: &mut BytesMut) {
        amf0::encode_string(ON_METADATA, out);
        amf0::encode(&self.to_value(), out);
    }

    /// Appends the RTMP data message body:
    /// `"@setDataFrame"`, `"onMetaData"` and the ECMA array.
    pub fn write_set_data_frame(&self, out: &mut BytesMut) {
        amf0::encode_string(SET_DATA_FRAME, out);
        self.write(out);
    }

    /// Parses either form (with or without `@setDataFrame`); the properties may
    /// be an ECMA array or an object.
    pub fn parse(data: &[u8]) -> Result<Self, MetadataError> {
        let values = amf0::decode_all(data)?;
        let mut rest = values.as_slice();
        if rest.first().and_then(Value::as_str) == Some(SET_DATA_FRAME) {
            rest = &rest[1..];
        }
        match rest {
            [name, props, ..] if name.as_str() == Some(ON_METADATA) => {
                OnMetaData::from_value(props)
            }
            _ => None,
        }
        .ok_or_else(|| MetadataError::NotOnMetaData {
            bytes: HexDump::new(data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> OnMetaData {
        OnMetaData {
            duration: Some(0.0),
            width: Some(1280.0),
            height: Some(720.0),
            framerate: Some(30.0),
            videocodecid: Some(7.0),
            videodatarate: Some(2500.0),
            audiocodecid: Some(10.0),
            audiodatarate: Some(128.0),
            audiosamplerate: Some(48000.0),
            audiosamplesize: Some(16.0),
            stereo: Some(true),
            audiochannels: Some(2.0),
            encoder: Some("streamify 0.1".into()),
            filesize: None,
            extra: vec![("custom".into(), Value::from("x"))],
        }
    }

    #[test]
    fn roundtrip_both_forms() {
        let meta = full();
        let mut flv = BytesMut::new();
        meta.write(&mut flv);
        assert_eq!(OnMetaData::parse(&flv).unwrap(), meta);
        assert_eq!(&flv[..13], b"\x02\x00\x0aonMetaData");
        let mut rtmp = BytesMut::new();
        meta.write_set_data_frame(&mut rtmp);
        assert_eq!(&rtmp[..16], b"\x02\x00\x0d@setDataFrame");
        assert_eq!(OnMetaData::parse(&rtmp).unwrap(), meta);
        let values = amf0::decode_all(&rtmp).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[2].get("width").and_then(Value::as_f64), Some(1280.0));
        assert_eq!(values[2].get("stereo"), Some(&Value::Boolean(true)));
    }

    #[test]
    fn empty_metadata_writes_empty_ecma_array() {
        let mut out = BytesMut::new();
        OnMetaData::default().write(&mut out);
        assert_eq!(&out[13..], &[0x08, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(OnMetaData::parse(&out).unwrap(), OnMetaData::default());
    }

    #[test]
    fn object_form_and_odd_types() {
        let mut out = BytesMut::new();
        amf0::encode(&Value::from("onMetaData"), &mut out);
        amf0::encode(
            &Value::Object(vec![
                ("width".into(), Value::from("wide")),
                ("height".into(), Value::Number(360.0)),
                ("stereo".into(), Value::Number(1.0)),
            ]),
            &mut out,
        );
        let meta = OnMetaData::parse(&out).unwrap();
        assert_eq!(meta.height, Some(360.0));
        assert_eq!(meta.width, None);
        assert_eq!(meta.stereo, None);
        assert_eq!(meta.extra.len(), 2);
    }

    #[test]
    fn ffmpeg_metadata_from_reference_file() {
        let file = include_bytes!("../tests/data/ffmpeg_x264_high_720p_aac.flv");
        let mut demuxer = crate::Demuxer::new();
        demuxer.push(file);
        let tag = demuxer.pull().unwrap().unwrap();
        assert_eq!(tag.kind, crate::TagKind::Script);
        let meta = OnMetaData::parse(&tag.data).unwrap();
        assert_eq!((meta.width, meta.height), (Some(1280.0), Some(720.0)));
        assert_eq!(meta.videocodecid, Some(7.0));
        assert_eq!(meta.audiocodecid, Some(10.0));
        assert_eq!(meta.audiosamplerate, Some(48000.0));
        assert_eq!(meta.stereo, Some(true));
        assert!(meta.encoder.as_deref().unwrap().starts_with("Lavf"));
    }

    #[test]
    fn not_metadata() {
        let mut out = BytesMut::new();
        amf0::encode(&Value::from("onCuePoint"), &mut out);
        amf0::encode(&Value::Object(vec![]), &mut out);
        assert!(matches!(
            OnMetaData::parse(&out),
            Err(MetadataError::NotOnMetaData { .. })
        ));
        assert!(matches!(
            OnMetaData::parse(&[0x02, 0, 5]),
            Err(MetadataError::Amf0(_))
        ));
        assert!(OnMetaData::parse(&[]).is_err());
    }
}
