//! The engine: everything that touches tensors, and nothing that touches a terminal.

pub mod blend;
pub mod checkpoint;
pub mod config;
#[allow(clippy::module_inception)]
mod engine;
pub mod few_rows;
pub mod generate;
pub mod model;
pub mod pair;
pub mod sampling;
pub mod source;
pub mod token_stream;
pub mod weights;
pub mod worker;

pub use engine::{
    build_model, device_memory, device_name, dtype_name, memory_fit, parse_dtype, ColumnsMode,
    DeviceChoice, Engine, LoadOptions, PairInfo, Standalone,
};
pub use generate::{Cancel, Generation, GenerationParams, Generator, StopReason};
pub use sampling::SamplingParams;
