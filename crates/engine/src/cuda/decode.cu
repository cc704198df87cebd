// The fused forward pass of a Llama-family decoder on the GPU (model/fused.rs launches these):
// a few rows at a time (decode steps, batched columns, prompt chunks), every activation in
// f32 in buffers allocated once, the weights read in their own dtype straight from the
// blended working buffer (or from both endpoints, one α per sequence), the key/value cache
// written and read in place. One kernel per stage of a layer instead of candle's dozens of ops,
// and no host round trip inside a step.
//
// Rows: a forward pass covers K sequences × t tokens as m = K·t rows, row r belonging to
// sequence r / t at position pos0 + r % t. Where a kernel sees a slice of the rows, row0 is
// the slice's first row.
//
// The twin these are held to is the candle path of model/llama.rs (tests/gpu.rs).

#include "elements.cuh"

#define WARP 32

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The sum of v over the block (every thread gets it). Called once per kernel.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.f;
        v = warp_sum(v);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    return part[0];
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// ---------------------------------------------------------------------------------------------
// Products y = x · Wᵀ for weights stored [n, k] (nn.Linear), several weights sharing one input
// in one launch ("segments": q, k and v; gate and up; a low-rank update's down factor beside
// its weight). One warp per output, reading the weight row once for all m ≤ MR rows of x.
// With endpoint B, y = keep[s]·(x·Aᵀ) + take[s]·(x·Bᵀ) for row r of sequence s. With
// `accumulate`, y += the result (the residual stream).

#define MAX_SEGS 6

struct Seg {
    const void* wa;  // [n, k], endpoint A or the working weights
    const void* wb;  // endpoint B, or null
    const void* ba;  // bias [n] of A, or null
    const void* bb;  // bias of B, or null
    float* y;        // [m, ldy]
    int n;
    int ldy;
    int accumulate;
    int pad;
};

struct Segs {
    Seg s[MAX_SEGS];
    int start[MAX_SEGS + 1];  // first output of each segment; start[count] = all outputs
    int count;
    int pad;
};

static_assert(sizeof(Seg) == 56, "Seg layout is shared with model/fused.rs");
static_assert(sizeof(Segs) == 376, "Segs layout is shared with model/fused.rs");

// acc[r] = partial dot of weight row w with row r of x, this lane's share (summed over the
// warp by the caller). Rows r ≥ m are left at zero.
template <typename E, int MR>
__device__ __forceinline__ void row_dots(const typename E::T* __restrict__ w,
                                         const float* __restrict__ x, int ldx, int m, int k,
                                         float (&acc)[MR]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < MR; r++) acc[r] = 0.f;
    constexpr int V = E::V;
    if (k % V == 0 && ldx % 4 == 0 && aligned16(w) && aligned16(x)) {
        const uint4* wv = reinterpret_cast<const uint4*>(w);
        const int nv = k / V;
#pragma unroll 2
        for (int i = lane; i < nv; i += WARP) {
            float wf[V];
            E::unpack(__ldg(wv + i), wf);
#pragma unroll
            for (int r = 0; r < MR; r++) {
                if (r < m) {
                    const float4* xr =
                        reinterpret_cast<const float4*>(x + (size_t)r * ldx) + i * (V / 4);
#pragma unroll
                    for (int q = 0; q < V / 4; q++) {
                        const float4 xv = __ldg(xr + q);
                        acc[r] += wf[4 * q] * xv.x + wf[4 * q + 1] * xv.y +
                                  wf[4 * q + 2] * xv.z + wf[4 * q + 3] * xv.w;
                    }
                }
            }
        }
    } else {
        for (int i = lane; i < k; i += WARP) {
            const float wf = E::load(w[i]);
#pragma unroll
            for (int r = 0; r < MR; r++)
                if (r < m) acc[r] += wf * x[(size_t)r * ldx + i];
        }
    }
}

template <typename E, int MR>
__device__ void linear(const Segs& segs, const float* __restrict__ x, int ldx, int m, int k,
                       const float* keep, const float* take, int row0, int rows_per_seq) {
    typedef typename E::T T;
    const int lane = threadIdx.x & 31;
    const int o = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (o >= segs.start[segs.count]) return;  // whole warps leave together
    int si = 0;
    while (o >= segs.start[si + 1]) si++;
    const Seg& g = segs.s[si];
    const int n = o - segs.start[si];
    float a[MR], b[MR];
    row_dots<E, MR>(static_cast<const T*>(g.wa) + (size_t)n * k, x, ldx, m, k, a);
    if (g.wb) {
        row_dots<E, MR>(static_cast<const T*>(g.wb) + (size_t)n * k, x, ldx, m, k, b);
    } else {
#pragma unroll
        for (int r = 0; r < MR; r++) b[r] = 0.f;
    }
#pragma unroll
    for (int r = 0; r < MR; r++) {
        if (r < m) {
            a[r] = warp_sum(a[r]);
            if (g.wb) b[r] = warp_sum(b[r]);
        }
    }
    // Lane r writes row r (every lane holds every sum after the butterfly).
#pragma unroll
    for (int r = 0; r < MR; r++) {
        if (r < m && lane == (r & 31)) {
            const int s = (row0 + r) / rows_per_seq;
            float v = g.wb ? keep[s] * a[r] + take[s] * b[r] : a[r];
            if (g.ba) {
                float bias = E::load(static_cast<const T*>(g.ba)[n]);
                if (g.bb) bias = keep[s] * bias + take[s] * E::load(static_cast<const T*>(g.bb)[n]);
                v += bias;
            }
            float* y = g.y + (size_t)r * g.ldy + n;
            *y = g.accumulate ? *y + v : v;
        }
    }
}

#define LINEAR(NAME, E, MR)                                                                    \
    extern "C" __global__ void NAME(const Segs segs, const float* x, int ldx, int m, int k,   \
                                    const float* keep, const float* take, int row0,          \
                                    int rows_per_seq) {                                      \
        linear<E, MR>(segs, x, ldx, m, k, keep, take, row0, rows_per_seq);                   \
    }
LINEAR(linear_f32_1, F32, 1)
LINEAR(linear_f32_4, F32, 4)
LINEAR(linear_f32_16, F32, 16)
LINEAR(linear_f16_1, F16, 1)
LINEAR(linear_f16_4, F16, 4)
LINEAR(linear_f16_16, F16, 16)
LINEAR(linear_bf16_1, BF16, 1)
LINEAR(linear_bf16_4, BF16, 4)
LINEAR(linear_bf16_16, BF16, 16)

// ---------------------------------------------------------------------------------------------
// Low-rank updates of the factored adapter path, after the products above wrote
// u = x · downᵀ ([m, rank], both adapters' ranks side by side, A's first):
//   y[r, n] += Σ_j c_j · u[r, j] · up[n, j],   c_j = keep[s] for j < split, else take[s].
// One launch for all the segments of a stage (blockIdx.y), a thread per output column.

#define MAX_LR_SEGS 3

struct LrSeg {
    const void* up;  // [n, rank]
    const float* u;  // [m, ldu]
    float* y;        // [m, ldy]
    int n;
    int rank;
    int split;
    int ldu;
    int ldy;
    int pad;
};

struct LrSegs {
    LrSeg s[MAX_LR_SEGS];
    int count;
    int pad;
};

static_assert(sizeof(LrSeg) == 48, "LrSeg layout is shared with model/fused.rs");
static_assert(sizeof(LrSegs) == 152, "LrSegs layout is shared with model/fused.rs");

template <typename E>
__device__ void lowrank_add(const LrSegs& segs, int m, const float* keep, const float* take,
                            int row0, int rows_per_seq) {
    typedef typename E::T T;
    const LrSeg& g = segs.s[blockIdx.y];
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= g.n) return;
    const T* up = static_cast<const T*>(g.up) + (size_t)n * g.rank;
    for (int r = 0; r < m; r++) {
        const int s = (row0 + r) / rows_per_seq;
        const float* u = g.u + (size_t)r * g.ldu;
        float acc = 0.f;
        for (int j = 0; j < g.rank; j++)
            acc += (j < g.split ? keep[s] : take[s]) * u[j] * E::load(up[j]);
        g.y[(size_t)r * g.ldy + n] += acc;
    }
}

#define LOWRANK_ADD(NAME, E)                                                                   \
    extern "C" __global__ void NAME(const LrSegs segs, int m, const float* keep,              \
                                    const float* take, int row0, int rows_per_seq) {          \
        lowrank_add<E>(segs, m, keep, take, row0, rows_per_seq);                               \
    }
LOWRANK_ADD(lowrank_add_f32, F32)
LOWRANK_ADD(lowrank_add_f16, F16)
LOWRANK_ADD(lowrank_add_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// Embedding rows: x[r] = E[id_r] (mixed per sequence with endpoint B), plus the factored
// path's low-rank rows Σ_j c_j · up[id, j] · down[j, :] when `up` is given. Block per row.

template <typename E>
__device__ void embed(const unsigned* ids, const typename E::T* ea, const typename E::T* eb,
                      const typename E::T* up, const typename E::T* down, int rank, int split,
                      const float* keep, const float* take, int rows_per_seq, float* x, int h) {
    const int r = blockIdx.x;
    const size_t id = ids[r];
    const int s = r / rows_per_seq;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float v = E::load(ea[id * h + i]);
        if (eb) v = keep[s] * v + take[s] * E::load(eb[id * h + i]);
        if (up) {
            float d = 0.f;
            for (int j = 0; j < rank; j++)
                d += (j < split ? keep[s] : take[s]) * E::load(up[id * rank + j]) *
                     E::load(down[(size_t)j * h + i]);
            v += d;
        }
        x[(size_t)r * h + i] = v;
    }
}

#define EMBED(NAME, E)                                                                         \
    extern "C" __global__ void NAME(const unsigned* ids, const E::T* ea, const E::T* eb,       \
                                    const E::T* up, const E::T* down, int rank, int split,     \
                                    const float* keep, const float* take, int rows_per_seq,    \
                                    float* x, int h) {                                         \
        embed<E>(ids, ea, eb, up, down, rank, split, keep, take, rows_per_seq, x, h);          \
    }
EMBED(embed_f32, F32)
EMBED(embed_f16, F16)
EMBED(embed_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// RMS norm of source rows src_row0 + i·src_step (every row, or each sequence's last), gain
// mixed per sequence: y[i] = x · rsqrt(mean(x²) + eps) · g. Block per output row.

template <typename E>
__device__ void rms_norm(const float* x, int ldx, int src_row0, int src_step, float* y, int ldy,
                         const typename E::T* ga, const typename E::T* gb, const float* keep,
                         const float* take, int rows_per_seq, int h, float eps) {
    const int src = src_row0 + blockIdx.x * src_step;
    const float* xr = x + (size_t)src * ldx;
    float ss = 0.f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) ss += xr[i] * xr[i];
    const float inv = 1.0f / sqrtf(block_sum(ss) / (float)h + eps);
    const int s = src / rows_per_seq;
    const float kp = gb ? keep[s] : 1.f, tk = gb ? take[s] : 0.f;
    float* yr = y + (size_t)blockIdx.x * ldy;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float g = E::load(ga[i]);
        if (gb) g = kp * g + tk * E::load(gb[i]);
        yr[i] = xr[i] * inv * g;
    }
}

#define RMS_NORM(NAME, E)                                                                      \
    extern "C" __global__ void NAME(const float* x, int ldx, int src_row0, int src_step,       \
                                    float* y, int ldy, const E::T* ga, const E::T* gb,         \
                                    const float* keep, const float* take, int rows_per_seq,    \
                                    int h, float eps) {                                        \
        rms_norm<E>(x, ldx, src_row0, src_step, y, ldy, ga, gb, keep, take, rows_per_seq, h,   \
                    eps);                                                                      \
    }
RMS_NORM(rms_norm_f32, F32)
RMS_NORM(rms_norm_f16, F16)
RMS_NORM(rms_norm_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// Rotary embedding (HF's rotate-half layout) of q in place and of k into the cache, and v
// copied into the cache, at each row's position. cache [K, kv_heads, cap, hd] in the
// weights' dtype. Angles in f32 from the model's inverse frequencies, as candle forms them
// (position × frequency, then cos and sin).

template <typename E>
__device__ void rope_kv(float* q, int ldq, const float* k, const float* v, int ldkv,
                        typename E::T* kc, typename E::T* vc, const float* inv_freq, int heads,
                        int kv_heads, int hd, int cap, int pos0, int rows_per_seq, int m) {
    const int half = hd / 2;
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t rot = (size_t)m * (heads + kv_heads) * half;
    if (idx < rot) {
        const int i = idx % half;
        const int hh = (idx / half) % (heads + kv_heads);
        const int r = idx / half / (heads + kv_heads);
        const int s = r / rows_per_seq, p = pos0 + r % rows_per_seq;
        const float angle = (float)p * inv_freq[i];
        const float c = cosf(angle), sn = sinf(angle);
        if (hh < heads) {
            float* x = q + (size_t)r * ldq + hh * hd;
            const float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * c - x2 * sn;
            x[i + half] = x2 * c + x1 * sn;
        } else {
            const int g = hh - heads;
            const float* x = k + (size_t)r * ldkv + g * hd;
            const float x1 = x[i], x2 = x[i + half];
            typename E::T* dst = kc + (((size_t)s * kv_heads + g) * cap + p) * hd;
            dst[i] = E::store(x1 * c - x2 * sn);
            dst[i + half] = E::store(x2 * c + x1 * sn);
        }
        return;
    }
    const size_t j = idx - rot;
    if (j < (size_t)m * kv_heads * hd) {
        const int d = j % hd;
        const int g = (j / hd) % kv_heads;
        const int r = j / hd / kv_heads;
        const int s = r / rows_per_seq, p = pos0 + r % rows_per_seq;
        vc[(((size_t)s * kv_heads + g) * cap + p) * hd + d] = E::store(v[(size_t)r * ldkv + g * hd + d]);
    }
}

#define ROPE_KV(NAME, E)                                                                       \
    extern "C" __global__ void NAME(float* q, int ldq, const float* k, const float* v,         \
                                    int ldkv, E::T* kc, E::T* vc, const float* inv_freq,       \
                                    int heads, int kv_heads, int hd, int cap, int pos0,        \
                                    int rows_per_seq, int m) {                                 \
        rope_kv<E>(q, ldq, k, v, ldkv, kc, vc, inv_freq, heads, kv_heads, hd, cap, pos0,       \
                   rows_per_seq, m);                                                           \
    }
ROPE_KV(rope_kv_f32, F32)
ROPE_KV(rope_kv_f16, F16)
ROPE_KV(rope_kv_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// Causal attention of each row's query heads over its sequence's cache, read in place, the
// query head h reading key/value head h / (heads / kv_heads). Block per (row, head); each warp
// takes every ATT_WARPS-th key with an online softmax (running max and sum), lane l holding
// dimensions l, l + 32, … of the head (hd ≤ 256); the warps' partial results are combined at
// the end. Softmax and sums in f32.

#define ATT_WARPS 8
#define MAX_DPL 8

template <typename E>
__device__ void attention(const float* q, int ldq, float* out, int ldo,
                          const typename E::T* kc, const typename E::T* vc, int heads,
                          int kv_heads, int hd, int cap, int pos0, int rows_per_seq,
                          float scale) {
    typedef typename E::T T;
    __shared__ float sm_max[ATT_WARPS], sm_sum[ATT_WARPS];
    __shared__ float sm_out[ATT_WARPS][MAX_DPL * WARP];
    const int r = blockIdx.x, h = blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int s = r / rows_per_seq;
    const int visible = pos0 + r % rows_per_seq + 1;
    const int g = h / (heads / kv_heads);
    const size_t base = ((size_t)s * kv_heads + g) * cap * hd;
    const T* kb = kc + base;
    const T* vb = vc + base;
    const float* qr = q + (size_t)r * ldq + h * hd;
    float qv[MAX_DPL], o[MAX_DPL];
#pragma unroll
    for (int i = 0; i < MAX_DPL; i++) {
        const int d = lane + WARP * i;
        qv[i] = d < hd ? qr[d] * scale : 0.f;
        o[i] = 0.f;
    }
    float run_max = -INFINITY, run_sum = 0.f;
    for (int j = warp; j < visible; j += ATT_WARPS) {
        const T* kj = kb + (size_t)j * hd;
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < MAX_DPL; i++) {
            const int d = lane + WARP * i;
            if (d < hd) dot += qv[i] * E::load(kj[d]);
        }
        dot = warp_sum(dot);
        const float new_max = fmaxf(run_max, dot);
        const float shrink = expf(run_max - new_max);
        const float p = expf(dot - new_max);
        run_sum = run_sum * shrink + p;
        const T* vj = vb + (size_t)j * hd;
#pragma unroll
        for (int i = 0; i < MAX_DPL; i++) {
            const int d = lane + WARP * i;
            if (d < hd) o[i] = o[i] * shrink + p * E::load(vj[d]);
        }
        run_max = new_max;
    }
    if (lane == 0) {
        sm_max[warp] = run_max;
        sm_sum[warp] = run_sum;
    }
#pragma unroll
    for (int i = 0; i < MAX_DPL; i++) {
        const int d = lane + WARP * i;
        if (d < hd) sm_out[warp][d] = o[i];
    }
    __syncthreads();
    float top = -INFINITY;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; w++) top = fmaxf(top, sm_max[w]);
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; w++)
        if (sm_max[w] != -INFINITY) total += sm_sum[w] * expf(sm_max[w] - top);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.f;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; w++)
            if (sm_max[w] != -INFINITY) acc += sm_out[w][d] * expf(sm_max[w] - top);
        out[(size_t)r * ldo + h * hd + d] = acc / total;
    }
}

#define ATTENTION(NAME, E)                                                                     \
    extern "C" __global__ void NAME(const float* q, int ldq, float* out, int ldo,              \
                                    const E::T* kc, const E::T* vc, int heads, int kv_heads,   \
                                    int hd, int cap, int pos0, int rows_per_seq,               \
                                    float scale) {                                             \
        attention<E>(q, ldq, out, ldo, kc, vc, heads, kv_heads, hd, cap, pos0, rows_per_seq,   \
                     scale);                                                                   \
    }
ATTENTION(attention_f32, F32)
ATTENTION(attention_f16, F16)
ATTENTION(attention_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// SwiGLU: gate ← silu(gate) · up, elementwise over n values.

extern "C" __global__ void swiglu(float* gate, const float* up, size_t n) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
