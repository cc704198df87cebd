//! lerpscope's engine: two fine-tunes of one model (A and B) held side by side, the working
//! weights θ(α) = θ_A + α·(θ_B − θ_A) re-blended in place by one fused pass, models that read
//! those weights, and generation from them. It knows nothing of terminals, command lines or
//! evaluation; the lerpscope binary, its UI and its benchmarks all drive this one API.

pub mod adapter;
pub mod adapter_weights;
pub mod alpha;
mod arch;
pub mod blend;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod dtype_choice;
mod engine;
pub mod error;
pub mod export;
pub mod few_rows;
pub mod fixtures;
pub mod generate;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod guard;
pub mod lowrank;
pub mod memory;
pub mod model;
pub mod pair;
pub mod pair_weights;
pub mod sampling;
pub mod source;
pub mod threads;
pub mod token_info;
pub mod token_stream;
pub mod weights;

pub use alpha::{Alpha, AlphaError, AlphaRange, IntoAlpha, MAX_ABS_ALPHA};
pub use engine::{
    build_model, dtype_name, parse_dtype, ColumnsMode, DeviceChoice, Engine, LoadOptions, PairInfo,
    Standalone, TextScore,
};
pub use error::{Error, ErrorKind, Result};
pub use generate::{perplexity, Cancel, Generation, GenerationParams, Generator, Step, StopReason};
pub use memory::{check_host_memory, device_memory, device_name, memory_fit};
pub use sampling::SamplingParams;
pub use threads::{on_pool, pin_thread_count};
pub use token_info::TokenInfo;
