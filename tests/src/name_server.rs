//! [`NameServer`]: the real `spillway-nameserver` binary on `127.0.0.1:0`, killed when
//! dropped.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus};

use spillway_wire::message::GetTopicRouteResponse;
use spillway_wire::ErrorCode;
use tempfile::TempDir;

use crate::artifacts::name_server_binary;
use crate::server_process::ServerProcess;
use crate::wait::{poll_until, DEADLINE};
use crate::wire_client::{Refused, WireClient};

/// A running name server.
#[derive(Debug)]
pub struct NameServer {
    process: ServerProcess,
    /// Holds the log file; removed on drop.
    _directory: TempDir,
}

impl NameServer {
    /// Starts a name server listening on a free loopback port, with `extra_arguments` after
    /// `--listen 127.0.0.1:0` (e.g. `["--broker-timeout-ms", "1500", "--scan-interval-ms",
    /// "200"]`), and waits until it serves.
    pub fn start(extra_arguments: &[&str]) -> NameServer {
        let directory = tempfile::Builder::new()
            .prefix("nameserver-")
            .tempdir()
            .expect("a temporary directory for the name server's log");
        let mut command = Command::new(name_server_binary());
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_arguments);
        let process = ServerProcess::start(
            "name server",
            command,
            &directory.path().join("nameserver.log"),
        );
        NameServer {
            process,
            _directory: directory,
        }
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.process.address()
    }

    /// A new connection to it.
    pub fn connect(&self) -> WireClient {
        WireClient::connect(self.address())
    }

    /// Sends `signal` and waits for the exit status.
    pub fn stop(&mut self, signal: i32) -> ExitStatus {
        self.process.stop(signal)
    }

    /// The tail of its log, for panic messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Asks for `topic`'s route until `done` holds for the answer (within [`DEADLINE`]) and
    /// returns that answer.
    pub fn wait_for_route(
        &self,
        topic: &str,
        what: &str,
        done: impl Fn(&Result<GetTopicRouteResponse, Refused>) -> bool,
    ) -> Result<GetTopicRouteResponse, Refused> {
        let mut client = self.connect();
        poll_until(what, DEADLINE, || {
            let route = client.topic_route(topic);
            done(&route).then_some(route)
        })
    }

    /// Asks for `topic`'s route until the name server says it has none (within
    /// [`DEADLINE`]).
    pub fn wait_until_route_is_gone(&self, topic: &str, what: &str) {
        let route = self.wait_for_route(topic, what, route_is_gone);
        assert!(route_is_gone(&route));
    }
}

/// Whether a route answer says the topic has no route.
pub fn route_is_gone(route: &Result<GetTopicRouteResponse, Refused>) -> bool {
    matches!(route, Err((ErrorCode::TopicNotFound, _)))
}
