//! `tlschat-bench`: a load generator for tlschat (and, for side-by-side figures, nats-server
//! and `ncat --chat --ssl`), in the spirit of `nats bench` and `redis-benchmark`.
//!
//! - [`target`]: how to speak to each server over TLS: connect, subscribe, publish, ping.
//! - [`modes`]: the workloads: `fanout`, `echo`, `connect`, `hold`, `udp`.
//! - [`probe`]: the server's CPU time and memory, read from `/proc` (`--server-pid`).
//! - [`report`]: counts, rates, latency percentiles (HDR histogram), CPU per operation.
//!
//! Every run is bounded by a count and a deadline, and talks only to the address it is given
//! (loopback in the scripts). The numbers to compare between servers are **server CPU per
//! operation**: on a 2-core machine the load generator competes with the server, so throughput
//! follows the server's efficiency but also the generator's.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod modes;
pub mod probe;
pub mod report;
pub mod target;

pub use report::Report;
