//! Model configurations: plain data that checkpoint cards record, so they live in the run
//! contract (`s5_run::architecture`, with the paper's named models) and are re-exported here.

pub use s5_run::architecture::*;
