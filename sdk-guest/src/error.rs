//! The SDK's error type.

use std::fmt;

/// An error from the host or from encoding/decoding MessagePack.
///
/// It converts into `String` (and `String`/`&str` convert into it), so `?`
/// works inside entity methods returning `Result<(), String>` as well as
/// `Result<(), wyrm_sdk::Error>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    /// The error's message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error(message.to_owned())
    }
}

impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.0
    }
}
