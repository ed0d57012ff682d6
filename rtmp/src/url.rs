//! `rtmp://` and `rtmps://` URLs: host, port, app, stream key and tcUrl.
//!
//! The stream key is the last path segment; the app is everything between the host and
//! the key (it may contain `/` and a `?query`, e.g. YouTube's `live2?backup=1`). A query
//! after the key stays with the key, which is how ffmpeg and OBS hand it to the server.
//! The tcUrl is the URL without the key, as typed (OBS sends the server URL it was given).

/// `rtmp` or `rtmps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain RTMP over TCP, default port 1935.
    Rtmp,
    /// RTMP over TLS, default port 443.
    Rtmps,
}

impl Scheme {
    /// The default port.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Rtmp => 1935,
            Scheme::Rtmps => 443,
        }
    }
}

/// A parsed publish URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// The scheme.
    pub scheme: Scheme,
    /// Host name or IP address (without brackets for IPv6).
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
    /// The application.
    pub app: String,
    /// The stream key.
    pub stream_key: String,
    /// The tcUrl sent in connect.
    pub tc_url: String,
}

/// Why a URL was not accepted.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `rtmp://` or `rtmps://`.
    #[error("unsupported URL scheme in {url:?}: expected rtmp:// or rtmps://")]
    Scheme {
        /// The URL (key removed).
        url: String,
    },
    /// No host.
    #[error("no host in RTMP URL {url:?}")]
    Host {
        /// The URL (key removed).
        url: String,
    },
    /// The port is not a number in 1..=65535.
    #[error("invalid port {port:?} in RTMP URL")]
    Port {
        /// The port text.
        port: String,
    },
    /// The path lacks an app or a key.
    #[error("RTMP URL {url:?} needs both an app and a stream key: rtmp://host[:port]/app/key")]
    Path {
        /// The URL (key removed).
        url: String,
    },
}

impl RtmpUrl {
    /// Parses `rtmp[s]://host[:port]/app[/...]/key`.
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(url, "rtmp://") {
            (Scheme::Rtmp, r)
        } else if let Some(r) = strip_prefix_ci(url, "rtmps://") {
            (Scheme::Rtmps, r)
        } else {
            return Err(UrlError::Scheme {
                url: url.split('/').take(3).collect::<Vec<_>>().join("/"),
            });
        };
        let prefix_len = url.len() - rest.len();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let path = &rest[authority_end..];
        let redacted = || format!("{}{}", &url[..prefix_len], authority);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| UrlError::Host { url: redacted() })?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::Host { url: redacted() });
        }
        let port = match port {
            None => scheme.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError::Port {
                    port: p.to_string(),
                })?,
        };
        let path = path.strip_prefix('/').unwrap_or(path);
        let (app, key) = path
            .rsplit_once('/')
            .ok_or_else(|| UrlError::Path { url: redacted() })?;
        if app.is_empty() || key.is_empty() {
            return Err(UrlError::Path { url: redacted() });
        }
        let tc_url = url[..url.len() - key.len() - 1].to_string();
        Ok(RtmpUrl {
            scheme,
            host: host.to_string(),
            port,
            app: app.to_string(),
            stream_key: key.to_string(),
            tc_url,
        })
    }

    /// The URL with the stream key replaced by `***`, for logs and error messages.
    pub fn redacted(&self) -> String {
        format!("{}/***", self.tc_url)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> RtmpUrl {
        RtmpUrl::parse(url).unwrap()
    }

    #[test]
    fn youtube_primary_and_backup() {
        let u = p("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl");
        assert_eq!(
            (
                u.scheme,
                u.host.as_str(),
                u.port,
                u.app.as_str(),
                u.stream_key.as_str()
            ),
            (
                Scheme::Rtmp,
                "a.rtmp.youtube.com",
                1935,
                "live2",
                "abcd-efgh-ijkl"
            )
        );
        assert_eq!(u.tc_url, "rtmp://a.rtmp.youtube.com/live2");
        let u = p("rtmp://b.rtmp.youtube.com/live2?backup=1/abcd-efgh");
        assert_eq!(u.app, "live2?backup=1");
        assert_eq!(u.stream_key, "abcd-efgh");
        assert_eq!(u.tc_url, "rtmp://b.rtmp.youtube.com/live2?backup=1");
        let u = p("rtmps://a.rtmps.youtube.com/live2/key");
        assert_eq!((u.scheme, u.port), (Scheme::Rtmps, 443));
    }

    #[test]
    fn ports_multi_segment_apps_and_key_queries() {
        let u = p("rtmp://127.0.0.1:19350/live/sub/key?token=x");
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 19350));
        assert_eq!(
            (u.app.as_str(), u.stream_key.as_str()),
            ("live/sub", "key?token=x")
        );
        assert_eq!(u.tc_url, "rtmp://127.0.0.1:19350/live/sub");
        let u = p("RTMPS://[::1]:4443/app/k");
        assert_eq!(
            (u.host.as_str(), u.port, u.scheme),
            ("::1", 4443, Scheme::Rtmps)
        );
        assert_eq!(u.redacted(), "RTMPS://[::1]:4443/app/***");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            RtmpUrl::parse("http://x/a/b"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp:///a/b"),
            Err(UrlError::Host { .. })
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp://h:99999/a/b"),
            Err(UrlError::Port { .. })
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp://h:0/a/b"),
            Err(UrlError::Port { .. })
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp://h/app"),
            Err(UrlError::Path { .. })
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp://h/app/"),
            Err(UrlError::Path { .. })
        ));
        let e = RtmpUrl::parse("rtmp://h/onlyapp").unwrap_err().to_string();
        assert!(e.contains("app and a stream key"), "{e}");
    }
}
