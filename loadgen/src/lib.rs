//! wsgate-loadgen: a load generator for wsgate. Workers are single-threaded mio event loops
//! holding up to their open-file limit (less 2,000) of connections each as small state machines; the coordinator runs them (a
//! thread, or child processes of this binary) in lockstep phases and adds up their reports.

pub mod cli;
pub mod coordinator;
mod payload;
pub mod plan;
pub mod push;
pub mod stats;
pub mod summary;
pub mod worker;
mod ws;

pub use coordinator::{run, RunOptions};
pub use summary::Summary;
