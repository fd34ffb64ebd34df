//! wsgate-loadgen: a load generator for wsgate. Workers are single-threaded mio event loops
//! holding up to their open-file limit (less 2,000) of connections each as small state machines; the coordinator runs them (a
//! thread, or child processes of this binary) in lockstep phases and adds up their reports.
//!
//! # Layout
//!
//! Each module uses only those listed above it (the graph has no cycle):
//!
//! - `plan`: what a run does, as plain data (scenarios, targets, one share per worker). Uses
//!   nothing.
//! - `stats`: counters, burst and REST accounts, histograms. Uses nothing.
//! - `sys`: open-file limits and resident set sizes. Uses nothing.
//! - `payload`: the events' `data` (send time and sequence) and its fast reader. Uses `plan`.
//! - `msg`: the worker protocol (controls, progress, final report) and its sinks. Uses `stats`.
//! - `client` (`ws`, `http`, `conn`, `polling`, `mod`): WebSocket client framing, HTTP/1.1
//!   requests and responses, one connection's state and socket, Engine.IO long-polling (the
//!   sid, one long-poll `GET` and one `POST` at a time), and every connection of a worker,
//!   giving messages to a `Handler`. Uses `plan`.
//! - `verify`: loss, burst, closed-loop and latency accounting, expected deliveries. Uses
//!   `plan`, `stats`.
//! - `offsets`: each connection's position in its room's stream (epoch, last offset), the
//!   `since` of its resume, and the gap and duplicate account (chat). Uses `stats`.
//! - `scenario` (`actions`, `fanout`, `chat`, `push`): each scenario's driving logic, over
//!   the `Actions` trait (`push`: the REST senders). Uses `plan`, `stats`, `payload`.
//! - `sio`: Socket.IO over Engine.IO (either transport) as the loadgen speaks it (the `CONNECT`, the
//!   built-in events with acks, each server message read into the session's terms). Uses
//!   `payload`, `plan`.
//! - `session`: the connections as wsgate clients, native or Socket.IO (join, publish, each
//!   message counted and verified); the `Handler` and the `Actions`. Uses `client`, `sio`,
//!   `verify`, `offsets`, `scenario::actions`, `msg`, `payload`, `stats`, `plan`.
//! - `worker`: the worker's event loop and phases, and a worker process's `main`. Uses
//!   `session`, `scenario`, `client`, `msg`, `sys`, `plan`.
//! - `summary`: a run's figures and table. Uses `plan`, `stats`.
//! - `report`: the SVG/HTML drawing of a summary. Uses `summary`.
//! - `coordinator`: spawns the workers, paces the phases, merges the reports. Uses `worker`,
//!   `msg`, `verify`, `scenario::push`, `summary`, `stats`, `sys`, `plan`.
//! - `cli`: the command line, turned into a plan. Uses `plan`, `sys`.

pub mod cli;
mod client;
pub mod coordinator;
pub mod msg;
mod offsets;
mod payload;
pub mod plan;
mod report;
mod scenario;
mod session;
mod sio;
pub mod stats;
pub mod summary;
pub mod sys;
mod verify;
pub mod worker;

pub use coordinator::{run, RunOptions};
pub use summary::Summary;
