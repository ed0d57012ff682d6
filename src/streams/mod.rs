//! Stream management: each stream's lifecycle ([`lifecycle`], a pure state machine), its
//! publisher session and its destinations (RTMP, or a YouTube broadcast:
//! [`youtube_destination`]), wired together by the [`manager`]. Streams belong to the
//! [`Caller`] that created them.

pub mod caller;
pub mod lifecycle;
pub mod manager;
pub mod persist;
pub mod youtube_destination;

pub use caller::Caller;
pub use lifecycle::{Lifecycle, StartMode, StreamState, Transition};
pub use manager::{
    CreateStream, DestinationSnapshot, DestinationSpec, ManagerConfig, Stream, StreamEvent,
    StreamManager, StreamSnapshot,
};
