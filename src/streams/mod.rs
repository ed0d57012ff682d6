//! Stream management: each stream's lifecycle ([`lifecycle`], a pure state machine), its
//! publisher session and its destinations, wired together by the [`manager`].

pub mod lifecycle;
pub mod manager;
pub mod persist;

pub use lifecycle::{Lifecycle, StartMode, StreamState, Transition};
pub use manager::{
    CreateStream, DestinationSnapshot, DestinationSpec, ManagerConfig, Stream, StreamEvent,
    StreamManager, StreamSnapshot,
};
