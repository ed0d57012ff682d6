//! Who makes a request, and which streams that caller may see.
//!
//! Streams belong to the account that created them: a browser signed in with Google (the
//! `streamify_session` cookie) sees and manages only its own streams; anyone else gets
//! `not_found`, exactly as for a stream that does not exist. The API token is for automation and
//! sees and manages every stream.

/// The identity a request was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The server's API token (`Authorization: Bearer`): every stream.
    Token,
    /// A connected YouTube account (session cookie): its own streams.
    Account(String),
}

impl Caller {
    /// The owner a stream created by this caller gets (`None` for the API token).
    pub fn owner(&self) -> Option<&str> {
        match self {
            Caller::Token => None,
            Caller::Account(id) => Some(id),
        }
    }

    /// Whether this caller may see (and manage) a stream owned by `owner`.
    pub fn can_see(&self, owner: Option<&str>) -> bool {
        match self {
            Caller::Token => true,
            Caller::Account(id) => owner == Some(id.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_see_their_own_streams_and_the_token_sees_all() {
        let a = Caller::Account("a".into());
        assert!(a.can_see(Some("a")));
        assert!(!a.can_see(Some("b")));
        assert!(
            !a.can_see(None),
            "a stream created with the API token is not an account's"
        );
        assert!(Caller::Token.can_see(Some("a")));
        assert!(Caller::Token.can_see(None));
        assert_eq!(a.owner(), Some("a"));
        assert_eq!(Caller::Token.owner(), None);
    }
}
