//! `spillway-nameserver`: the stateless route directory brokers register with.
//!
//! Not built yet: it arrives with the cluster issue.

fn main() {
    eprintln!("spillway-nameserver is not built yet; see the cluster issue");
    std::process::exit(2);
}
