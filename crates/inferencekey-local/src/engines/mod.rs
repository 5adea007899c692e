//! Built-in engines. They are simulations: deterministic, weightless, fast. They make
//! a local workload answer in the right shapes with plausible content, nothing more.

pub(crate) mod embedding;
pub(crate) mod text;
