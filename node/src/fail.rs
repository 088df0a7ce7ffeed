//! Failures of a command: a one-line reason and an exit code.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | I/O or other failure |
//! | 2 | usage error (unknown flag, missing argument) |
//! | 3 | invalid input: malformed JSON, entry not fitting its schema, unknown section, bad NHS number |
//! | 4 | wrong passphrase, or no passphrase available |
//! | 5 | not found: no node in this home, no such record, section or entry |
//! | 6 | integrity failure: tampering or corruption detected |
//! | 7 | refused: not permitted for this node, or already done |
//! | 8 | the store is in use by another process (a running daemon) |

use hearth_core::keys::KeyError;
use hearth_core::record::RecordError;
use hearth_core::store::StoreError;

/// Exit codes.
pub mod code {
    /// I/O or other failure.
    pub const IO: u8 = 1;
    /// Invalid input.
    pub const INVALID: u8 = 3;
    /// Wrong or missing passphrase.
    pub const PASSPHRASE: u8 = 4;
    /// Not found.
    pub const NOT_FOUND: u8 = 5;
    /// Integrity failure.
    pub const INTEGRITY: u8 = 6;
    /// Refused.
    pub const REFUSED: u8 = 7;
    /// Store locked.
    pub const LOCKED: u8 = 8;
}

/// A command failure.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// One-line reason (never record content, keys or tokens).
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl ToString) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }

    /// Maps a keystore error.
    pub fn from_key_error(e: KeyError) -> Failure {
        let c = match e {
            KeyError::WrongPassphraseOrTampered | KeyError::EmptyPassphrase => code::PASSPHRASE,
            KeyError::BadPhrase(_) | KeyError::UnknownRole => code::INVALID,
            _ => code::INTEGRITY,
        };
        Failure::new(c, e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let c = match e {
            StoreError::Corrupt(_) | StoreError::UnsupportedFormat { .. } => code::INTEGRITY,
            StoreError::Locked(_) => code::LOCKED,
            _ => code::IO,
        };
        let msg = match e {
            StoreError::Locked(_) => {
                "the store is in use by another hearth process (is `hearth run` running for this home?)"
                    .to_string()
            }
            other => other.to_string(),
        };
        Failure::new(c, msg)
    }
}

impl From<RecordError> for Failure {
    fn from(e: RecordError) -> Failure {
        let c = match &e {
            RecordError::Store(s) => return Failure::from(s.clone()),
            RecordError::Schema(_) | RecordError::Invalid(_) => code::INVALID,
            RecordError::NoRecord(_)
            | RecordError::NoEntry(_)
            | RecordError::NoDispute(_)
            | RecordError::NoSection(_) => code::NOT_FOUND,
            RecordError::Corrupt { .. } => code::INTEGRITY,
            RecordError::NoKey(_)
            | RecordError::NotPermitted(_)
            | RecordError::Superseded { .. }
            | RecordError::AlreadyInError(_)
            | RecordError::Exists(_) => code::REFUSED,
            _ => code::IO,
        };
        Failure::new(c, e)
    }
}
