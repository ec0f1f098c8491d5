// Seeded pseudo-random numbers that give the same stream on every platform.
//
// Generator: xoshiro256** (Blackman & Vigna), state seeded from a 64-bit seed
// through splitmix64. Range reduction is our own (multiply-shift with
// rejection, on unsigned 64/128-bit integer arithmetic), so results never
// depend on a standard-library distribution (whose algorithms differ between
// implementations). Only GCC/Clang's unsigned __int128 is assumed.
#pragma once

#include <cstdint>

namespace vlrl {

inline uint64_t splitmix64_next(uint64_t& state) {
    state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

struct Rng {
    uint64_t s[4];

    Rng() { seed(0); }
    explicit Rng(uint64_t seed_value) { seed(seed_value); }

    void seed(uint64_t seed_value) {
        uint64_t sm = seed_value;
        for (auto& word : s) word = splitmix64_next(sm);
        // xoshiro must not start from the all-zero state; splitmix64 makes that
        // practically impossible, the guard makes it impossible.
        if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;
    }

    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

    uint64_t next() {
        const uint64_t result = rotl(s[1] * 5, 7) * 9;
        const uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
    }

    // Uniform integer in [0, n) for n >= 1, without bias: Lemire's
    // multiply-shift reduction with rejection of the low products below
    // 2^64 mod n (a division only happens on the rare rejection branch).
    uint64_t below(uint64_t n) {
        if (n <= 1) return 0;
        uint64_t x = next();
        unsigned __int128 m = static_cast<unsigned __int128>(x) * n;
        uint64_t low = static_cast<uint64_t>(m);
        if (low < n) {
            const uint64_t threshold = (0 - n) % n;  // == 2^64 mod n
            while (low < threshold) {
                x = next();
                m = static_cast<unsigned __int128>(x) * n;
                low = static_cast<uint64_t>(m);
            }
        }
        return static_cast<uint64_t>(m >> 64);
    }

    // Uniform integer in [lo, hi] (inclusive), lo <= hi.
    int64_t between(int64_t lo, int64_t hi) {
        return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
    }
};

}  // namespace vlrl
