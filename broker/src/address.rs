//! Network addresses in the broker's config: [`Endpoint`] (`host:port`, where clients or
//! name servers are reached) and the listen address (`ip:port`, what the shards bind).
//!
//! Parsing here is syntax only. Whether an address makes sense where it is used (no port 0,
//! no `0.0.0.0` to advertise, …) is decided by `config`'s validation, which knows the key.
//! Nothing here resolves a host name: a config check never touches the network.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest host name (RFC 1035: 253 characters in text form).
pub const MAX_HOST_NAME_BYTES: usize = 253;
/// Longest label of a host name (RFC 1035).
pub const MAX_HOST_LABEL_BYTES: usize = 63;

/// The host part of an [`Endpoint`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name, resolved when it is used (never by the config check).
    Name(String),
}

/// A `host:port` where a peer is reached: an IP address (IPv6 in brackets, `[::1]:9876`)
/// or a DNS name, and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where.
    pub host: Host,
    /// Which port.
    pub port: u16,
}

impl Endpoint {
    /// Whether the host is an unspecified IP address (`0.0.0.0` or `::`), which nobody can
    /// connect to.
    pub fn is_unspecified(&self) -> bool {
        matches!(self.host, Host::Ip(ip) if ip.is_unspecified())
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(address: SocketAddr) -> Self {
        Endpoint {
            host: Host::Ip(address.ip()),
            port: address.port(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(address.into());
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("{text:?} has no port; expected host:port"));
        };
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port number (0 to 65535)"))?;
        if host.contains(':') || host.starts_with('[') {
            return Err(format!(
                "{host:?} is not an IP address; an IPv6 address goes in brackets, e.g. [::1]:9876"
            ));
        }
        validate_host_name(host)?;
        Ok(Endpoint {
            host: Host::Name(host.to_owned()),
            port,
        })
    }
}

/// Checks the syntax of a DNS name: dot-separated labels of letters, digits and `-`, not
/// starting or ending with `-`; the last label is not all digits (that is a mistyped IPv4
/// address such as `10.0.0.256`).
fn validate_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty; expected host:port".into());
    }
    if host.len() > MAX_HOST_NAME_BYTES {
        return Err(format!(
            "the host name is longer than {MAX_HOST_NAME_BYTES} characters"
        ));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= MAX_HOST_LABEL_BYTES
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        if !valid {
            return Err(format!(
                "{host:?} is neither an IP address nor a valid host name (labels of 1 to \
                 {MAX_HOST_LABEL_BYTES} letters, digits or '-', separated by dots)"
            ));
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|byte| byte.is_ascii_digit()))
    {
        return Err(format!("{host:?} is not a valid IP address"));
    }
    Ok(())
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|reason: String| {
            serde::de::Error::custom(format!(
                "{reason} (expected host:port, e.g. 10.0.0.1:9876 or ns1.example.com:9876)"
            ))
        })
    }
}

/// Parses the listen address: an IP address and a port (no host name: the broker binds
/// it). For `#[serde(deserialize_with)]`.
pub fn deserialize_socket_address<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP address and port, e.g. 0.0.0.0:10911 or [::]:10911 \
             (a host name is not allowed here)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_ip_addresses_and_host_names() {
        let endpoint: Endpoint = "10.0.0.1:9876".parse().unwrap();
        assert_eq!(endpoint.host, Host::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(endpoint.port, 9876);
        let endpoint: Endpoint = "[::1]:9876".parse().unwrap();
        assert_eq!(endpoint.to_string(), "[::1]:9876");
        let endpoint: Endpoint = "ns-1.example.com:9876".parse().unwrap();
        assert_eq!(endpoint.host, Host::Name("ns-1.example.com".into()));
        assert_eq!(endpoint.to_string(), "ns-1.example.com:9876");
        assert!("0.0.0.0:1".parse::<Endpoint>().unwrap().is_unspecified());
    }

    #[test]
    fn endpoints_refuse_what_is_not_host_and_port() {
        for (text, reason) in [
            ("10.0.0.1", "has no port"),
            ("10.0.0.1:99999", "not a port number"),
            ("10.0.0.256:9876", "not a valid IP address"),
            ("::1:9876", "in brackets"),
            (":9876", "the host is empty"),
            (
                "bad_host:9876",
                "neither an IP address nor a valid host name",
            ),
            (
                "-bad.example:9876",
                "neither an IP address nor a valid host name",
            ),
            ("a..b:9876", "neither an IP address nor a valid host name"),
        ] {
            let error = text.parse::<Endpoint>().unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
