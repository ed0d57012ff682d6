//! youtube (in progress).
