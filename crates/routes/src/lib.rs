//! What a bottle may reach, as data: the route table ([`table`]: which
//! host a request may reach and under which `matches`) and the sidecar's
//! route file ([`mod@file`]: rendered on the host, loaded and validated in the
//! sidecar, edited when the operator approves a change).
//!
//! Pure: no I/O, no TLS, no sockets. The egress proxy enforces a table;
//! supervise edits a file; the backends render one. None of that is here.

#![forbid(unsafe_code)]

pub mod file;
pub mod table;

pub use file::{Edited, RouteEdit, RouteFile, RouteFileError, RouteSpec, edit, load, render, render_keeping};
pub use table::{AuthSlot, RouteTable, TableRoute, Target, ambiguous_path, normalize_host};
