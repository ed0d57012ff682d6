//! Publishing an FLV file in real time, paced by its timestamps (like
//! `ffmpeg -re -i IN.flv -c copy -f flv URL`). The `publish` example is a thin wrapper.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flv::{DemuxError, Demuxer, TagKind};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::{ConnectError, ConnectOptions, PublishError, Publisher};
use crate::DropStats;

/// Options for [`publish_flv_file`].
#[derive(Debug, Clone)]
pub struct PublishFileOptions {
    /// How to connect.
    pub connect: ConnectOptions,
    /// Pace tags by their timestamps (true) or send as fast as possible (false).
    pub realtime: bool,
}

impl Default for PublishFileOptions {
    fn default() -> Self {
        PublishFileOptions {
            connect: ConnectOptions::default(),
            realtime: true,
        }
    }
}

/// What was published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Audio tags sent.
    pub audio_tags: u64,
    /// Video tags sent.
    pub video_tags: u64,
    /// Script (onMetaData) tags sent.
    pub metadata_tags: u64,
    /// Tag body bytes sent.
    pub payload_bytes: u64,
    /// Timestamp of the last tag, milliseconds.
    pub last_timestamp: u32,
    /// Dropped by back-pressure (a complete publish has none).
    pub dropped: DropStats,
}

/// Why a file publish failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PublishFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid FLV.
    #[error("{path} is not a valid FLV file: {source}")]
    Flv {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: DemuxError,
    },
    /// Connecting (or the publish handshake) failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Publishing stopped before the end of the file.
    #[error("publishing stopped after {sent} of the file's tags: {source}")]
    Publish {
        /// Tags sent before the failure.
        sent: u64,
        /// Why.
        source: PublishError,
    },
    /// Back-pressure dropped frames, so the file was not sent whole.
    #[error("the connection could not keep up: back-pressure dropped {0:?}")]
    Dropped(DropStats),
}

/// Publishes the FLV file at `path` to `url`; returns once every tag was sent, the
/// output flushed and the publish ended with FCUnpublish + deleteStream.
pub async fn publish_flv_file(
    path: &Path,
    url: &str,
    options: PublishFileOptions,
) -> Result<PublishReport, PublishFileError> {
    let read_err = |source| PublishFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let flv_err = |source| PublishFileError::Flv {
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let mut publisher = Publisher::connect(url, options.connect.clone()).await?;
    let mut demuxer = Demuxer::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut report = PublishReport::default();
    let mut clock: Option<(Instant, u32)> = None;
    let mut eof = false;
    loop {
        let tag = match demuxer.pull().map_err(flv_err)? {
            Some(tag) => tag,
            None if eof => {
                demuxer.finish().map_err(flv_err)?;
                break;
            }
            None => {
                let n = file.read(&mut chunk).await.map_err(read_err)?;
                if n == 0 {
                    eof = true;
                } else {
                    demuxer.push(&chunk[..n]);
                }
                continue;
            }
        };
        let sent = report.audio_tags + report.video_tags + report.metadata_tags;
        let publish_err = |source| PublishFileError::Publish { sent, source };
        if options.realtime {
            let (start, base) = *clock.get_or_insert((Instant::now(), tag.timestamp));
            let due = start + Duration::from_millis(tag.timestamp.saturating_sub(base) as u64);
            publisher.drive_until(due).await.map_err(publish_err)?;
        } else {
            // Still let the socket drain between tags.
            publisher
                .drive_until(Instant::now())
                .await
                .map_err(publish_err)?;
            if publisher.queued_bytes() > 512 * 1024 {
                publisher
                    .flush(Duration::from_secs(10))
                    .await
                    .map_err(publish_err)?;
            }
        }
        let len = tag.data.len() as u64;
        let result = match tag.kind {
            TagKind::Audio => {
                report.audio_tags += 1;
                publisher.send_audio(tag.timestamp, tag.data).map(|_| ())
            }
            TagKind::Video => {
                report.video_tags += 1;
                publisher.send_video(tag.timestamp, tag.data).map(|_| ())
            }
            TagKind::Script => {
                report.metadata_tags += 1;
                publisher.send_metadata_tag(tag.timestamp, &tag.data)
            }
        };
        result.map_err(|e| publish_err(e.into()))?;
        report.payload_bytes += len;
        report.last_timestamp = tag.timestamp;
    }
    let sent = report.audio_tags + report.video_tags + report.metadata_tags;
    let dropped = publisher
        .finish()
        .await
        .map_err(|source| PublishFileError::Publish { sent, source })?;
    report.dropped = dropped;
    if dropped != DropStats::default() {
        return Err(PublishFileError::Dropped(dropped));
    }
    Ok(report)
}
