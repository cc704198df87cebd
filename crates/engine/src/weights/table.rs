//! A blend as a table: for every tensor (slot) of the flat buffers, how its working weights are
//! made from the endpoints (two; three for a plane; four with a fourth endpoint D). The line with one α is a table whose rows are all alike (and
//! has its own faster pass, [`crate::weights::blend`]); slerp and α per layer give each tensor
//! a row of its own. One pass over the buffer applies any table.

use crate::weights::blend::{blend_reference, Element};
use crate::weights::flat::FlatLayout;
use candle_core::{CpuStorage, Layout};
use rayon::prelude::*;

/// How one tensor's working weights are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlotMix {
    /// A copy of endpoint A, bit for bit.
    A,
    /// A copy of endpoint B, bit for bit.
    B,
    /// The line at this α: `blend::lerp_scalar`, the blend's own element.
    Line(f32),
    /// ca·A + cb·B (slerp's two coefficients).
    Pair(f32, f32),
    /// A + kb·(B − A) + kc·(C − A): a point of the plane through three endpoints.
    Plane(f32, f32),
    /// A + kb·(B − A) + kc·(C − A) + kd·(D − A): a point among four endpoints.
    Space(f32, f32, f32),
}

impl SlotMix {
    /// The line at α, with the vertices as copies. α is narrowed to the kernels' f32 first,
    /// so an α that rounds to 0 or 1 is a copy on every path, as the reference treats it.
    pub fn line(alpha: f64) -> Self {
        let a = alpha as f32;
        if a == 0.0 {
            SlotMix::A
        } else if a == 1.0 {
            SlotMix::B
        } else {
            SlotMix::Line(a)
        }
    }

    /// The plane at (kb, kc), narrowed first; (0, 0) is A and (1, 0) is B, as copies.
    pub fn plane(kb: f64, kc: f64) -> Self {
        match (kb as f32, kc as f32) {
            (0.0, 0.0) => SlotMix::A,
            (1.0, 0.0) => SlotMix::B,
            (kb, kc) => SlotMix::Plane(kb, kc),
        }
    }

    /// Among four endpoints at (kb, kc, kd), narrowed first; with kd = 0 it is the plane's
    /// row (D then costs nothing, and the plane's bits stay its own).
    pub fn space(kb: f64, kc: f64, kd: f64) -> Self {
        match kd as f32 {
            0.0 => Self::plane(kb, kc),
            kd => SlotMix::Space(kb as f32, kc as f32, kd),
        }
    }
}

/// One element of a [`SlotMix::Pair`]: ca·a + cb·b in f32 (two products and a sum, never
/// fused, so every kernel gives these bits).
#[inline(always)]
pub fn combine_scalar(a: f32, b: f32, ca: f32, cb: f32) -> f32 {
    ca * a + cb * b
}

/// A pair row over a slice, element by element.
pub fn combine_reference<T: Element>(w: &mut [T], a: &[T], b: &[T], ca: f32, cb: f32) {
    for ((w, &a), &b) in w.iter_mut().zip(a).zip(b) {
        *w = T::from_f32(combine_scalar(a.to_f32(), b.to_f32(), ca, cb));
    }
}

/// One element of a [`SlotMix::Plane`], in f32: the two deltas scaled and added to A, in
/// that order (as mergekit's task arithmetic sums its deltas before adding them to the base).
#[inline(always)]
pub fn plane_scalar(a: f32, b: f32, c: f32, kb: f32, kc: f32) -> f32 {
    a + (kb * (b - a) + kc * (c - a))
}

/// A plane row over a slice, element by element.
pub fn plane_reference<T: Element>(w: &mut [T], a: &[T], b: &[T], c: &[T], kb: f32, kc: f32) {
    for (((w, &a), &b), &c) in w.iter_mut().zip(a).zip(b).zip(c) {
        *w = T::from_f32(plane_scalar(a.to_f32(), b.to_f32(), c.to_f32(), kb, kc));
    }
}

/// One element of a [`SlotMix::Space`], in f32: the plane's with D's delta summed last.
#[inline(always)]
pub fn space_scalar([a, b, c, d]: [f32; 4], [kb, kc, kd]: [f32; 3]) -> f32 {
    a + (kb * (b - a) + kc * (c - a) + kd * (d - a))
}

/// A row among four endpoints over a slice, element by element.
pub fn space_reference<T: Element>(w: &mut [T], [a, b, c, d]: [&[T]; 4], k: [f32; 3]) {
    for (i, w) in w.iter_mut().enumerate() {
        let x = [a[i], b[i], c[i], d[i]].map(T::to_f32);
        *w = T::from_f32(space_scalar(x, k));
    }
}

/// Elements per rayon task.
const CHUNK: usize = 1 << 16;

/// The plain twin: slot by slot, element by element, one thread.
pub fn apply_reference<T: Element>(
    layout: &FlatLayout,
    table: &[SlotMix],
    w: &mut [T],
    a: &[T],
    b: &[T],
    [c, d]: [Option<&[T]>; 2],
) {
    assert_eq!(layout.slots.len(), table.len());
    for (s, mix) in layout.slots.iter().zip(table) {
        let r = s.offset..s.offset + s.len;
        let c = c.map(|c| &c[r.clone()]);
        let d = d.map(|d| &d[r.clone()]);
        let (w, a, b) = (&mut w[r.clone()], &a[r.clone()], &b[r]);
        match *mix {
            SlotMix::A => w.copy_from_slice(a),
            SlotMix::B => w.copy_from_slice(b),
            SlotMix::Line(alpha) => blend_reference(w, a, b, alpha),
            SlotMix::Pair(ca, cb) => combine_reference(w, a, b, ca, cb),
            SlotMix::Plane(kb, kc) => {
                plane_reference(w, a, b, c.expect("a plane row needs C"), kb, kc)
            }
            SlotMix::Space(kb, kc, kd) => {
                let (c, d) = (c.expect("a row of four needs C"), d.expect("and D"));
                space_reference(w, [a, b, c, d], [kb, kc, kd])
            }
        }
    }
}

/// One rayon task: a chunk of one slot and its row of the table.
struct Task<'a, T> {
    w: &'a mut [T],
    a: &'a [T],
    b: &'a [T],
    c: &'a [T],
    d: &'a [T],
    mix: SlotMix,
}

/// The fast pass: every slot split into chunks, all chunks in parallel, each through its
/// element type's vectorised kernel.
pub fn apply<'a, T: Element>(
    layout: &FlatLayout,
    table: &[SlotMix],
    w: &'a mut [T],
    a: &'a [T],
    b: &'a [T],
    [c, d]: [Option<&'a [T]>; 2],
) {
    assert_eq!(layout.slots.len(), table.len());
    assert!(
        c.is_some() || !table.iter().any(|m| matches!(m, SlotMix::Plane(..))),
        "a plane row needs C"
    );
    assert!(
        (c.is_some() && d.is_some()) || !table.iter().any(|m| matches!(m, SlotMix::Space(..))),
        "a row of four needs C and D"
    );
    let mut tasks: Vec<Task<'a, T>> = Vec::new();
    let mut rest: &'a mut [T] = w;
    let mut at = 0;
    for (s, &mix) in layout.slots.iter().zip(table) {
        // Slots are disjoint, in increasing order: split them off the buffer one by one.
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(s.offset - at);
        let (slot, tail) = tail.split_at_mut(s.len);
        rest = tail;
        at = s.offset + s.len;
        let (sa, sb) = (&a[s.offset..at], &b[s.offset..at]);
        let sc = c.map_or(&[][..], |c| &c[s.offset..at]);
        let sd = d.map_or(&[][..], |d| &d[s.offset..at]);
        // C and D, where given, split into the chunks A and B split into.
        let part = |x: &'a [T], i: usize, n: usize| {
            if x.is_empty() {
                x
            } else {
                &x[i * CHUNK..i * CHUNK + n]
            }
        };
        for (i, ((w, a), b)) in slot
            .chunks_mut(CHUNK)
            .zip(sa.chunks(CHUNK))
            .zip(sb.chunks(CHUNK))
            .enumerate()
        {
            let n = w.len();
            let (c, d) = (part(sc, i, n), part(sd, i, n));
            tasks.push(Task { w, a, b, c, d, mix });
        }
    }
    tasks.into_par_iter().for_each(|t| match t.mix {
        SlotMix::A => t.w.copy_from_slice(t.a),
        SlotMix::B => t.w.copy_from_slice(t.b),
        SlotMix::Line(alpha) => T::blend_chunk(t.w, t.a, t.b, alpha),
        SlotMix::Pair(ca, cb) => T::combine_chunk(t.w, t.a, t.b, ca, cb),
        SlotMix::Plane(kb, kc) => T::plane_chunk(t.w, t.a, t.b, t.c, kb, kc),
        SlotMix::Space(kb, kc, kd) => T::space_chunk(t.w, [t.a, t.b, t.c, t.d], [kb, kc, kd]),
    });
}

/// The table's pass as an in-place op on the working buffer: one parallel pass on the CPU,
/// one launch of blend.cu's `table_pass` on a GPU. Endpoints C and D, where there are any,
/// are read beside the op's two.
pub struct TableOp<'a> {
    pub layout: &'a FlatLayout,
    pub table: &'a [SlotMix],
    pub extra: [Option<&'a candle_core::Tensor>; 2],
}

impl candle_core::InplaceOp3 for TableOp<'_> {
    fn name(&self) -> &'static str {
        "lerpscope-table"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        lw: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<()> {
        let n = self.layout.total;
        let (w0, a0, b0) = (lw.start_offset(), la.start_offset(), lb.start_offset());
        let (l, t) = (self.layout, self.table);
        let held = self.extra.map(|x| x.map(|x| x.storage_and_layout()));
        let mut extra = [None, None];
        for (e, h) in extra.iter_mut().zip(&held) {
            if let Some((s, l)) = h {
                match &**s {
                    candle_core::Storage::Cpu(s) => *e = Some((s, l.start_offset())),
                    _ => candle_core::bail!("table blend: C and D must be on the CPU"),
                }
            }
        }
        macro_rules! run {
            ($v:ident, $w:expr, $a:expr, $b:expr) => {{
                let mut cd = [None, None];
                for (x, e) in cd.iter_mut().zip(extra) {
                    *x = match e {
                        None => None,
                        Some((CpuStorage::$v(x), x0)) => Some(&x[x0..x0 + n]),
                        Some(_) => candle_core::bail!("table blend: C's or D's dtype differs"),
                    };
                }
                apply(
                    l,
                    t,
                    &mut $w[w0..w0 + n],
                    &$a[a0..a0 + n],
                    &$b[b0..b0 + n],
                    cd,
                )
            }};
        }
        match (w, a, b) {
            (CpuStorage::F32(w), CpuStorage::F32(a), CpuStorage::F32(b)) => run!(F32, w, a, b),
            (CpuStorage::F16(w), CpuStorage::F16(a), CpuStorage::F16(b)) => run!(F16, w, a, b),
            (CpuStorage::BF16(w), CpuStorage::BF16(a), CpuStorage::BF16(b)) => {
                run!(BF16, w, a, b)
            }
            _ => candle_core::bail!("table blend: buffers must share one of f32, f16, bf16"),
        }
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        w: &mut candle_core::CudaStorage,
        lw: &Layout,
        a: &candle_core::CudaStorage,
        la: &Layout,
        b: &candle_core::CudaStorage,
        lb: &Layout,
    ) -> candle_core::Result<()> {
        let starts = [lw, la, lb].map(|l| l.start_offset());
        cuda::pass(self, w, [a, b], starts)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{SlotMix, TableOp};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaStorage, Result, Storage};

    /// blend.cu's `TableRow`: one slot and how its elements are made.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Row {
        offset: i64,
        len: i64,
        tile0: i64,
        kind: i32,
        k: [f32; 3],
    }
    const _: () = assert!(std::mem::size_of::<Row>() == 40);

    /// blend.cu's TABLE_TILE, and the block width.
    const TILE: usize = 4096;
    const THREADS: u32 = 256;

    fn address(s: &CudaStorageSlice, dev: &candle_core::CudaDevice) -> Result<u64> {
        let stream = dev.cuda_stream();
        Ok(match s {
            CudaStorageSlice::F32(x) => x.device_ptr(&stream).0,
            CudaStorageSlice::F16(x) => x.device_ptr(&stream).0,
            CudaStorageSlice::BF16(x) => x.device_ptr(&stream).0,
            _ => candle_core::bail!("table blend: buffers must share one of f32, f16, bf16"),
        })
    }

    /// Every slot in one launch: the table's rows copied up (a few KiB), the buffers read at
    /// their layouts' offsets.
    pub fn pass(
        op: &TableOp,
        w: &mut CudaStorage,
        [a, b]: [&CudaStorage; 2],
        [w0, a0, b0]: [usize; 3],
    ) -> Result<()> {
        let dev = w.device.clone();
        let (suffix, elem) = match w.slice {
            CudaStorageSlice::F32(_) => ("f32", 4),
            CudaStorageSlice::F16(_) => ("f16", 2),
            CudaStorageSlice::BF16(_) => ("bf16", 2),
            _ => candle_core::bail!("table blend: buffers must share one of f32, f16, bf16"),
        };
        if [a, b].iter().any(|s| s.dtype() != w.dtype()) {
            candle_core::bail!("table blend: A's or B's dtype differs");
        }
        // C and D as device addresses at their offsets (0 where absent).
        let mut extra = [0u64; 2];
        for (e, t) in extra.iter_mut().zip(op.extra) {
            let Some(t) = t else { continue };
            let (s, l) = t.storage_and_layout();
            match &*s {
                Storage::Cuda(c) if c.dtype() == w.dtype() => {
                    *e = address(&c.slice, &dev)? + (l.start_offset() * elem) as u64;
                }
                _ => candle_core::bail!(
                    "table blend: C and D must be on the GPU in the buffers' dtype"
                ),
            }
        }
        let mut rows = Vec::with_capacity(op.table.len());
        let mut tiles = 0usize;
        for (slot, mix) in op.layout.slots.iter().zip(op.table) {
            let (kind, k) = match *mix {
                SlotMix::A => (0, [0.0; 3]),
                SlotMix::B => (1, [0.0; 3]),
                SlotMix::Line(alpha) => (2, [alpha, 0.0, 0.0]),
                SlotMix::Pair(ca, cb) => (3, [ca, cb, 0.0]),
                SlotMix::Plane(kb, kc) => (4, [kb, kc, 0.0]),
                SlotMix::Space(kb, kc, kd) => (5, [kb, kc, kd]),
            };
            let needs = [kind >= 4, kind == 5];
            if needs.iter().zip(extra).any(|(&n, e)| n && e == 0) {
                candle_core::bail!("table blend: {} needs C (and D) on the GPU", slot.name);
            }
            if slot.len == 0 {
                continue;
            }
            rows.push(Row {
                offset: slot.offset as i64,
                len: slot.len as i64,
                tile0: tiles as i64,
                kind,
                k,
            });
            tiles += slot.len.div_ceil(TILE);
        }
        if rows.is_empty() {
            return Ok(());
        }
        // SAFETY: Row is plain numbers; its bytes are what blend.cu reads.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                rows.as_ptr().cast::<u8>(),
                rows.len() * std::mem::size_of::<Row>(),
            )
        };
        let table = dev.clone_htod(bytes)?;
        let func = dev.get_or_load_custom_func(
            &format!("table_pass_{suffix}"),
            "lerpscope_blend",
            crate::weights::blend::PTX,
        )?;
        let at = |base: u64, start: usize| base + (start * elem) as u64;
        let (wp, ap, bp) = (
            at(address(&w.slice, &dev)?, w0),
            at(address(&a.slice, &dev)?, a0),
            at(address(&b.slice, &dev)?, b0),
        );
        let table_ptr = table.device_ptr(&dev.cuda_stream()).0;
        let (count, n_tiles) = (rows.len() as i32, tiles as i64);
        let mut builder = func.builder();
        builder.arg(&table_ptr);
        builder.arg(&count);
        builder.arg(&n_tiles);
        builder.arg(&wp);
        builder.arg(&ap);
        builder.arg(&bp);
        builder.arg(&extra[0]);
        builder.arg(&extra[1]);
        let cfg = LaunchConfig {
            grid_dim: (tiles.clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: every row addresses a slot inside the buffers (the layout's offsets), and
        // rows that read C or D have them.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::blend::blend;
    use half::{bf16, f16};

    fn layout(lens: &[usize]) -> FlatLayout {
        FlatLayout::new(
            lens.iter()
                .enumerate()
                .map(|(i, &n)| (format!("t{i}"), vec![n])),
            candle_core::DType::F32,
        )
    }

    fn endpoints<T: Element>(n: usize) -> (Vec<T>, Vec<T>) {
        let a = (0..n)
            .map(|i| T::from_f32((i as f32 * 0.37).sin() * 3.0))
            .collect();
        let b = (0..n)
            .map(|i| T::from_f32((i as f32 * 0.11 + 1.0).cos() - 0.25))
            .collect();
        (a, b)
    }

    /// Every kind of row, slots that span several chunks and slots shorter than a SIMD lane:
    /// the fast pass writes its twin's bits in f32, f16 and bf16.
    #[test]
    fn the_pass_writes_the_references_bits() {
        let l = layout(&[70_001, 13, 9, 130_000, 3, 70_000, 17]);
        let table = [
            SlotMix::Line(0.3),
            SlotMix::A,
            SlotMix::Pair(0.25, -1.5),
            SlotMix::Plane(0.7, 0.5),
            SlotMix::B,
            SlotMix::Space(0.3, -0.4, 1.25),
            SlotMix::Space(0.0, 0.0, 0.5),
        ];
        fn check<T: Element + PartialEq + std::fmt::Debug>(l: &FlatLayout, t: &[SlotMix]) {
            let (a, b) = endpoints::<T>(l.total);
            let c: Vec<T> = (0..l.total)
                .map(|i| T::from_f32((i as f32 * 0.05).sin() + 0.5))
                .collect();
            let d: Vec<T> = (0..l.total)
                .map(|i| T::from_f32((i as f32 * 0.013).cos() * 2.0 - 0.1))
                .collect();
            let mut fast = vec![T::from_f32(9.0); l.total];
            let mut slow = fast.clone();
            apply(l, t, &mut fast, &a, &b, [Some(&c), Some(&d)]);
            apply_reference(l, t, &mut slow, &a, &b, [Some(&c), Some(&d)]);
            assert_eq!(fast, slow);
        }
        check::<f32>(&l, &table);
        check::<f16>(&l, &table);
        check::<bf16>(&l, &table);
    }

    /// Every f16 and bf16 bit pattern (subnormals, ∞, NaN, overflow) against shuffled
    /// partners: the vectorised pair and plane rows round as the reference does.
    #[test]
    fn every_half_bit_pattern_combines_like_the_reference() {
        fn every<T: Element>(from_bits: fn(u16) -> T) {
            let a: Vec<T> = (0..=u16::MAX).map(from_bits).collect();
            let b: Vec<T> = (0..=u16::MAX)
                .map(|i| from_bits(i.wrapping_mul(40503).rotate_left(5)))
                .collect();
            let c: Vec<T> = (0..=u16::MAX)
                .map(|i| from_bits(i.wrapping_mul(7919).rotate_left(9)))
                .collect();
            for (ca, cb) in [(0.7, 0.3), (1.3, -0.45), (-2.0, 3.0), (0.1, 1e-3)] {
                let mut fast = a.clone();
                let mut slow = a.clone();
                // Offsets that misalign the destination, so the scalar head and tail run too.
                T::combine_chunk(&mut fast[3..], &a[3..], &b[3..], ca, cb);
                combine_reference(&mut slow[3..], &a[3..], &b[3..], ca, cb);
                let mut plane_fast = a.clone();
                let mut plane_slow = a.clone();
                T::plane_chunk(&mut plane_fast[5..], &a[5..], &b[5..], &c[5..], ca, cb);
                plane_reference(&mut plane_slow[5..], &a[5..], &b[5..], &c[5..], ca, cb);
                fast.extend(plane_fast);
                slow.extend(plane_slow);
                for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                    let (f, s) = (f.to_f32(), s.to_f32());
                    assert!(
                        f.to_bits() == s.to_bits() || (f.is_nan() && s.is_nan()),
                        "({ca}, {cb}) element {i}: {f} vs {s}"
                    );
                }
            }
        }
        every(f16::from_bits);
        every(bf16::from_bits);
    }

    /// A plane row is the plane computed in f64 within f32 rounding, and at kc = 0 it is the
    /// line below ½ (the same operations in the same order).
    #[test]
    fn plane_rows_are_the_plane() {
        let l = layout(&[5000]);
        let (a, b) = endpoints::<f32>(l.total);
        let c: Vec<f32> = (0..l.total).map(|i| (i as f32 * 0.05).cos()).collect();
        let mut w = vec![0f32; l.total];
        apply(
            &l,
            &[SlotMix::Plane(0.7, -0.5)],
            &mut w,
            &a,
            &b,
            [Some(&c), None],
        );
        for i in 0..l.total {
            let (x, y, z) = (a[i] as f64, b[i] as f64, c[i] as f64);
            let want = x + 0.7 * (y - x) - 0.5 * (z - x);
            assert!(
                (w[i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "{i}"
            );
        }
        let mut line = vec![0f32; l.total];
        apply(
            &l,
            &[SlotMix::Plane(0.3, 0.0)],
            &mut w,
            &a,
            &b,
            [Some(&c), None],
        );
        apply(&l, &[SlotMix::Line(0.3)], &mut line, &a, &b, [None, None]);
        assert_eq!(w, line);
    }

    /// A row of four is the point computed in f64 within f32 rounding, and `SlotMix::space`
    /// with D's weight 0 is the plane's own row.
    #[test]
    fn rows_of_four_are_the_point() {
        let l = layout(&[5000]);
        let (a, b) = endpoints::<f32>(l.total);
        let c: Vec<f32> = (0..l.total).map(|i| (i as f32 * 0.05).cos()).collect();
        let d: Vec<f32> = (0..l.total)
            .map(|i| (i as f32 * 0.02).sin() - 1.0)
            .collect();
        let mut w = vec![0f32; l.total];
        let row = SlotMix::space(0.7, -0.5, 0.25);
        apply(&l, &[row], &mut w, &a, &b, [Some(&c), Some(&d)]);
        for i in 0..l.total {
            let (x, y, z, u) = (a[i] as f64, b[i] as f64, c[i] as f64, d[i] as f64);
            let want = x + 0.7 * (y - x) - 0.5 * (z - x) + 0.25 * (u - x);
            assert!(
                (w[i] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "{i}"
            );
        }
        assert_eq!(SlotMix::space(0.7, -0.5, 1e-60), SlotMix::Plane(0.7, -0.5));
        assert_eq!(SlotMix::space(1.0, 0.0, 0.0), SlotMix::B);
    }

    /// An α that narrows to 0 or 1 in f32 is a copy, on the fast path as on the reference.
    #[test]
    fn alphas_that_round_to_a_vertex_are_copies() {
        assert_eq!(SlotMix::line(0.3 * (10.0 / 3.0)), SlotMix::B);
        assert_eq!(SlotMix::line(1e-60), SlotMix::A);
        assert_eq!(SlotMix::plane(1.0 - 1e-17, 1e-60), SlotMix::B);
        assert_eq!(SlotMix::plane(0.5, 0.25), SlotMix::Plane(0.5, 0.25));
    }

    /// A table of equal line rows is the line's own pass, bit for bit (vertices included).
    #[test]
    fn equal_rows_are_the_line() {
        let l = layout(&[70_001, 13, 9, 130_000]);
        let (a, b) = endpoints::<f32>(l.total);
        for alpha in [0.0, 0.3, 0.5, 0.7, 1.0, -0.4, 2.5] {
            let table = vec![SlotMix::line(alpha); l.slots.len()];
            let mut rows = a.clone();
            let mut line = a.clone();
            apply(&l, &table, &mut rows, &a, &b, [None, None]);
            blend(&mut line, &a, &b, alpha as f32);
            for s in &l.slots {
                let r = s.offset..s.offset + s.len;
                assert_eq!(rows[r.clone()], line[r], "α {alpha} slot {}", s.name);
            }
        }
    }
}
