//! Stream management: each stream's lifecycle, its publisher and its destinations.
//!
//! Ownership while the first version is built: `lifecycle.rs` (the pure state machine, time
//! passed in) belongs to the lifecycle engineer; `manager.rs` (owns and wires streams) to the
//! server engineer. Declare `pub mod lifecycle;` here once it exists.
