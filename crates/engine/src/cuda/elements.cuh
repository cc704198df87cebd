// The three weight dtypes as the kernels see them: one element to and from f32, and (for the
// decode kernels) a 16-byte vector of elements unpacked to f32. Shared by blend.cu and decode.cu.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

struct F32 {
    typedef float T;
    static constexpr int V = 4;  // elements per 16-byte vector
    static __device__ __forceinline__ float load(T x) { return x; }
    static __device__ __forceinline__ T store(float x) { return x; }
    static __device__ __forceinline__ void unpack(uint4 r, float* w) {
        w[0] = __uint_as_float(r.x);
        w[1] = __uint_as_float(r.y);
        w[2] = __uint_as_float(r.z);
        w[3] = __uint_as_float(r.w);
    }
};

struct F16 {
    typedef __half T;
    static constexpr int V = 8;
    static __device__ __forceinline__ float load(T x) { return __half2float(x); }
    static __device__ __forceinline__ T store(float x) { return __float2half_rn(x); }
    static __device__ __forceinline__ void unpack(uint4 r, float* w) {
        const uint32_t words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
            w[2 * i] = f.x;
            w[2 * i + 1] = f.y;
        }
    }
};

struct BF16 {
    typedef __nv_bfloat16 T;
    static constexpr int V = 8;
    static __device__ __forceinline__ float load(T x) { return __bfloat162float(x); }
    static __device__ __forceinline__ T store(float x) { return __float2bfloat16_rn(x); }
    // A bf16 is the top half of an f32: the low element of each word shifted up, the high
    // one masked.
    static __device__ __forceinline__ void unpack(uint4 r, float* w) {
        const uint32_t words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = __uint_as_float(words[i] << 16);
            w[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
        }
    }
};
