//! Sans-IO FLV and AMF0 (work in progress).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
