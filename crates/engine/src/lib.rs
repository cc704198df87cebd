//! lerpscope's engine: two fine-tunes of one model (A and B) held side by side, the working
//! weights θ(α) = θ_A + α·(θ_B − θ_A) re-blended in place by one fused pass, models that read
//! those weights, and generation from them. It knows nothing of terminals, command lines or
//! evaluation; the lerpscope binary, its UI and its benchmarks all drive this one API.
//!
//! The house (see the README's Architecture section): `formats/` reads what models come as,
//! `arch/` holds one unit per architecture family, `model/` the forward passes, `weights/` the
//! blended buffers and their kernels, `generate/` the token loop, `export/` writes blends out.
//! What is public is re-exported here; the modules themselves are private.

mod alpha;
mod arch;
mod dtype_choice;
mod engine;
mod error;
mod formats;
mod generate;
mod memory;
mod model;
mod quantized;
mod threads;
mod weights;

pub mod export;
pub mod guard;
pub mod shapes;

pub use alpha::{fixed, shown, Alpha, AlphaError, AlphaRange, IntoAlpha, MAX_ABS_ALPHA};
pub use arch::{config_json, tensors::parameters};
pub use engine::{
    build_model, dtype_name, parse_dtype, ColumnsMode, DeviceChoice, Engine, ExtraEndpoint,
    LoadOptions, PairInfo, Standalone, TextBeyondModel, TextScore, REBLEND_ON_QUANTIZED,
};
pub use error::{candle_text, Error, ErrorKind, Result};
pub use formats::checkpoint::{Checkpoint, TensorFiles};
pub use formats::config::{DecoderConfig, Family, ModelConfig, TokenIds};
pub use formats::mergekit::MergeRecipe;
pub use generate::sampling::{argmax, Sampler, SamplingParams};
pub use generate::token_info::{Alternative, TokenInfo};
pub use generate::{
    copy_to_host, perplexity, Cancel, Generation, GenerationParams, Generator, Step, StopReason,
};
pub use memory::{
    check_host_memory, device_memory, device_name, host_available_memory, memory_fit,
};
pub use model::{fused_requested, Kernels, Model};
pub use quantized::kernel_timing;
pub use threads::{on_pool, pin_thread_count};
pub use weights::full::Buffer;
pub use weights::layers::LayerStrip;
pub use weights::layers::{LayerAlphas, Rule as LayerRule};
pub use weights::slerp::Method;

/// Where an endpoint's files come from: local folders, Hub ids, the hf-hub cache.
pub mod source {
    pub use crate::formats::files::ModelFiles;
    pub use crate::formats::source::*;
}

/// Tokenizers and the text they produce.
pub mod tokens {
    pub use crate::formats::tokenizer::{
        check_tokenizers, load_tokenizer, train_tokenizer, END_OF_TEXT,
    };
    pub use crate::generate::chat::is_formatted;
    pub use crate::generate::token_info::{log_softmax, reference as reference_info};
    pub use crate::generate::token_stream::{
        plain, without_specials, TokenStream, SPECIAL_END, SPECIAL_START,
    };
}

/// The blend kernels and the plain reference each fast path is held to.
pub mod kernels {
    pub use crate::weights::blend::{
        blend, blend_reference, blend_tensor, copy, copy_tensor, lerp_scalar, supported, Element,
    };
    pub use crate::weights::few_rows;
    pub use crate::weights::flat::FlatLayout;
    pub use crate::weights::lowrank;
    pub use crate::weights::slerp;
    pub use crate::weights::table;
}

/// Sampling on the GPU: the kernel's algorithm on the CPU (its twin), the host sampler's fixed
/// arithmetic it repeats, and with the `cuda` feature the device sampler itself.
pub mod device_sampling {
    pub use crate::generate::device_sampling::*;
    pub use crate::generate::softmax_weights::{exp_weight, lane_sum, tempered_mass, MASS_LANES};
}

/// The parts of a model's forward pass that training composes.
pub mod layers {
    pub use crate::model::param::Mix;
}
