//! The egress proxy's policy core (spec/egress.md).
//!
//! Owns: the route table and its matching, the route file the sidecar reads
//! (rendered on the host, validated in the sidecar), and the request
//! decision pipeline in the order the spec fixes, and the inbound check of
//! streamed responses: pure functions, data in, decision out. On top of them,
//! `proxy` is the I/O shell: sockets, TLS interception, holds, reload and
//! logging.
//!
//! Knows nothing of backends, Docker or how the sidecar is launched.

#![forbid(unsafe_code)]

pub mod ca;
pub mod decision;
pub mod holds;
pub mod host_labels;
pub mod inbound;
pub mod inward;
pub mod proxy;
pub mod relayed;
pub mod ws_frame;

// The route table and file live in the `routes` crate (pure data, no TLS),
// so that supervise and the backends can edit routes without the proxy.
pub use ::routes::file as route_file;
pub use ::routes::table as routes;

pub use decision::{Block, Decision, Request, Tokens, decide, decide_response};
pub use route_file::{Edited, RouteEdit, RouteFile, RouteFileError, RouteSpec, edit, load, render, render_keeping};
pub use routes::{AuthSlot, RouteTable, TableRoute, Target, ambiguous_path, normalize_host};
