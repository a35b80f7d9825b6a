//! [`WireClient`]: a blocking client over one `std` TCP connection, speaking `spillway_wire`
//! frames to a broker or a name server.
//!
//! It is a test tool, not the product's client: it panics on anything a correct server never
//! does (an undecodable frame, a response to the wrong opcode, silence past the read
//! timeout), so the tests can state the behaviour they expect in a line. Many requests may
//! be in flight on one connection and their responses may come back in any order: a
//! response read while waiting for another one is kept until asked for. The raw side
//! ([`WireClient::send_raw`], [`WireClient::send_request`], [`WireClient::receive_within`])
//! is for pipelining and for sending what no client should.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spillway_wire::message::{
    CommitConsumerOffsetRequest, CommitConsumerOffsetResponse, FlushExpectation,
    GetQueueOffsetsRequest, GetQueueOffsetsResponse, GetTopicRouteRequest, GetTopicRouteResponse,
    ProduceRequest, ProduceResponse, PullRequest, PullResponse, PullStatus,
    QueryConsumerOffsetRequest, QueryConsumerOffsetResponse,
};
use spillway_wire::{
    Envelope, ErrorCode, Frame, FrameDecoder, FrameEncoder, FrameKind, HeaderRole, QueueId,
    QueueOffset, RequestId, WireHeader,
};

use crate::records::{encode_batch, parse_records, OutgoingMessage, ParsedMessage};
use crate::wait::DEADLINE;

/// Default socket read timeout: longer than the longest long poll the tests send (20 s), so
/// only a server that has really gone silent trips it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout of a connection attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `max_bytes` of the pulls the helpers send.
pub const PULL_MAX_BYTES: u32 = 4 << 20;

/// The consumer group the pull helpers name.
pub const TEST_CONSUMER_GROUP: &str = "spillway-tests";

/// The producer group the produce helpers name.
pub const TEST_PRODUCER_GROUP: &str = "spillway-tests";

/// An error response: its code and the detail's message.
pub type Refused = (ErrorCode, String);

/// What [`WireClient::receive_within`] got.
#[derive(Debug)]
pub enum Received {
    /// A whole frame.
    Frame(Frame),
    /// The peer closed (or reset) the connection.
    Closed,
    /// Nothing (complete) arrived in time; the connection is still open.
    TimedOut,
}

/// A blocking client on one connection.
#[derive(Debug)]
pub struct WireClient {
    stream: TcpStream,
    peer: SocketAddr,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    /// Bytes received and not yet decoded.
    input: BytesMut,
    /// Frames read while waiting for another request's response, in arrival order.
    early: VecDeque<Frame>,
    next_request_id: u64,
    read_timeout: Duration,
}

impl WireClient {
    /// Connects to `address` (panics if it cannot).
    pub fn connect(address: SocketAddr) -> WireClient {
        let stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
            .unwrap_or_else(|error| panic!("connect to {address}: {error}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set the read timeout");
        WireClient {
            stream,
            peer: address,
            encoder: FrameEncoder::new(),
            decoder: FrameDecoder::new(),
            input: BytesMut::new(),
            early: VecDeque::new(),
            next_request_id: 1,
            read_timeout: READ_TIMEOUT,
        }
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// How long a read may wait before the client gives up on the server (default
    /// [`READ_TIMEOUT`]).
    pub fn set_read_timeout(&mut self, read_timeout: Duration) {
        self.read_timeout = read_timeout;
    }

    /// The id the next request will carry; ids start at 1 and only grow.
    pub fn take_request_id(&mut self) -> RequestId {
        let request_id = RequestId(self.next_request_id);
        self.next_request_id += 1;
        request_id
    }

    /// Sends `bytes` as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a frame with this envelope, header and payload.
    pub fn send_frame<H: WireHeader>(
        &mut self,
        envelope: Envelope,
        header: &H,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut output = BytesMut::new();
        self.encoder
            .encode(&mut output, envelope, header, payload)
            .unwrap_or_else(|error| panic!("encode a {:?} frame: {error}", H::OPCODE));
        self.stream.write_all(&output)
    }

    /// Sends a request with the next request id, without waiting for its response (see
    /// [`WireClient::response`]).
    pub fn send_request<Q: WireHeader>(
        &mut self,
        request: &Q,
        payload: &[u8],
    ) -> io::Result<RequestId> {
        assert_eq!(
            Q::ROLE,
            HeaderRole::Request,
            "{:?} is a response",
            Q::OPCODE
        );
        let request_id = self.take_request_id();
        self.send_frame(Envelope::request(Q::OPCODE, request_id), request, payload)?;
        Ok(request_id)
    }

    /// Waits for the response to `request_id` (or a connection error, request id 0, which
    /// answers every request). Responses to other requests that arrive first are kept for
    /// later. `Err(UnexpectedEof)` if the connection closes first.
    pub fn response(&mut self, request_id: RequestId) -> io::Result<Frame> {
        let answers = |frame: &Frame| {
            frame.request_id() == request_id || frame.request_id() == RequestId::NONE
        };
        if let Some(index) = self.early.iter().position(answers) {
            return Ok(self.early.remove(index).expect("the index was just found"));
        }
        loop {
            match self.receive_from_socket(self.read_timeout)? {
                Received::Frame(frame) if answers(&frame) => return Ok(frame),
                Received::Frame(frame) => self.early.push_back(frame),
                Received::Closed => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("{} closed the connection", self.peer),
                    ))
                }
                Received::TimedOut => panic!(
                    "no response to request {request_id} from {} within {:?}",
                    self.peer, self.read_timeout
                ),
            }
        }
    }

    /// Sends `request` and waits for its response frame; I/O errors (a closed connection)
    /// are returned, for tests that expect them.
    pub fn exchange<Q: WireHeader>(&mut self, request: &Q, payload: &[u8]) -> io::Result<Frame> {
        let request_id = self.send_request(request, payload)?;
        self.response(request_id)
    }

    /// Sends `request` with `payload` and returns the deserialized response header and the
    /// response payload, or the error response's code and message. Panics if the connection
    /// fails or the response is malformed.
    pub fn call<Q: WireHeader, R: WireHeader>(
        &mut self,
        request: &Q,
        payload: &[u8],
    ) -> Result<(R, Bytes), Refused> {
        let frame = self
            .exchange(request, payload)
            .unwrap_or_else(|error| panic!("{:?} to {}: {error}", Q::OPCODE, self.peer));
        decode_response::<Q, R>(&frame)
    }

    /// The next frame off the connection (kept early responses first), or `None` once the
    /// peer closed it. Panics if nothing arrives within the read timeout.
    pub fn read_frame(&mut self) -> Option<Frame> {
        match self.receive_within(self.read_timeout) {
            Received::Frame(frame) => Some(frame),
            Received::Closed => None,
            Received::TimedOut => {
                panic!("no frame from {} within {:?}", self.peer, self.read_timeout)
            }
        }
    }

    /// The next frame (kept early responses first), waiting at most `wait`.
    pub fn receive_within(&mut self, wait: Duration) -> Received {
        if let Some(frame) = self.early.pop_front() {
            return Received::Frame(frame);
        }
        self.receive_from_socket(wait)
            .unwrap_or_else(|error| panic!("read from {}: {error}", self.peer))
    }

    /// Decodes the next frame from the socket, waiting at most `wait` in all.
    fn receive_from_socket(&mut self, wait: Duration) -> io::Result<Received> {
        let started = Instant::now();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let decoded = self
                .decoder
                .decode(&mut self.input)
                .unwrap_or_else(|error| {
                    panic!("{} sent bytes that are not a frame: {error}", self.peer)
                });
            if let Some(frame) = decoded {
                return Ok(Received::Frame(frame));
            }
            let remaining = wait.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Ok(Received::TimedOut);
            }
            self.stream.set_read_timeout(Some(remaining))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Received::Closed),
                Ok(read) => self.input.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    return Ok(Received::Closed)
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Ok(Received::TimedOut)
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    // ---- Broker operations -------------------------------------------------------------

    /// Produces `messages` to `queue` of `topic` in one batch, acknowledged as the broker's
    /// flush mode says. Returns the first message's offset, or the code of a refused
    /// request or part.
    pub fn produce(
        &mut self,
        topic: &str,
        queue: u32,
        messages: &[OutgoingMessage<'_>],
    ) -> Result<u64, ErrorCode> {
        self.try_produce(topic, queue, messages, FlushExpectation::BrokerDefault)
            .unwrap_or_else(|error| panic!("produce to {}: {error}", self.peer))
    }

    /// Like [`WireClient::produce`] with a flush expectation, returning I/O errors (a
    /// connection that closed under it) instead of panicking.
    pub fn try_produce(
        &mut self,
        topic: &str,
        queue: u32,
        messages: &[OutgoingMessage<'_>],
        flush: FlushExpectation,
    ) -> io::Result<Result<u64, ErrorCode>> {
        let batch = encode_batch(topic, messages);
        let count = u32::try_from(messages.len()).expect("a batch count fits u32");
        let request = ProduceRequest::single(
            TEST_PRODUCER_GROUP,
            topic,
            QueueId(queue),
            count,
            &batch,
            flush,
        );
        let frame = self.exchange(&request, &batch)?;
        Ok(
            match decode_response::<ProduceRequest, ProduceResponse>(&frame) {
                Err((code, _)) => Err(code),
                Ok((response, _)) => {
                    assert_eq!(response.parts.len(), 1, "one result per part: {response:?}");
                    let part = &response.parts[0];
                    match known_code(part.error_code) {
                        ErrorCode::Ok => {
                            assert_eq!(part.record_count, count, "records stored: {response:?}");
                            Ok(part.first_offset.0)
                        }
                        code => Err(code),
                    }
                }
            },
        )
    }

    /// Sends a produce request as given (several parts, any flush) and returns the response.
    pub fn produce_request(
        &mut self,
        request: &ProduceRequest,
        payload: &[u8],
    ) -> Result<ProduceResponse, Refused> {
        self.call::<_, ProduceResponse>(request, payload)
            .map(|(response, _)| response)
    }

    /// Pulls up to `max_messages` from `offset` of `queue` of `topic`, waiting up to
    /// `max_wait_ms` for new ones, returning only tags matching `tag_expression`.
    pub fn pull(
        &mut self,
        topic: &str,
        queue: u32,
        offset: u64,
        max_messages: u32,
        max_wait_ms: u32,
        tag_expression: &str,
    ) -> Result<(PullResponse, Vec<ParsedMessage>), Refused> {
        self.pull_with(&pull_request(
            topic,
            queue,
            offset,
            max_messages,
            max_wait_ms,
            tag_expression,
        ))
    }

    /// Sends `request` and parses the records of its response (checking that there are as
    /// many as the response says).
    pub fn pull_with(
        &mut self,
        request: &PullRequest,
    ) -> Result<(PullResponse, Vec<ParsedMessage>), Refused> {
        let (response, payload) = self.call::<_, PullResponse>(request, &[])?;
        Ok(parse_pull(request, response, &payload))
    }

    /// Every message of `queue` of `topic` from `offset` to the queue's current end, pulled
    /// in as many pulls as needed (within [`DEADLINE`]).
    pub fn pull_to_end(&mut self, topic: &str, queue: u32, offset: u64) -> Vec<ParsedMessage> {
        let (_, end) = self
            .queue_offsets(topic, queue)
            .unwrap_or_else(|refused| panic!("offsets of {topic}/{queue}: {refused:?}"));
        let started = Instant::now();
        let mut next = offset;
        let mut messages = Vec::new();
        while next < end {
            assert!(
                started.elapsed() < DEADLINE,
                "pulling {topic}/{queue} from {offset} to {end} took over {DEADLINE:?} \
                 (at {next})"
            );
            // A short wait covers a record counted in the end offset but not yet readable.
            let (response, batch) = self
                .pull(topic, queue, next, 1024, 1000, "")
                .unwrap_or_else(|refused| panic!("pull {topic}/{queue} at {next}: {refused:?}"));
            if response.status == PullStatus::NoNewMessages {
                continue;
            }
            assert!(
                response.status == PullStatus::Found && response.next_offset.0 > next,
                "pull of {topic}/{queue} at {next} (end {end}) made no progress: {response:?}"
            );
            next = response.next_offset.0;
            messages.extend(batch);
        }
        messages
    }

    /// Commits `offset` for `consumer_group` on `queue` of `topic`.
    pub fn commit_offset(
        &mut self,
        consumer_group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<(), Refused> {
        let request = CommitConsumerOffsetRequest {
            consumer_group: consumer_group.to_owned(),
            topic: topic.to_owned(),
            queue_id: QueueId(queue),
            offset: QueueOffset(offset),
        };
        self.call::<_, CommitConsumerOffsetResponse>(&request, &[])
            .map(drop)
    }

    /// The offset `consumer_group` committed on `queue` of `topic`, if any.
    pub fn query_offset(
        &mut self,
        consumer_group: &str,
        topic: &str,
        queue: u32,
    ) -> Result<Option<u64>, Refused> {
        let request = QueryConsumerOffsetRequest {
            consumer_group: consumer_group.to_owned(),
            topic: topic.to_owned(),
            queue_id: QueueId(queue),
        };
        self.call::<_, QueryConsumerOffsetResponse>(&request, &[])
            .map(|(response, _)| response.offset.map(|offset| offset.0))
    }

    /// The minimum and maximum (next to be written) offsets of `queue` of `topic`.
    pub fn queue_offsets(&mut self, topic: &str, queue: u32) -> Result<(u64, u64), Refused> {
        let request = GetQueueOffsetsRequest {
            topic: topic.to_owned(),
            queue_id: QueueId(queue),
        };
        self.call::<_, GetQueueOffsetsResponse>(&request, &[])
            .map(|(response, _)| (response.min_offset.0, response.max_offset.0))
    }

    // ---- Name server operations --------------------------------------------------------

    /// The route of `topic` (from a name server).
    pub fn topic_route(&mut self, topic: &str) -> Result<GetTopicRouteResponse, Refused> {
        let request = GetTopicRouteRequest {
            topic: topic.to_owned(),
        };
        self.call::<_, GetTopicRouteResponse>(&request, &[])
            .map(|(response, _)| response)
    }
}

/// A pull request of the tests' consumer group, without a commit.
pub fn pull_request(
    topic: &str,
    queue: u32,
    offset: u64,
    max_messages: u32,
    max_wait_ms: u32,
    tag_expression: &str,
) -> PullRequest {
    PullRequest {
        consumer_group: TEST_CONSUMER_GROUP.to_owned(),
        topic: topic.to_owned(),
        queue_id: QueueId(queue),
        offset: QueueOffset(offset),
        max_messages,
        max_bytes: PULL_MAX_BYTES,
        tag_expression: tag_expression.to_owned(),
        max_wait_ms,
        commit_offset: None,
    }
}

/// Reads a response frame to a `Q` request: the `R` header and payload, or the error.
/// Panics if the frame is not a response to `Q`'s opcode or does not decode.
pub fn decode_response<Q: WireHeader, R: WireHeader>(frame: &Frame) -> Result<(R, Bytes), Refused> {
    assert_eq!(
        (R::OPCODE, R::ROLE),
        (Q::OPCODE, HeaderRole::Response),
        "{} does not answer {}",
        std::any::type_name::<R>(),
        std::any::type_name::<Q>()
    );
    assert_eq!(
        frame.kind(),
        FrameKind::Response,
        "not a response: {frame:?}"
    );
    let code = frame
        .error_code()
        .unwrap_or_else(|unknown| panic!("unknown error code in {frame:?}: {unknown:?}"));
    if code != ErrorCode::Ok {
        let message = frame
            .error_detail()
            .map(|detail| detail.message.to_string())
            .unwrap_or_else(|error| format!("(undecodable error detail: {error})"));
        return Err((code, message));
    }
    assert_eq!(
        frame.envelope().opcode_number(),
        Q::OPCODE.as_u16(),
        "response to the wrong opcode: {frame:?}"
    );
    let response = frame
        .deserialize_header::<R>()
        .unwrap_or_else(|error| panic!("{:?} response header: {error}", Q::OPCODE));
    Ok((response, frame.payload().clone()))
}

/// Parses a pull response's payload, checking the record count against the header and each
/// record's queue against the request.
pub fn parse_pull(
    request: &PullRequest,
    response: PullResponse,
    payload: &[u8],
) -> (PullResponse, Vec<ParsedMessage>) {
    let messages = parse_records(payload).unwrap_or_else(|problem| {
        panic!(
            "pull of {}/{} at {}: bad records: {problem} ({response:?})",
            request.topic, request.queue_id, request.offset
        )
    });
    assert_eq!(
        messages.len(),
        response.record_count as usize,
        "record_count against the records in the payload: {response:?}"
    );
    for message in &messages {
        assert_eq!(
            (message.topic.as_str(), message.queue_id),
            (request.topic.as_str(), request.queue_id.0),
            "a record of another queue in a pull of {}/{}",
            request.topic,
            request.queue_id
        );
    }
    (response, messages)
}

/// The error code with this number; panics on a number this build does not know.
pub fn known_code(number: u16) -> ErrorCode {
    ErrorCode::try_from(number).unwrap_or_else(|_| panic!("unknown error code number {number}"))
}
