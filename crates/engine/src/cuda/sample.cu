// Sampling on the GPU: one block of 1,024 threads per row picks that row's next token from
// logits that stay on the device, bit for bit as the host's sampler (generate/sampling.rs)
// would. Its twin, step for step, is generate/device_sampling.rs::pick_as_the_kernel.
//
// Every float operation is an explicit round-to-nearest intrinsic (and the file is compiled
// with --fmad=false), so nothing is contracted and each result is the host's.
//
// Steps per row: the penalty and temperature applied as each logit is read (the logits are
// never written); a non-finite logit answers NON_FINITE; greedy takes the first largest; else
// radix selection finds the top-k cut and the head of the HEAD best candidates (64-bit keys:
// the value's total order, then the token id reversed), the whole mass is summed in the
// host's lanes (one per thread) and tree, the head is sorted, and one thread walks it as the
// host walks its sorted candidates. A nucleus the head does not hold answers ON_HOST.

#define THREADS 1024
#define HEAD 1024
#define ON_HOST 0xFFFFFFFEu
#define NON_FINITE 0xFFFFFFFFu

// exp_weight's constants, as the host's f32 bits (a test on the host reads them here).
#define LOG2E_BITS 0x3fb8aa3bu
#define LN2_HI_BITS 0x3f317200u
#define LN2_LO_BITS 0x35bfbe8eu
#define C7_BITS 0x39500d01u
#define C6_BITS 0x3ab60b61u
#define C5_BITS 0x3c088889u
#define C4_BITS 0x3d2aaaabu
#define C3_BITS 0x3e2aaaabu

struct SampleParams {
    float inv_t;
    float penalty;
    float top_p;
    int top_k;
    int greedy;
    int vocab;
};

__device__ __forceinline__ unsigned ordered(float s) {
    const unsigned b = __float_as_uint(s);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float unordered(unsigned o) {
    return __uint_as_float((o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o);
}

__device__ __forceinline__ unsigned long long key_of(float s, unsigned id) {
    return ((unsigned long long)ordered(s) << 32) | (unsigned long long)(~id);
}

__device__ __forceinline__ unsigned id_of(unsigned long long key) { return ~(unsigned)key; }

// sampling.rs::exp_weight.
__device__ float exp_weight(float x) {
    if (x < -87.0f) return 0.0f;
    if (isnan(x)) return x;
    const float n = floorf(__fadd_rn(__fmul_rn(x, __uint_as_float(LOG2E_BITS)), 0.5f));
    float r = __fmaf_rn(-n, __uint_as_float(LN2_HI_BITS), x);
    r = __fmaf_rn(-n, __uint_as_float(LN2_LO_BITS), r);
    float p = __uint_as_float(C7_BITS);
    p = __fmaf_rn(p, r, __uint_as_float(C6_BITS));
    p = __fmaf_rn(p, r, __uint_as_float(C5_BITS));
    p = __fmaf_rn(p, r, __uint_as_float(C4_BITS));
    p = __fmaf_rn(p, r, __uint_as_float(C3_BITS));
    p = __fmaf_rn(p, r, 0.5f);
    p = __fmaf_rn(p, r, 1.0f);
    p = __fmaf_rn(p, r, 1.0f);
    return __fmul_rn(p, __int_as_float(((int)n + 127) << 23));
}

// Logit i after the penalty (Hugging Face's: positive divided, negative multiplied).
__device__ __forceinline__ float penalised(const float* l, const unsigned char* seen,
                                           const SampleParams& p, int i) {
    const float x = l[i];
    if (p.penalty == 1.0f || !seen[i]) return x;
    return x >= 0.0f ? __fdiv_rn(x, p.penalty) : __fmul_rn(x, p.penalty);
}

__device__ __forceinline__ float tempered(const float* l, const unsigned char* seen,
                                          const SampleParams& p, int i) {
    return __fmul_rn(penalised(l, seen, p, i), p.inv_t);
}

// The n-th largest (from 1) of the row's keys: 8 bits a pass from the top, each pass counting
// the keys that share the prefix found so far. Every thread returns it.
__device__ unsigned long long nth_largest(const float* l, const unsigned char* seen,
                                          const SampleParams& p, int n) {
    __shared__ unsigned hist[256];
    __shared__ unsigned long long prefix, mask;
    __shared__ unsigned rest;
    if (threadIdx.x == 0) {
        prefix = 0;
        mask = 0;
        rest = (unsigned)n;
    }
    for (int pass = 0; pass < 8; pass++) {
        const int shift = 56 - 8 * pass;
        if (threadIdx.x < 256) hist[threadIdx.x] = 0;
        __syncthreads();
        const unsigned long long pre = prefix, m = mask;
        for (int i = threadIdx.x; i < p.vocab; i += THREADS) {
            const unsigned long long k = key_of(tempered(l, seen, p, i), (unsigned)i);
            if ((k & m) == pre) atomicAdd(&hist[(k >> shift) & 0xFF], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int digit = 255;
            while (hist[digit] < rest) {
                rest -= hist[digit];
                digit--;
            }
            prefix |= (unsigned long long)digit << shift;
            mask |= 0xFFull << shift;
        }
        __syncthreads();
    }
    // Read before anyone may start the next call's passes (the state is shared).
    const unsigned long long found = prefix;
    __syncthreads();
    return found;
}

// logits [rows, vocab] f32; seen [rows, vocab] (1 where the penalty applies; the picked token
// is marked); u [rows] (this step's draws); out [rows]: the token, ON_HOST or NON_FINITE.
extern "C" __global__ void sample_rows(const float* logits, unsigned char* seen, const float* u,
                                       unsigned* out, const SampleParams p) {
    __shared__ unsigned long long keys[HEAD];
    __shared__ float weights[HEAD];
    __shared__ float red_v[THREADS / 32];
    __shared__ int red_i[THREADS / 32];
    __shared__ int bad, count;
    const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float* l = logits + (size_t)row * p.vocab;
    unsigned char* sn = seen + (size_t)row * p.vocab;
    if (tid == 0) {
        bad = 0;
        count = 0;
    }
    __syncthreads();

    // Non-finite logits; the largest (greedy: the penalised logit, first on ties; else the
    // tempered one).
    float best = -INFINITY;
    int best_i = 0x7FFFFFFF;
    for (int i = tid; i < p.vocab; i += THREADS) {
        if (!isfinite(l[i])) bad = 1;
        const float v = p.greedy ? penalised(l, sn, p, i) : tempered(l, sn, p, i);
        if (v > best || (v == best && i < best_i)) {
            best = v;
            best_i = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, best, o);
        const int i = __shfl_xor_sync(0xffffffffu, best_i, o);
        if (v > best || (v == best && i < best_i)) {
            best = v;
            best_i = i;
        }
    }
    if (lane == 0) {
        red_v[warp] = best;
        red_i[warp] = best_i;
    }
    __syncthreads();
    if (tid == 0) {
        for (int w = 1; w < THREADS / 32; w++) {
            if (red_v[w] > red_v[0] || (red_v[w] == red_v[0] && red_i[w] < red_i[0])) {
                red_v[0] = red_v[w];
                red_i[0] = red_i[w];
            }
        }
    }
    __syncthreads();
    if (bad) {
        if (tid == 0) out[row] = NON_FINITE;
        return;
    }
    if (p.greedy) {
        if (tid == 0) {
            out[row] = (unsigned)red_i[0];
            sn[red_i[0]] = 1;
        }
        return;
    }
    const float max = red_v[0];

    const int candidates = (p.top_k > 0 && p.top_k < p.vocab) ? p.top_k : p.vocab;
    if (p.top_p >= 1.0f && candidates > HEAD) {
        if (tid == 0) out[row] = ON_HOST;
        return;
    }
    const unsigned long long kth = candidates < p.vocab ? nth_largest(l, sn, p, candidates) : 0;

    // The whole mass: this thread's lane, then the tree.
    float need = INFINITY;
    if (p.top_p < 1.0f) {
        float mass = 0.0f;
        for (int i = tid; i < p.vocab; i += THREADS) {
            const float s = tempered(l, sn, p, i);
            const float w = key_of(s, (unsigned)i) >= kth ? exp_weight(__fsub_rn(s, max)) : 0.0f;
            mass = __fadd_rn(mass, w);
        }
        weights[tid] = mass;
        __syncthreads();
        for (int half = THREADS / 2; half > 0; half >>= 1) {
            if (tid < half) weights[tid] = __fadd_rn(weights[tid], weights[tid + half]);
            __syncthreads();
        }
        need = __fmul_rn(p.top_p, weights[0]);
        __syncthreads();
    }

    // The head: the h best candidates, gathered, then sorted (bitonic, descending).
    const int h = candidates < HEAD ? candidates : HEAD;
    const unsigned long long hk = h < p.vocab ? nth_largest(l, sn, p, h) : 0;
    keys[tid] = 0;  // below every real key (a finite value's order is above 0)
    __syncthreads();
    for (int i = tid; i < p.vocab; i += THREADS) {
        const unsigned long long k = key_of(tempered(l, sn, p, i), (unsigned)i);
        if (k >= hk) keys[atomicAdd(&count, 1)] = k;
    }
    __syncthreads();
    for (int size = 2; size <= HEAD; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            const int other = tid ^ stride;
            if (other > tid) {
                const unsigned long long a = keys[tid], b = keys[other];
                const bool down = (tid & size) == 0;
                if (down ? a < b : a > b) {
                    keys[tid] = b;
                    keys[other] = a;
                }
            }
            __syncthreads();
        }
    }
    weights[tid] = tid < h ? exp_weight(__fsub_rn(unordered((unsigned)(keys[tid] >> 32)), max)) : 0.0f;
    __syncthreads();

    // The host's walk: cut where the mass reaches `need`, then the inverse CDF at u.
    if (tid == 0) {
        float total = 0.0f;
        int keep = -1;
        for (int j = 0; j < h; j++) {
            total = __fadd_rn(total, weights[j]);
            if (total >= need) {
                keep = j + 1;
                break;
            }
        }
        if (keep < 0) {
            if (h < candidates) {
                out[row] = ON_HOST;
                return;
            }
            keep = h;
        }
        const float target = __fmul_rn(u[row], total);
        unsigned token = id_of(keys[keep - 1]);
        float acc = 0.0f;
        for (int j = 0; j < keep; j++) {
            acc = __fadd_rn(acc, weights[j]);
            if (acc > target) {
                token = id_of(keys[j]);
                break;
            }
        }
        out[row] = token;
        sn[token] = 1;
    }
}
