//! Q4_K and Q4_1 products on AMX, the tile multiply unit of Sapphire Rapids and later Xeons:
//! one `tdpbssd` multiplies up to sixteen activation rows by a pair of tiles' sixteen weight
//! rows over one sub-block (Q4_1: one block) of 32 values, where VNNI takes eight `vpdpbusd`
//! per activation row. It pays where many rows share the weights (a prefill, the first token
//! of K columns); a decode step stays on VNNI.
//!
//! The tiles need no second layout: a 512-bit load of a pair of tiles (four bytes of each of
//! sixteen rows), split into low and high nibbles, is one row of AMX's weight operand as it is
//! (groups of four bytes per output row), and in the order low, high, quarter by quarter, those
//! rows meet the activation bytes of the sub-block in order, so the activation operand is the
//! Q8_K (Q4_1: Q8_1F) rows read in place. Each sub-block's integer sums come back from the tile
//! unit and take their scales (Q4_K's in 32 bits); the mins and the float steps are the VNNI
//! kernel's own. The sums are the same exact integers, so the results are the VNNI kernel's and
//! the plain twin's bit for bit (held by a test).

use super::lanes::{At, Lanes, Z16};
use super::q4_1;
use super::q4k::{self, QS, SB_BYTES, SCALES};
use crate::quantized::k_rows::X_BYTES;
use std::arch::{asm, x86_64::*};

/// Activation rows one tile multiply takes.
pub const ROWS: usize = 16;

/// Whether this CPU and kernel let this process use AMX's integer tiles (and the 512-bit
/// instructions the rest of the kernel uses). `LERPSCOPE_NO_AMX=1` says no, to compare.
pub fn has_amx() -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMX.get_or_init(|| {
        std::env::var_os("LERPSCOPE_NO_AMX").is_none_or(|v| v.is_empty() || v == "0")
            && super::has_vnni512()
            && detect()
    })
}

#[cfg(target_os = "linux")]
fn detect() -> bool {
    let (leaf7, osxsave) = (__cpuid_count(7, 0), __cpuid(1).ecx & (1 << 27) != 0);
    let tile_int8 = leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 25) != 0;
    if !tile_int8 || !osxsave {
        return false;
    }
    let (lo, _hi): (u32, u32);
    // SAFETY: XSAVE is enabled (above); XCR0 is readable at any privilege level.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") _hi, options(nomem, nostack)) };
    // XTILECFG and XTILEDATA state (bits 17, 18).
    if lo & (0b11 << 17) != 0b11 << 17 {
        return false;
    }
    // Linux hands the tile data state out on request, once per process:
    // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call that changes only this process's permission.
    unsafe {
        asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
             in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack))
    };
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn detect() -> bool {
    false
}

/// The tile registers configured for `rows` activation rows, released when dropped: tmm0–3
/// sums (rows × 16 × i32), tmm4–5 activations (rows × 32 bytes), tmm6–7 weights (8 × 64
/// bytes), so that four sub-blocks are in flight before their sums are stored.
pub struct Session(());

#[repr(C, align(64))]
struct Config([u8; 64]);

impl Session {
    /// # Safety
    /// [`has_amx`] is true.
    pub unsafe fn new(rows: usize) -> Self {
        assert!((1..=ROWS).contains(&rows));
        let mut c = Config([0; 64]);
        c.0[0] = 1; // palette 1
        let shapes = [(rows, 64u16); 4]
            .into_iter()
            .chain([(rows, 32); 2])
            .chain([(8, 64); 2]);
        for (t, (r, bytes)) in shapes.enumerate() {
            c.0[16 + 2 * t..18 + 2 * t].copy_from_slice(&bytes.to_le_bytes());
            c.0[48 + t] = r as u8;
        }
        asm!("ldtilecfg [{}]", in(reg) c.0.as_ptr(), options(nostack, readonly));
        Session(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: a session exists only where AMX is enabled.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// The weight operands and the sums of `N` sub-blocks (Q4_1: blocks) in flight: 8 rows of 64
/// bytes, and up to 16 rows of 16 × i32, each.
#[repr(C, align(64))]
struct Scratch<const N: usize> {
    weights: [[u8; 512]; N],
    sums: [[i32; 256]; N],
}

impl<const N: usize> Scratch<N> {
    /// Uninitialised (12 KB for Q4_K): every byte a kernel reads it writes first, the weights
    /// by their stores and each row of sums by the tile store before it.
    fn uninit() -> std::mem::MaybeUninit<Self> {
        std::mem::MaybeUninit::uninit()
    }

    /// The weights' and the sums' first bytes.
    fn parts(scratch: &mut std::mem::MaybeUninit<Self>) -> (*mut u8, *mut i32) {
        let p = scratch.as_mut_ptr();
        // SAFETY: field addresses only; nothing is read.
        unsafe {
            (
                std::ptr::addr_of_mut!((*p).weights) as *mut u8,
                std::ptr::addr_of_mut!((*p).sums) as *mut i32,
            )
        }
    }
}

/// Each row's sixteen accumulators into `out`, one row after another (AVX-512 F, and `out`
/// holds 16 values a row).
#[inline(always)]
unsafe fn store_rows(acc: &[__m512], out: &mut [f32]) {
    for (r, acc) in acc.iter().enumerate() {
        Z16::store(*acc, out.as_mut_ptr().add(16 * r));
    }
}

/// Four sub-blocks' tile multiplies (`$s` the first), each into its own sums' tile, then the
/// four tiles stored: the stores and loads around the tile unit wait once per four. A row's
/// sub-blocks lie `$xstep` bytes apart in the activations.
macro_rules! four_sub_blocks {
    ($s:literal, $xstep:literal, $a:expr, $stride:expr, $w:expr, $c:expr) => {
        asm!(
            "tilezero tmm0",
            concat!("tileloadd tmm4, [{a} + {stride}*1 + ", $xstep, "*(", $s, "+0)]"),
            concat!("tileloadd tmm6, [{w} + {w_stride}*1 + 512*(", $s, "+0)]"),
            "tdpbssd tmm0, tmm4, tmm6",
            "tilezero tmm1",
            concat!("tileloadd tmm5, [{a} + {stride}*1 + ", $xstep, "*(", $s, "+1)]"),
            concat!("tileloadd tmm7, [{w} + {w_stride}*1 + 512*(", $s, "+1)]"),
            "tdpbssd tmm1, tmm5, tmm7",
            "tilezero tmm2",
            concat!("tileloadd tmm4, [{a} + {stride}*1 + ", $xstep, "*(", $s, "+2)]"),
            concat!("tileloadd tmm6, [{w} + {w_stride}*1 + 512*(", $s, "+2)]"),
            "tdpbssd tmm2, tmm4, tmm6",
            "tilezero tmm3",
            concat!("tileloadd tmm5, [{a} + {stride}*1 + ", $xstep, "*(", $s, "+3)]"),
            concat!("tileloadd tmm7, [{w} + {w_stride}*1 + 512*(", $s, "+3)]"),
            "tdpbssd tmm3, tmm5, tmm7",
            concat!("tilestored [{c} + {c_stride}*1 + 1024*(", $s, "+0)], tmm0"),
            concat!("tilestored [{c} + {c_stride}*1 + 1024*(", $s, "+1)], tmm1"),
            concat!("tilestored [{c} + {c_stride}*1 + 1024*(", $s, "+2)], tmm2"),
            concat!("tilestored [{c} + {c_stride}*1 + 1024*(", $s, "+3)], tmm3"),
            a = in(reg) $a,
            stride = in(reg) $stride,
            w = in(reg) $w,
            w_stride = in(reg) 64usize,
            c = in(reg) $c,
            c_stride = in(reg) 64usize,
            options(nostack),
        )
    };
}

/// One block's tile multiply, its sums stored: a group's last blocks where fewer than four
/// are left.
macro_rules! one_block {
    ($a:expr, $stride:expr, $w:expr, $c:expr) => {
        asm!(
            "tilezero tmm0",
            "tileloadd tmm4, [{a} + {stride}*1]",
            "tileloadd tmm6, [{w} + {w_stride}*1]",
            "tdpbssd tmm0, tmm4, tmm6",
            "tilestored [{c} + {c_stride}*1], tmm0",
            a = in(reg) $a,
            stride = in(reg) $stride,
            w = in(reg) $w,
            w_stride = in(reg) 64usize,
            c = in(reg) $c,
            c_stride = in(reg) 64usize,
            options(nostack),
        )
    };
}

/// A pair of tiles' block of 32 values as AMX's weight operand (8 rows of 64 bytes at `w`):
/// the nibbles of each quarter, low then high, are two rows as they lie (four bytes of each
/// of sixteen rows), and in that order they meet the block's activation bytes in order.
#[inline(always)]
unsafe fn nibble_operand(nibbles: At, w: *mut u8, m4: __m512i) {
    for quarter in 0..4 {
        let bits = Z16::load(nibbles.add(32 * quarter));
        _mm512_store_si512(w.add(128 * quarter) as *mut _, Z16::and(bits, m4));
        _mm512_store_si512(w.add(128 * quarter + 64) as *mut _, Z16::high_nibbles(bits));
    }
}

/// One pair of Q4_K tiles (`blocks` super-blocks of sixteen rows, the second tile `t.next`
/// bytes on) against `rows` activation rows (Q8_K, row r at `x + r·x_stride`), `tile_rows` of
/// them to each tile multiply: each super-block's weights are unpacked once for all of them.
/// `out` holds each row's sixteen outputs, one row after another, as
/// [`q4k::simd::dot_pair_vnni`]'s.
///
/// # Safety
/// A [`Session`] for `tile_rows` rows is open on this thread, and `rows` is a multiple of
/// them; the tiles hold `blocks` super-blocks and every activation row as many Q8_K blocks;
/// `out` holds `rows`·16 values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
pub unsafe fn q4k_pair(
    t: At,
    blocks: usize,
    (x, x_stride): (*const u8, usize),
    tile_rows: usize,
    rows: usize,
    out: &mut [f32],
) {
    debug_assert!((1..=ROWS).contains(&tile_rows) && rows.is_multiple_of(tile_rows));
    debug_assert_eq!(out.len(), rows * 16);
    let mut scratch = Scratch::<8>::uninit();
    let (weights, sums) = Scratch::parts(&mut scratch);
    let m4 = Z16::splat8(0x0F);
    let mut acc = vec![Z16::fzero(); rows];
    let mut ahead = super::Ahead::new(SB_BYTES, blocks, 2, t.next);
    for b in 0..blocks {
        let tb = t.add(b * SB_BYTES).ahead(ahead.offset(b));
        Z16::prefetch(tb, QS);
        for s in 0..8 {
            Z16::prefetch(tb.add(QS + 128 * s), 128);
            nibble_operand(tb.add(QS + 128 * s), weights.add(512 * s), m4);
        }
        for (chunk, acc) in acc.chunks_mut(tile_rows).enumerate() {
            let xb = x.add(chunk * tile_rows * x_stride + b * X_BYTES);
            let a = xb.add(4);
            four_sub_blocks!("0", "32", a, x_stride, weights, sums);
            four_sub_blocks!("4", "32", a, x_stride, weights, sums);
            let mut sumi = [Z16::zero(); ROWS];
            for s in 0..8 {
                let sc = Z16::u8_rows(tb.add(SCALES + 8 * s));
                for (r, sumi) in sumi.iter_mut().enumerate().take(tile_rows) {
                    let dot = _mm512_load_si512(sums.add(256 * s + 16 * r) as *const _);
                    *sumi = Z16::add32(*sumi, Z16::mullo32(dot, sc));
                }
            }
            // The mins and the float steps, four rows at a time, as the VNNI kernel takes
            // them.
            let mut r = 0;
            while r < tile_rows {
                let xr = |i: usize| xb.add((r + i) * x_stride);
                match tile_rows - r {
                    1 => finish::<1>(tb, xr, &sumi[r..], &mut acc[r..]),
                    2 => finish::<2>(tb, xr, &sumi[r..], &mut acc[r..]),
                    3 => finish::<3>(tb, xr, &sumi[r..], &mut acc[r..]),
                    _ => finish::<4>(tb, xr, &sumi[r..], &mut acc[r..]),
                }
                r += 4;
            }
        }
    }
    store_rows(&acc, out);
}

/// A super-block's mins' term and float steps for R rows, by the VNNI kernel's own code.
#[inline(always)]
unsafe fn finish<const R: usize>(
    tb: At,
    x: impl Fn(usize) -> *const u8,
    sumi: &[__m512i],
    acc: &mut [__m512],
) {
    let x: [*const u8; R] = std::array::from_fn(x);
    let summ = q4k::simd::mins_term::<Z16, R>(tb, &x);
    let sumi: [__m512i; R] = std::array::from_fn(|r| sumi[r]);
    let mut a: [__m512; R] = std::array::from_fn(|r| acc[r]);
    q4k::simd::accumulate::<Z16, R>(tb, &x, &sumi, &summ, &mut a);
    acc[..R].copy_from_slice(&a);
}

/// Q4_1 blocks whose weight operands are unpacked, and whose sums are in flight, together.
const Q4_1_GROUP: usize = 4;

/// One pair of Q4_1 tiles (`blocks` blocks of sixteen rows, the second tile `t.next` bytes
/// on) against `rows` activation rows (Q8_1F, row r at `x + r·x_stride`), `tile_rows` of
/// them to each tile multiply, as [`q4k_pair`] takes Q4_K's: four blocks' weights unpacked
/// at once for all the rows, each block's integer sums from the tile unit, then the VNNI
/// kernel's float steps in its order (d_w·d_x·Σ, then m_w·s_x, block after block). `out` as
/// [`q4_1::simd::dot_pair_vnni`]'s.
///
/// # Safety
/// As [`q4k_pair`], with Q4_1 blocks and Q8_1F activation blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,gfni")]
pub unsafe fn q4_1_pair(
    t: At,
    blocks: usize,
    (x, x_stride): (*const u8, usize),
    tile_rows: usize,
    rows: usize,
    out: &mut [f32],
) {
    use q4_1::{ACT_BYTES, D, M, QS, TB_BYTES};
    debug_assert!((1..=ROWS).contains(&tile_rows) && rows.is_multiple_of(tile_rows));
    debug_assert_eq!(out.len(), rows * 16);
    let mut scratch = Scratch::<Q4_1_GROUP>::uninit();
    let (weights, sums) = Scratch::parts(&mut scratch);
    let m4 = Z16::splat8(0x0F);
    let mut acc = vec![Z16::fzero(); rows];
    let mut ahead = super::Ahead::new(TB_BYTES, blocks, 2, t.next);
    let mut b = 0;
    while b < blocks {
        let n = Q4_1_GROUP.min(blocks - b);
        for i in 0..n {
            let tb = t.add((b + i) * TB_BYTES).ahead(ahead.offset(b + i));
            Z16::prefetch(tb, TB_BYTES);
            nibble_operand(tb.add(QS), weights.add(512 * i), m4);
        }
        let scales: [_; Q4_1_GROUP] = std::array::from_fn(|i| {
            let tb = t.add((b + i.min(n - 1)) * TB_BYTES);
            (Z16::f16_rows(tb.add(D)), Z16::f16_rows(tb.add(M)))
        });
        for (chunk, acc) in acc.chunks_mut(tile_rows).enumerate() {
            let xb = x.add(chunk * tile_rows * x_stride + b * ACT_BYTES);
            let a = xb.add(super::ACT_QS);
            if n == Q4_1_GROUP {
                four_sub_blocks!("0", "40", a, x_stride, weights, sums);
            } else {
                for i in 0..n {
                    one_block!(
                        a.add(i * ACT_BYTES),
                        x_stride,
                        weights.add(512 * i),
                        sums.add(256 * i)
                    );
                }
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                for (i, &(d, m)) in scales.iter().enumerate().take(n) {
                    let xr = xb.add(r * x_stride + i * ACT_BYTES);
                    let sumi = _mm512_load_si512(sums.add(256 * i + 16 * r) as *const _);
                    *acc = super::add_scaled::<Z16>(*acc, d, super::act_scale(xr), sumi);
                    *acc = Z16::fmadd(m, Z16::fsplat(super::act_scale(xr.add(4))), *acc);
                }
            }
        }
        b += n;
    }
    store_rows(&acc, out);
}
