//! Test support, compiled only with the `testing` feature (the fuzz targets, the benches and
//! the integration tests enable it; a release build of `wsgate` has none of it): entry
//! points into crate-private code for the fuzzers ([`fuzz`]) and the benches ([`bench`]), and
//! the fault injection of the containment tests. Not API: free to change with its users.

pub mod bench;
pub mod fuzz;

pub use crate::panic::{Faults, PANIC_IN_CONNECTION, PANIC_IN_SHARD};
