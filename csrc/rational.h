// Exact rational numbers on int64 with overflow detection.
//
// Every operation reports overflow instead of wrapping: numerator and
// denominator stay in int64, the denominator is always positive and the
// fraction is always reduced. INT64_MIN is never produced, so negation and
// absolute values are always safe.
#pragma once

#include <cstdint>
#include <limits>

namespace vlrl {

struct Rational {
    int64_t num = 0;
    int64_t den = 1;
};

inline bool fits(__int128 x) {
    // Reject INT64_MIN as well so that every stored value can be negated.
    return x > static_cast<__int128>(std::numeric_limits<int64_t>::min()) &&
           x <= static_cast<__int128>(std::numeric_limits<int64_t>::max());
}

inline uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b != 0) {
        const uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// Builds num/den reduced, den > 0. Returns false on overflow; den must be != 0.
inline bool make_rational(__int128 num, __int128 den, Rational& out) {
    if (den < 0) {
        num = -num;
        den = -den;
    }
    const unsigned __int128 abs_num = static_cast<unsigned __int128>(num < 0 ? -num : num);
    const unsigned __int128 abs_den = static_cast<unsigned __int128>(den);
    constexpr unsigned __int128 kU64 = ~static_cast<uint64_t>(0);
    if (abs_num <= kU64 && abs_den <= kU64) {
        // Fast path: 64-bit Euclid (128-bit division is a slow library call).
        const uint64_t g = gcd_u64(static_cast<uint64_t>(abs_num), static_cast<uint64_t>(abs_den));
        if (g > 1) {
            num /= g;
            den /= g;
        }
    } else {
        // Reduce in 128-bit before range checking so that results whose reduced
        // form fits are not reported as overflow.
        unsigned __int128 a = abs_num;
        unsigned __int128 b = abs_den;
        while (b != 0) {
            const unsigned __int128 t = a % b;
            a = b;
            b = t;
        }
        if (a > 1) {
            num /= static_cast<__int128>(a);
            den /= static_cast<__int128>(a);
        }
    }
    if (!fits(num) || !fits(den)) return false;
    out.num = static_cast<int64_t>(num);
    out.den = static_cast<int64_t>(den);
    return true;
}

enum class ArithStatus { ok, overflow, division_by_zero };

inline ArithStatus rat_add(const Rational& a, const Rational& b, Rational& out) {
    if (a.den == 1 && b.den == 1) {
        const __int128 n = static_cast<__int128>(a.num) + b.num;
        if (!fits(n)) return ArithStatus::overflow;
        out = {static_cast<int64_t>(n), 1};
        return ArithStatus::ok;
    }
    const __int128 n = static_cast<__int128>(a.num) * b.den + static_cast<__int128>(b.num) * a.den;
    const __int128 d = static_cast<__int128>(a.den) * b.den;
    return make_rational(n, d, out) ? ArithStatus::ok : ArithStatus::overflow;
}

inline ArithStatus rat_sub(const Rational& a, const Rational& b, Rational& out) {
    if (a.den == 1 && b.den == 1) {
        const __int128 n = static_cast<__int128>(a.num) - b.num;
        if (!fits(n)) return ArithStatus::overflow;
        out = {static_cast<int64_t>(n), 1};
        return ArithStatus::ok;
    }
    const __int128 n = static_cast<__int128>(a.num) * b.den - static_cast<__int128>(b.num) * a.den;
    const __int128 d = static_cast<__int128>(a.den) * b.den;
    return make_rational(n, d, out) ? ArithStatus::ok : ArithStatus::overflow;
}

inline ArithStatus rat_mul(const Rational& a, const Rational& b, Rational& out) {
    if (a.den == 1 && b.den == 1) {
        const __int128 n = static_cast<__int128>(a.num) * b.num;
        if (!fits(n)) return ArithStatus::overflow;
        out = {static_cast<int64_t>(n), 1};
        return ArithStatus::ok;
    }
    const __int128 n = static_cast<__int128>(a.num) * b.num;
    const __int128 d = static_cast<__int128>(a.den) * b.den;
    return make_rational(n, d, out) ? ArithStatus::ok : ArithStatus::overflow;
}

inline ArithStatus rat_div(const Rational& a, const Rational& b, Rational& out) {
    if (b.num == 0) return ArithStatus::division_by_zero;
    const __int128 n = static_cast<__int128>(a.num) * b.den;
    const __int128 d = static_cast<__int128>(a.den) * b.num;
    return make_rational(n, d, out) ? ArithStatus::ok : ArithStatus::overflow;
}

inline bool rat_equal(const Rational& a, const Rational& b) {
    return a.num == b.num && a.den == b.den;  // both reduced with den > 0
}

inline bool rat_less(const Rational& a, const Rational& b) {
    return static_cast<__int128>(a.num) * b.den < static_cast<__int128>(b.num) * a.den;
}

}  // namespace vlrl
