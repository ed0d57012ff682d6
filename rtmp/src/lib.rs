//! Sans-IO RTMP (work in progress).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
