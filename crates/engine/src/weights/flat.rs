//! Where every tensor of a model sits in one flat buffer: offsets aligned to 16 bytes, so each
//! tensor is a view and one pass over the buffer touches them all. Shared by the full pair's
//! buffers, the adapters' working copy and the slerp pass.

use crate::error::Result;
use candle_core::{DType, Tensor};
use std::collections::HashMap;

/// Where one tensor sits inside the flat buffers.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    pub len: usize,
}

/// Offsets (in elements) of every tensor, each aligned to 16 bytes.
#[derive(Debug, Clone)]
pub struct FlatLayout {
    pub slots: Vec<Slot>,
    pub total: usize,
}

impl FlatLayout {
    pub fn new(tensors: impl IntoIterator<Item = (String, Vec<usize>)>, dtype: DType) -> Self {
        let align = (16 / dtype.size_in_bytes()).max(1);
        let mut total = 0;
        let slots = tensors
            .into_iter()
            .map(|(name, shape)| {
                let len: usize = shape.iter().product();
                let slot = Slot {
                    name,
                    shape,
                    offset: total,
                    len,
                };
                total += len.div_ceil(align) * align;
                slot
            })
            .collect();
        Self { slots, total }
    }

    /// Views of `flat` for every slot, by tensor name. They share `flat`'s storage.
    pub fn views(&self, flat: &Tensor) -> Result<HashMap<String, Tensor>> {
        self.slots
            .iter()
            .map(|s| {
                let v = flat
                    .narrow(0, s.offset, s.len)?
                    .reshape(s.shape.as_slice())?;
                Ok((s.name.clone(), v))
            })
            .collect()
    }

    pub fn params(&self) -> usize {
        self.slots.iter().map(|s| s.len).sum()
    }
}
