//! streams (in progress).
