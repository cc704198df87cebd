//! Checks that two endpoints can be blended, before a byte of weights is read.
//! Every failure is one line that names the file and, where there is one, the tensor.

use crate::error::{bail, Result};
use crate::formats::checkpoint::Checkpoint;

/// The tensors the blend covers: every floating-point tensor (integer buffers such as
/// position ids are not parameters and are left out).
pub fn blended_names(c: &Checkpoint) -> Vec<String> {
    c.weights
        .tensors
        .iter()
        .filter(|(_, t)| t.is_float())
        .map(|(n, _)| n.clone())
        .collect()
}

/// Where one endpoint ties its head to its embeddings and the other has a head of its own (a
/// fine-tune that trained its head, beside its base), the tied one's head is read as a head of
/// its own: the blend's head moves from one to the other as every other tensor does.
pub fn match_heads(a: &mut Checkpoint, b: &mut Checkpoint) {
    match (
        a.config.tie_word_embeddings(),
        b.config.tie_word_embeddings(),
    ) {
        (true, false) => a.untie(),
        (false, true) => b.untie(),
        _ => {}
    }
}

pub fn validate(a: &Checkpoint, b: &Checkpoint) -> Result<()> {
    let (fa, fb) = (a.files.config.display(), b.files.config.display());
    // Two configs of one class that run different blocks (a Mistral with a window and one
    // without) differ in a field, named below.
    if a.config.computes_as() != b.config.computes_as()
        && a.config.architecture() != b.config.architecture()
    {
        bail!(
            Mismatch,
            "architectures differ: {fa} is {}, {fb} is {}",
            a.config.architecture(),
            b.config.architecture()
        );
    }
    for ((field, va), (_, vb)) in a.config.shape_fields().iter().zip(b.config.shape_fields()) {
        // A and B are matched (`match_heads`); a third endpoint with a head of its own beside
        // a tied A is not, as A and B are laid out first.
        if *field == "tie_word_embeddings" && *va != vb {
            let (own, tied) = match va.as_str() {
                "false" => (&fa, &fb),
                _ => (&fb, &fa),
            };
            bail!(
                Mismatch,
                "{own}'s model has a head of its own and {tied}'s ties its head to its embeddings: give the one with a head of its own as A or B"
            );
        }
        if *va != vb {
            bail!(
                Mismatch,
                "config field {field} differs: {va} in {fa}, {vb} in {fb}"
            );
        }
    }
    // A weight stored as integers (an 8-bit quantized checkpoint, a broken conversion) would
    // be left out of the blend and then be missing from the model: named as what it is.
    for c in [a, b] {
        if let Some((name, t)) = c
            .weights
            .tensors
            .iter()
            .find(|(n, t)| n.ends_with(".weight") && !t.is_float())
        {
            bail!(
                Unsupported,
                "tensor {name} in {} is stored as {:?}; lerpscope reads weights stored as F32, F16, BF16 or F64",
                c.weights.file_of(name).display(),
                t.dtype
            );
        }
    }
    // A layer past the config's count would be left out of the model, which would then run
    // short (transformers loads such a file too, listing the keys as unexpected).
    for c in [a, b] {
        let n = c.config.layers();
        if let Some((name, i)) =
            c.weights.tensors.keys().find_map(|t| {
                Some((t, crate::weights::layers::layer_of(t)?)).filter(|&(_, i)| i >= n)
            })
        {
            bail!(
                Mismatch,
                "tensor {name} in {} is of layer {i}, but {} gives {n} layers",
                c.weights.file_of(name).display(),
                c.files.config.display()
            );
        }
    }
    for (name, ta) in &a.weights.tensors {
        let Some(tb) = b.weights.tensors.get(name) else {
            bail!(
                Mismatch,
                "tensor {name} is in {} but missing from {}",
                a.weights.file_of(name).display(),
                b.files.label
            );
        };
        if ta.shape != tb.shape {
            bail!(
                Mismatch,
                "tensor {name} has shape {:?} in {} but {:?} in {}",
                ta.shape,
                a.weights.file_of(name).display(),
                tb.shape,
                b.weights.file_of(name).display()
            );
        }
        // Float tensors of different widths blend: each is read into the working dtype.
        if ta.dtype != tb.dtype && !(ta.is_float() && tb.is_float()) {
            bail!(
                Mismatch,
                "tensor {name} has dtype {:?} in {} but {:?} in {}",
                ta.dtype,
                a.weights.file_of(name).display(),
                tb.dtype,
                b.weights.file_of(name).display()
            );
        }
    }
    if let Some(name) = b
        .weights
        .tensors
        .keys()
        .find(|n| !a.weights.tensors.contains_key(*n))
    {
        bail!(
            Mismatch,
            "tensor {name} is in {} but missing from {}",
            b.weights.file_of(name).display(),
            a.files.label
        );
    }
    Ok(())
}
