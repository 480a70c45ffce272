//! `tlschat-bench`: a load generator for tlschat, in the spirit of `nats bench` and
//! `redis-benchmark`.
//!
//! Modes:
//! - [`echo`]: request/response over TLS, `N` connections each sending its share of the
//!   requests one after another (closed loop), so latency is round-trip time.
//! - [`udp`]: the same over signed UDP.
//!
//! Every run is bounded by a request count and a deadline, and talks only to the address it
//! is given (loopback in the scripts). Results: requests/s and latency percentiles from an
//! HDR histogram, as a table or JSON.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod report;
pub mod run;

pub use report::Report;
pub use run::{echo, udp, Load};
