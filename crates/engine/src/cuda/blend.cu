// The in-place blend on the GPU: w = a + alpha * (b - a) over a whole flat buffer in one
// launch. The CUDA twin of blend.rs (which holds the scalar reference, lerp_scalar).
//
// - 128-bit loads and stores (4 floats or 8 halves per thread per step), grid-stride;
//   a scalar path for buffers whose three pointers are not all 16-byte aligned.
// - Arithmetic in f32 for every dtype; alpha = 0 and alpha = 1 copy the endpoint's bits.
// - The formula switches form at alpha = 0.5 like the CPU kernel, and every product and sum is
//   rounded on its own (__fmul_rn/__fadd_rn are never contracted into an FMA, and build.rs
//   passes --fmad=false besides), so the result equals the CPU kernel's bit for bit.

#include "elements.cuh"

__device__ __forceinline__ float lerp1(float a, float b, float alpha) {
    const float d = __fsub_rn(b, a);
    return alpha < 0.5f ? __fadd_rn(a, __fmul_rn(alpha, d))
                        : __fsub_rn(b, __fmul_rn(__fsub_rn(1.0f, alpha), d));
}

__device__ __forceinline__ bool aligned16(const void* w, const void* a, const void* b) {
    return ((reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(a) |
             reinterpret_cast<uintptr_t>(b)) & 15) == 0;
}

template <typename E>
__device__ void blend(typename E::T* __restrict__ w, const typename E::T* __restrict__ a,
                      const typename E::T* __restrict__ b, float alpha, size_t n) {
    typedef typename E::T T;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const bool copy_a = alpha == 0.0f, copy_b = alpha == 1.0f;
    const int lanes = 16 / sizeof(T);
    size_t body = 0;
    if (aligned16(w, a, b)) {
        body = n / lanes * lanes;
        const uint4* av = reinterpret_cast<const uint4*>(a);
        const uint4* bv = reinterpret_cast<const uint4*>(b);
        uint4* wv = reinterpret_cast<uint4*>(w);
        for (size_t i = tid; i < body / lanes; i += stride) {
            if (copy_a) { wv[i] = av[i]; continue; }
            if (copy_b) { wv[i] = bv[i]; continue; }
            uint4 x = av[i], y = bv[i], z;
            const T* xs = reinterpret_cast<const T*>(&x);
            const T* ys = reinterpret_cast<const T*>(&y);
            T* zs = reinterpret_cast<T*>(&z);
#pragma unroll
            for (int l = 0; l < lanes; l++)
                zs[l] = E::store(lerp1(E::load(xs[l]), E::load(ys[l]), alpha));
            wv[i] = z;
        }
    }
    for (size_t i = body + tid; i < n; i += stride) {
        w[i] = copy_a ? a[i] : copy_b ? b[i] : E::store(lerp1(E::load(a[i]), E::load(b[i]), alpha));
    }
}

extern "C" __global__ void blend_f32(float* w, const float* a, const float* b, float alpha,
                                     size_t n) {
    blend<F32>(w, a, b, alpha, n);
}

extern "C" __global__ void blend_f16(__half* w, const __half* a, const __half* b, float alpha,
                                     size_t n) {
    blend<F16>(w, a, b, alpha, n);
}

extern "C" __global__ void blend_bf16(__nv_bfloat16* w, const __nv_bfloat16* a,
                                      const __nv_bfloat16* b, float alpha, size_t n) {
    blend<BF16>(w, a, b, alpha, n);
}

// The merged-adapter pass (lowrank.rs holds the CPU kernel and its slow twin):
//   out[i, j] = src[i, j] + sum_r (u[i, r] * c_r) * d[r, j],  c_r = keep for r < split, else take,
// accumulated in f32 with one fused multiply-add per rank, in the CPU kernel's order, so the
// two agree bit for bit in f32. out may be src (in place). Blocks cover columns along x and
// stride over rows along y.

template <typename E>
__device__ void lowrank_merge(typename E::T* out, const typename E::T* src, const float* u,
                              const float* d, size_t rows, size_t cols, size_t rank,
                              size_t split, float keep, float take) {
    const size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    for (size_t i = blockIdx.y; i < rows; i += gridDim.y) {
        float acc = E::load(src[i * cols + j]);
        for (size_t r = 0; r < rank; r++) {
            const float k = __fmul_rn(u[i * rank + r], r < split ? keep : take);
            acc = __fmaf_rn(k, d[r * cols + j], acc);
        }
        out[i * cols + j] = E::store(acc);
    }
}

extern "C" __global__ void lowrank_merge_f32(float* out, const float* src, const float* u,
                                             const float* d, size_t rows, size_t cols,
                                             size_t rank, size_t split, float keep, float take) {
    lowrank_merge<F32>(out, src, u, d, rows, cols, rank, split, keep, take);
}

extern "C" __global__ void lowrank_merge_f16(__half* out, const __half* src, const float* u,
                                             const float* d, size_t rows, size_t cols,
                                             size_t rank, size_t split, float keep, float take) {
    lowrank_merge<F16>(out, src, u, d, rows, cols, rank, split, keep, take);
}

extern "C" __global__ void lowrank_merge_bf16(__nv_bfloat16* out, const __nv_bfloat16* src,
                                              const float* u, const float* d, size_t rows,
                                              size_t cols, size_t rank, size_t split, float keep,
                                              float take) {
    lowrank_merge<BF16>(out, src, u, d, rows, cols, rank, split, keep, take);
}

// The same pass over every changed tensor of an adapter pair's working copy in one launch
// (`merge_all` in adapter_weights.rs), the source being the base's version or the blend of
// both sides' replacements (rounded to the dtype, as the CPU writes it before adding the
// updates), with the same arithmetic in the same order, so it too equals the CPU bit for bit.
// A table of items (one per tensor), each cut into tiles of MERGE_ROWS rows × blockDim.x
// columns, a block per tile; a thread keeps its column of d for MERGE_RANKS ranks in
// registers across the tile's rows, so d is read once per tile rather than once per row.

#define MERGE_ROWS 32
#define MERGE_RANKS 16

struct MergeItem {
    void* out;
    const void* src;    // the base's version (read when not blended)
    const void* a_src;  // A's and B's versions to blend, or null
    const void* b_src;
    const float* u;     // [rows, rank] (rank 0: no update)
    const float* d;     // [rank, cols]
    long long rows, cols, tile0;
    int rank, split, col_blocks, pad;
};

static_assert(sizeof(MergeItem) == 88, "MergeItem layout is shared with adapter_weights.rs");

template <typename E>
__device__ void merge_tiles(const MergeItem* items, int n_items, long long tiles, float alpha,
                            float keep, float take) {
    typedef typename E::T T;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        int lo = 0, hi = n_items - 1;
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (items[mid].tile0 <= tile) lo = mid; else hi = mid - 1;
        }
        const MergeItem& it = items[lo];
        const long long t = tile - it.tile0;
        const long long j = (t % it.col_blocks) * blockDim.x + threadIdx.x;
        const long long i0 = (t / it.col_blocks) * MERGE_ROWS;
        if (j >= it.cols) continue;
        const int rows = (int)min((long long)MERGE_ROWS, it.rows - i0);
        T* out = static_cast<T*>(it.out);
        float acc[MERGE_ROWS];
#pragma unroll
        for (int q = 0; q < MERGE_ROWS; q++) {
            if (q >= rows) continue;
            const long long idx = (i0 + q) * it.cols + j;
            T v;
            if (it.a_src) {
                const T a = static_cast<const T*>(it.a_src)[idx];
                const T b = static_cast<const T*>(it.b_src)[idx];
                v = alpha == 0.0f ? a
                  : alpha == 1.0f ? b
                  : E::store(lerp1(E::load(a), E::load(b), alpha));
            } else {
                v = static_cast<const T*>(it.src)[idx];
            }
            if (it.rank == 0) out[idx] = v;  // the bits as they are (a copy or the blend)
            acc[q] = E::load(v);
        }
        if (it.rank == 0) continue;
        for (int r0 = 0; r0 < it.rank; r0 += MERGE_RANKS) {
            float dr[MERGE_RANKS];
#pragma unroll
            for (int r = 0; r < MERGE_RANKS; r++)
                dr[r] = r0 + r < it.rank ? it.d[(long long)(r0 + r) * it.cols + j] : 0.0f;
#pragma unroll
            for (int q = 0; q < MERGE_ROWS; q++) {
                if (q >= rows) continue;
                const float* u = it.u + (i0 + q) * it.rank;
#pragma unroll
                for (int r = 0; r < MERGE_RANKS; r++) {
                    const int rr = r0 + r;
                    if (rr < it.rank) {
                        const float k = __fmul_rn(u[rr], rr < it.split ? keep : take);
                        acc[q] = __fmaf_rn(k, dr[r], acc[q]);
                    }
                }
            }
        }
#pragma unroll
        for (int q = 0; q < MERGE_ROWS; q++)
            if (q < rows) out[(i0 + q) * it.cols + j] = E::store(acc[q]);
    }
}

#define MERGE_TILES(NAME, E)                                                                   \
    extern "C" __global__ void NAME(const MergeItem* items, int n_items, long long tiles,     \
                                    float alpha, float keep, float take) {                    \
        merge_tiles<E>(items, n_items, tiles, alpha, keep, take);                              \
    }
MERGE_TILES(merge_tiles_f32, F32)
MERGE_TILES(merge_tiles_f16, F16)
MERGE_TILES(merge_tiles_bf16, BF16)

// The blend table's pass (table.rs) over a whole flat buffer in one launch: a row per slot,
// each cut into tiles of TABLE_TILE elements, a block per tile. Each row kind's element is
// table.rs's scalar twin with every product and sum rounded on its own, so the pass equals
// the CPU's bit for bit.

#define TABLE_TILE 4096

struct TableRow {
    long long offset, len, tile0;
    int kind;  // 0: copy A, 1: copy B, 2: line at k0, 3: k0·A + k1·B, 4: plane, 5: four
    float k0, k1, k2;
};

static_assert(sizeof(TableRow) == 40, "TableRow layout is shared with table.rs");

template <typename E>
__device__ void table_pass(const TableRow* rows, int n_rows, long long tiles,
                           typename E::T* __restrict__ w, const typename E::T* __restrict__ a,
                           const typename E::T* __restrict__ b,
                           const typename E::T* __restrict__ c,
                           const typename E::T* __restrict__ d) {
    typedef typename E::T T;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        int lo = 0, hi = n_rows - 1;
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (rows[mid].tile0 <= tile) lo = mid; else hi = mid - 1;
        }
        const TableRow r = rows[lo];
        const long long start = (tile - r.tile0) * TABLE_TILE;
        const long long end = min(start + TABLE_TILE, r.len);
        for (long long i = start + threadIdx.x; i < end; i += blockDim.x) {
            const long long at = r.offset + i;
            T out;
            if (r.kind == 0) {
                out = a[at];
            } else if (r.kind == 1) {
                out = b[at];
            } else if (r.kind == 2) {
                out = E::store(lerp1(E::load(a[at]), E::load(b[at]), r.k0));
            } else if (r.kind == 3) {
                out = E::store(__fadd_rn(__fmul_rn(r.k0, E::load(a[at])),
                                         __fmul_rn(r.k1, E::load(b[at]))));
            } else {
                const float x = E::load(a[at]);
                float s = __fadd_rn(__fmul_rn(r.k0, __fsub_rn(E::load(b[at]), x)),
                                    __fmul_rn(r.k1, __fsub_rn(E::load(c[at]), x)));
                if (r.kind == 5) s = __fadd_rn(s, __fmul_rn(r.k2, __fsub_rn(E::load(d[at]), x)));
                out = E::store(__fadd_rn(x, s));
            }
            w[at] = out;
        }
    }
}

#define TABLE_PASS(NAME, E)                                                                    \
    extern "C" __global__ void NAME(const TableRow* rows, int n_rows, long long tiles,        \
                                    E::T* w, const E::T* a, const E::T* b, const E::T* c,     \
                                    const E::T* d) {                                          \
        table_pass<E>(rows, n_rows, tiles, w, a, b, c, d);                                     \
    }
TABLE_PASS(table_pass_f32, F32)
TABLE_PASS(table_pass_f16, F16)
TABLE_PASS(table_pass_bf16, BF16)
