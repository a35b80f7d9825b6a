//! [`ErrorCode`]: the stable numbers a response carries to say why a request failed.
//!
//! Clients match on these numbers, so **a code's number never changes and is never reused**,
//! even after the code stops being sent. New codes get new numbers in their group:
//!
//! | range | group | connection afterwards |
//! |---|---|---|
//! | 0 | success | open |
//! | 1xx | the frame itself (framing, version, opcode, header) | 100–102 close, 103–104 open |
//! | 2xx | the request's content (names, offsets, records) | open |
//! | 3xx | the broker's storage | open |
//! | 4xx | the cluster (roles, replication) | open |
//! | 5xx | the server process (load, shutdown, bugs) | open |
//!
//! A peer may be newer than this code and send a number unknown here:
//! [`ErrorCode::from_u16`] returns `None` for it and clients must treat it as a failure of
//! the request, never as success. Only 0 means success.
//!
//! Codes 100–102 describe a stream the server can no longer read: it answers with a response
//! of request id 0 ([`crate::RequestId::NONE`]) and opcode 0 carrying the code, then closes
//! the connection.

use std::fmt;

/// Why a request failed (or [`ErrorCode::Ok`]); the `error_code` field of a response frame
/// and of per-part results. See the module docs for the numbering rules.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Success. The only code that means success.
    Ok = 0,

    // 1xx: the frame.
    /// The bytes are not a valid frame: bad magic, bad kind, reserved bits set, lengths that
    /// do not add up, a checksum mismatch, or a request carrying an error code. Sent with
    /// request id 0; the server closes the connection.
    BadFrame = 100,
    /// The frame's length exceeds the receiver's `max_frame_bytes`. Sent with request id 0
    /// before anything of the frame is buffered; the server closes the connection.
    FrameTooLarge = 101,
    /// The frame's version is not one this server speaks. Sent with request id 0; the server
    /// closes the connection.
    UnsupportedVersion = 102,
    /// The opcode is unknown, or not one this process serves (e.g. a pull sent to a name
    /// server). The connection stays open.
    UnknownOpcode = 103,
    /// The header does not validate as the type the opcode names, or does not describe the
    /// payload (e.g. a produce part's byte range lies outside it). The connection stays open.
    BadHeader = 104,

    // 2xx: the request.
    /// The topic does not exist on this broker (or, from a name server, has no route).
    TopicNotFound = 200,
    /// The topic exists but has no queue with this id.
    QueueNotFound = 201,
    /// Create topic: a topic of that name already exists.
    TopicExists = 202,
    /// A record in the batch is larger than the broker's message size limit.
    MessageTooLarge = 203,
    /// A produce batch (or one part of it) is larger than the broker's batch size limit.
    BatchTooLarge = 204,
    /// A record in the batch fails validation (structure, lengths, body CRC, properties,
    /// or a record count that does not match the header); nothing of the batch is stored.
    BadRecord = 205,
    /// An offset in the request lies outside the queue's `[min, max]` range (e.g. a commit
    /// past the end). A pull never gets this: its response says where to continue instead.
    OffsetOutOfRange = 206,
    /// A field is outside its allowed range: an invalid topic or group name, a queue count
    /// of zero, a shard layout that does not match the queue count, and the like.
    InvalidArgument = 207,

    // 3xx: storage.
    /// The broker's disk usage is past its high-water mark; produce is refused until
    /// retention frees space. Sent before the disk is actually full.
    DiskFull = 300,
    /// The batch was not durable within the broker's flush timeout. It may still become
    /// durable later: a producer retrying may create a duplicate.
    FlushTimeout = 301,
    /// Stored data failed its checksum on read; the broker reports the damage. Try a
    /// replica.
    StorageDamaged = 302,

    // 4xx: cluster.
    /// A write (produce, create/delete topic, offset commit) reached a replica; refresh the
    /// route and send it to the master.
    NotMaster = 400,
    /// Sync replication: no replica confirmed the batch within the replication timeout. The
    /// master stored it; a retry may create a duplicate.
    ReplicationTimeout = 401,

    // 5xx: server.
    /// The server is starting up or shutting down and takes no new requests; try another
    /// broker or name server, or retry later.
    ServiceUnavailable = 500,
    /// The connection already has the maximum number of requests in flight; retry after
    /// some responses have arrived.
    TooManyRequests = 501,
    /// A bug or an unexpected failure on the server; the error detail says more.
    Internal = 502,
}

/// Every code, in numeric order.
pub const ALL_ERROR_CODES: [ErrorCode; 22] = [
    ErrorCode::Ok,
    ErrorCode::BadFrame,
    ErrorCode::FrameTooLarge,
    ErrorCode::UnsupportedVersion,
    ErrorCode::UnknownOpcode,
    ErrorCode::BadHeader,
    ErrorCode::TopicNotFound,
    ErrorCode::QueueNotFound,
    ErrorCode::TopicExists,
    ErrorCode::MessageTooLarge,
    ErrorCode::BatchTooLarge,
    ErrorCode::BadRecord,
    ErrorCode::OffsetOutOfRange,
    ErrorCode::InvalidArgument,
    ErrorCode::DiskFull,
    ErrorCode::FlushTimeout,
    ErrorCode::StorageDamaged,
    ErrorCode::NotMaster,
    ErrorCode::ReplicationTimeout,
    ErrorCode::ServiceUnavailable,
    ErrorCode::TooManyRequests,
    ErrorCode::Internal,
];

impl ErrorCode {
    /// The code with this number, or `None` if this build does not know it (which a client
    /// must treat as a failure).
    pub const fn from_u16(number: u16) -> Option<ErrorCode> {
        Some(match number {
            0 => ErrorCode::Ok,
            100 => ErrorCode::BadFrame,
            101 => ErrorCode::FrameTooLarge,
            102 => ErrorCode::UnsupportedVersion,
            103 => ErrorCode::UnknownOpcode,
            104 => ErrorCode::BadHeader,
            200 => ErrorCode::TopicNotFound,
            201 => ErrorCode::QueueNotFound,
            202 => ErrorCode::TopicExists,
            203 => ErrorCode::MessageTooLarge,
            204 => ErrorCode::BatchTooLarge,
            205 => ErrorCode::BadRecord,
            206 => ErrorCode::OffsetOutOfRange,
            207 => ErrorCode::InvalidArgument,
            300 => ErrorCode::DiskFull,
            301 => ErrorCode::FlushTimeout,
            302 => ErrorCode::StorageDamaged,
            400 => ErrorCode::NotMaster,
            401 => ErrorCode::ReplicationTimeout,
            500 => ErrorCode::ServiceUnavailable,
            501 => ErrorCode::TooManyRequests,
            502 => ErrorCode::Internal,
            _ => return None,
        })
    }

    /// The number on the wire.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether this is [`ErrorCode::Ok`].
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::Ok)
    }

    /// Whether a server that sends this code closes the connection afterwards (the stream
    /// can no longer be read as frames).
    pub const fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame | ErrorCode::FrameTooLarge | ErrorCode::UnsupportedVersion
        )
    }
}

impl TryFrom<u16> for ErrorCode {
    type Error = UnknownErrorCode;

    fn try_from(number: u16) -> Result<Self, Self::Error> {
        ErrorCode::from_u16(number).ok_or(UnknownErrorCode(number))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, self.as_u16())
    }
}

/// An error code number this build does not know: a failure of the request all the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("unknown error code {0} (treated as a failure)")]
pub struct UnknownErrorCode(pub u16);

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers are a promise to clients: this test must never be edited to change one,
    /// only to add new codes. The match has no wildcard so a new variant must be listed.
    fn pinned_number(code: ErrorCode) -> u16 {
        match code {
            ErrorCode::Ok => 0,
            ErrorCode::BadFrame => 100,
            ErrorCode::FrameTooLarge => 101,
            ErrorCode::UnsupportedVersion => 102,
            ErrorCode::UnknownOpcode => 103,
            ErrorCode::BadHeader => 104,
            ErrorCode::TopicNotFound => 200,
            ErrorCode::QueueNotFound => 201,
            ErrorCode::TopicExists => 202,
            ErrorCode::MessageTooLarge => 203,
            ErrorCode::BatchTooLarge => 204,
            ErrorCode::BadRecord => 205,
            ErrorCode::OffsetOutOfRange => 206,
            ErrorCode::InvalidArgument => 207,
            ErrorCode::DiskFull => 300,
            ErrorCode::FlushTimeout => 301,
            ErrorCode::StorageDamaged => 302,
            ErrorCode::NotMaster => 400,
            ErrorCode::ReplicationTimeout => 401,
            ErrorCode::ServiceUnavailable => 500,
            ErrorCode::TooManyRequests => 501,
            ErrorCode::Internal => 502,
        }
    }

    #[test]
    fn error_code_numbers_are_pinned() {
        for code in ALL_ERROR_CODES {
            assert_eq!(code.as_u16(), pinned_number(code), "{code:?}");
        }
    }

    #[test]
    fn from_u16_knows_exactly_the_listed_codes() {
        let mut known = 0;
        for number in 0..=u16::MAX {
            if let Some(code) = ErrorCode::from_u16(number) {
                assert_eq!(code.as_u16(), number);
                known += 1;
            }
        }
        assert_eq!(known, ALL_ERROR_CODES.len());
        assert!(ALL_ERROR_CODES.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn unknown_codes_are_failures() {
        assert_eq!(ErrorCode::try_from(999), Err(UnknownErrorCode(999)));
        assert_eq!(ErrorCode::try_from(0), Ok(ErrorCode::Ok));
        assert!(ALL_ERROR_CODES.iter().filter(|code| code.is_ok()).count() == 1);
    }

    #[test]
    fn codes_are_grouped_by_hundreds() {
        for code in ALL_ERROR_CODES {
            let group = code.as_u16() / 100;
            assert!(group <= 5, "{code:?}");
            assert_eq!(
                code.closes_connection(),
                (100..=102).contains(&code.as_u16())
            );
        }
    }
}
