//! The listening sockets: one per shard, all bound to the same address with SO_REUSEPORT,
//! so the kernel spreads incoming connections over the shards.
//!
//! They are bound on the main thread before any shard serves, for two reasons: a port that
//! is taken fails the start with a plain message before anything else happens, and port 0
//! ("any free port", for tests) works — the first socket learns the port and the others
//! bind that same port. Each shard then adopts its socket into its own executor
//! (`glommio::net::TcpListener::from_raw_fd`).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel queues per socket before the shard accepts them.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Sockets bound and listening, one per shard, and the address they share.
pub struct Listeners {
    /// The bound address (the real port when the config said 0).
    pub address: SocketAddr,
    sockets: Vec<Socket>,
}

impl Listeners {
    /// Binds `count` SO_REUSEPORT sockets to `address`.
    pub fn bind(address: SocketAddr, count: usize) -> io::Result<Listeners> {
        let mut sockets = Vec::with_capacity(count);
        let mut bound = address;
        for _ in 0..count {
            let socket = Socket::new(
                Domain::for_address(bound),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_port(true)?;
            socket.set_reuse_address(true)?;
            socket.bind(&bound.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            if bound.port() == 0 {
                bound = socket
                    .local_addr()?
                    .as_socket()
                    .ok_or_else(|| io::Error::other("bound socket has no IP address"))?;
            }
            sockets.push(socket);
        }
        Ok(Listeners {
            address: bound,
            sockets,
        })
    }

    /// The raw descriptors, one per shard, handed over to the shards (who own them from
    /// then on).
    pub fn into_raw_fds(self) -> Vec<RawFd> {
        self.sockets
            .into_iter()
            .map(IntoRawFd::into_raw_fd)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_every_shard_the_same_real_port() {
        let listeners = Listeners::bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_ne!(listeners.address.port(), 0);
        for socket in &listeners.sockets {
            let local = socket.local_addr().unwrap().as_socket().unwrap();
            assert_eq!(local, listeners.address);
        }
        // A connection is accepted by one of them.
        let _client = std::net::TcpStream::connect(listeners.address).unwrap();
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        assert!(Listeners::bind(address, 1).is_err());
    }
}
