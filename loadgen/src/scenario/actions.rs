//! What a scenario may do with its worker's connections during the measured phase: look at
//! one, publish from it, churn it. The worker implements it; scenarios name nothing above it.

/// A worker's connections as a scenario drives them, by local index. Scenarios take it as a
/// generic parameter (no `dyn`).
pub(crate) trait Actions {
    /// Connections of the worker.
    fn len(&self) -> usize;
    /// Whether connection `idx` is open (authenticated, and joined where the scenario joins).
    fn is_open(&self, idx: usize) -> bool;
    /// Publishes connection `idx` has sent so far.
    fn published(&self, idx: usize) -> u64;
    /// Closed-loop publishes of connection `idx` not yet seen back by every member.
    fn in_flight(&self, idx: usize) -> u32;
    /// Publishes one event, sent at `now`, from connection `idx` (if open) to its room.
    fn publish(&mut self, idx: usize, now: u64, echo: bool);
    /// Closes connection `idx` normally and reconnects it at once.
    fn churn(&mut self, idx: usize, now: u64);
    /// A pseudo-random number.
    fn rand(&mut self) -> u64;
}
