//! Test harness for real peers (work in progress).
