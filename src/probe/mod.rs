pub mod schedule;
pub mod stats;
