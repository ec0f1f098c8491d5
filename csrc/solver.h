// Exhaustive solver for "reach the target with + - * / and each card once".
//
// Works on 1 to 6 non-negative card values and any int64 target, in exact
// rational arithmetic (intermediate results may be fractions, e.g.
// 8/(3-8/3) = 24). Combinations whose arithmetic would overflow int64 are
// skipped. The search is deterministic: the same hand always yields the same
// formula. Formulas use the fewest parentheses that keep the meaning and no
// spaces (e.g. "8/(3-8/3)"), so each character run is one points-game action;
// every formula verifies as "correct" with formula.h's verify.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vlrl {

constexpr size_t kMaxSolverCards = 6;

// Throws std::invalid_argument on an empty hand, more than kMaxSolverCards
// values or a negative value. formula_out may be null (answer only).
bool solve(const std::vector<int64_t>& values, int64_t target, std::string* formula_out);

// (solvable multisets, all multisets) of n_cards values drawn from low..high.
std::pair<int64_t, int64_t> count_solvable(int64_t low, int64_t high, int n_cards,
                                           int64_t target);

}  // namespace vlrl
