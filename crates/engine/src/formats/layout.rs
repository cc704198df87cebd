//! How a tensor stored by llama.cpp differs from its Hugging Face counterpart, and the
//! transforms both ways: the GGUF reader applies [`Layout::to_hf`], the GGUF export
//! [`Layout::to_gguf`], and the tests hold each pair to being inverses.

/// A stored tensor's layout relative to Hugging Face's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    /// The same values in the same order.
    AsIs,
    /// llama.cpp's `llama` architecture: each head's Q or K rows interleaved for its
    /// consecutive-pair RoPE (`w.reshape(heads, 2, d/2, in).swapaxes(1, 2)`).
    RopeInterleaved { heads: usize },
    /// GPT-2's Conv1D weights: `[in, out]` in Hugging Face, `[out, in]` in GGUF.
    Transposed,
    /// Gemma's RMSNorm gains: Hugging Face stores w for (1 + w), llama.cpp stores 1 + w.
    PlusOne,
    /// GPT-NeoX's fused q, k and v rows (weight or bias): head by head in Hugging Face (each
    /// head's q, k, v), all of q, then k, then v in GGUF (llama.cpp's converter regroups them).
    QkvByHead { heads: usize },
}

impl Layout {
    /// The Hugging Face shape of a tensor stored as `stored` (candle order).
    pub fn hf_shape(self, stored: &[usize]) -> Vec<usize> {
        match self {
            Layout::Transposed => stored.iter().rev().copied().collect(),
            _ => stored.to_vec(),
        }
    }

    /// Where each Hugging Face row of a `rows`-row matrix is stored, where the two orders
    /// differ by whole rows (the interleaved Q and K rows); None where they are the same.
    pub fn stored_row_order(self, rows: usize) -> Option<Vec<u32>> {
        match self {
            Layout::RopeInterleaved { heads } => {
                let d = rows / heads;
                Some((0..rows).map(|hf| interleaved(hf, d) as u32).collect())
            }
            Layout::QkvByHead { heads } => Some(
                (0..rows)
                    .map(|hf| qkv_grouped(hf, heads, rows) as u32)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Stored values (`stored` shape, candle order) in Hugging Face's layout.
    pub fn to_hf(self, v: Vec<f32>, stored: &[usize]) -> Vec<f32> {
        match self {
            Layout::AsIs => v,
            Layout::RopeInterleaved { heads } => unpermute_rows(&v, heads, stored[0]),
            Layout::QkvByHead { heads } => {
                gather_rows(&v, stored[0], |hf| qkv_grouped(hf, heads, stored[0]))
            }
            Layout::Transposed => transpose(&v, stored[0], stored[1]),
            // Done in f32, as llama.cpp's converter adds it.
            Layout::PlusOne => v.into_iter().map(|x| x - 1.0).collect(),
        }
    }

    /// Hugging Face values (`shape`, candle order) in the stored layout, and the stored shape.
    pub fn to_gguf(self, v: Vec<f32>, shape: &[usize]) -> (Vec<f32>, Vec<usize>) {
        match self {
            Layout::AsIs => (v, shape.to_vec()),
            Layout::RopeInterleaved { heads } => {
                (permute_rows(&v, heads, shape[0]), shape.to_vec())
            }
            Layout::QkvByHead { heads } => (group_qkv_rows(&v, heads, shape[0]), shape.to_vec()),
            Layout::Transposed => (transpose(&v, shape[0], shape[1]), vec![shape[1], shape[0]]),
            Layout::PlusOne => (v.into_iter().map(|x| x + 1.0).collect(), shape.to_vec()),
        }
    }
}

/// `[rows, cols]` → `[cols, rows]`.
pub fn transpose<T: Copy>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| x[r * cols + c]))
        .collect()
}

/// The stored row of Hugging Face row `hf` in llama.cpp's interleaved order, for heads of `d`
/// rows: HF row `h·d + j·d/2 + i` is stored at `h·d + 2i + j`.
fn interleaved(hf: usize, d: usize) -> usize {
    let (h, r) = (hf / d, hf % d);
    let (j, i) = (r / (d / 2), r % (d / 2));
    h * d + 2 * i + j
}

/// The stored row of Hugging Face row `hf` of GPT-NeoX's fused q, k, v (`rows` rows of
/// `heads` heads): HF row `h·3d + j·d + i` (head h's q, k or v, j = 0, 1, 2) is stored at
/// `j·heads·d + h·d + i`.
fn qkv_grouped(hf: usize, heads: usize, rows: usize) -> usize {
    let d = rows / (3 * heads);
    let (h, r) = (hf / (3 * d), hf % (3 * d));
    let (j, i) = (r / d, r % d);
    j * heads * d + h * d + i
}

/// GPT-NeoX's fused q, k, v rows regrouped as llama.cpp stores them: all of q, then k, then
/// v (the inverse of reading them back through [`qkv_grouped`]).
pub fn group_qkv_rows<T: Copy>(w: &[T], heads: usize, rows: usize) -> Vec<T> {
    let d = rows / (3 * heads);
    // Stored row j·heads·d + h·d + i holds HF row h·3d + j·d + i.
    gather_rows(w, rows, |s| {
        let (j, r) = (s / (heads * d), s % (heads * d));
        let (h, i) = (r / d, r % d);
        h * 3 * d + j * d + i
    })
}

/// `w` (`rows` rows of any element or byte type) with output row `k` taken from row `from(k)`.
fn gather_rows<T: Copy>(w: &[T], rows: usize, from: impl Fn(usize) -> usize) -> Vec<T> {
    let row = w.len() / rows;
    (0..rows)
        .flat_map(|k| w[from(k) * row..(from(k) + 1) * row].iter().copied())
        .collect()
}

/// Undo llama.cpp's Q/K row interleaving.
pub fn unpermute_rows<T: Copy>(w: &[T], heads: usize, rows: usize) -> Vec<T> {
    let d = rows / heads;
    gather_rows(w, rows, |hf| interleaved(hf, d))
}

/// Interleave Q/K rows as llama.cpp stores them (the inverse of [`unpermute_rows`]).
pub fn permute_rows<T: Copy>(w: &[T], heads: usize, rows: usize) -> Vec<T> {
    let d = rows / heads;
    // Stored row 2i + j holds HF row j·d/2 + i.
    gather_rows(w, rows, |s| {
        let (h, r) = (s / d, s % d);
        h * d + (r % 2) * (d / 2) + r / 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp stores a head's rotary rows interleaved, first half with second half: for a
    /// head of 8 rows, HF rows 0..8 sit at 0, 4, 1, 5, 2, 6, 3, 7 (written out, not computed,
    /// so the test shares no formula with the code). At d = 8 the permutation is not its own
    /// inverse: applying llama.cpp's permutation again instead of undoing it (mutation tried)
    /// gives 0, 2, 4, 6, 1, 3, 5, 7 and fails.
    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, d, cols) = (2, 8, 3);
        let stored_order = [0, 4, 1, 5, 2, 6, 3, 7];
        let row =
            |hf_row: usize| -> Vec<f32> { (0..cols).map(|c| (hf_row * 10 + c) as f32).collect() };
        let stored: Vec<f32> = (0..heads)
            .flat_map(|h| stored_order.iter().map(move |&r| h * d + r))
            .flat_map(row)
            .collect();
        let hf: Vec<f32> = (0..heads * d).flat_map(row).collect();
        assert_eq!(unpermute_rows(&stored, heads, heads * d), hf);
        assert_eq!(permute_rows(&hf, heads, heads * d), stored);
    }

    /// llama.cpp stores GPT-NeoX's q, k, v grouped by kind: with two heads of two rows, HF rows
    /// q0 q0' k0 k0' v0 v0' q1 q1' k1 k1' v1 v1' (0..12) sit at 0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10,
    /// 11 (written out, not computed): stored, q0 q0' q1 q1' k0 k0' k1 k1' v0 v0' v1 v1'. The
    /// quantized path reads them through the same map.
    #[test]
    fn qkv_by_head_is_grouped_as_llama_cpp_stores_it() {
        let stored_at = [0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11];
        let layout = Layout::QkvByHead { heads: 2 };
        let hf: Vec<f32> = (0..12).map(|r| r as f32).collect();
        let (stored, _) = layout.to_gguf(hf.clone(), &[12]);
        for (row, &at) in stored_at.iter().enumerate() {
            assert_eq!(stored[at], row as f32, "HF row {row}");
        }
        let order = layout.stored_row_order(12).unwrap();
        assert_eq!(order, stored_at.map(|r| r as u32));
        assert_eq!(layout.to_hf(stored, &[12]), hf);
    }

    /// Every layout's two directions are inverses, shapes included.
    #[test]
    fn each_layout_round_trips() {
        let shape = [12, 2];
        let v: Vec<f32> = (0..24).map(|x| x as f32 * 0.5 - 3.0).collect();
        for layout in [
            Layout::AsIs,
            Layout::RopeInterleaved { heads: 2 },
            Layout::Transposed,
            Layout::PlusOne,
            Layout::QkvByHead { heads: 2 },
        ] {
            let (stored, stored_shape) = layout.to_gguf(v.clone(), &shape);
            assert_eq!(layout.hf_shape(&stored_shape), shape, "{layout:?}");
            assert_eq!(layout.to_hf(stored, &stored_shape), v, "{layout:?}");
        }
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            [1., 4., 2., 5., 3., 6.]
        );
    }
}
