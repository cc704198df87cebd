//! Where weights and their descriptions come from: Hugging Face folders and Hub ids
//! (`source`), safetensors and GGUF files (`checkpoint`, `gguf`), PEFT adapters (`adapter`),
//! configs (`config`), tokenizers rebuilt from GGUF metadata (`gguf_tokenizer`), and the checks
//! that two endpoints make a pair (`pair`).

pub mod adapter;
pub mod checkpoint;
pub mod config;
pub mod files;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod layout;
pub mod mergekit;
pub mod pages;
pub mod pair;
pub mod source;
pub mod tokenizer;
