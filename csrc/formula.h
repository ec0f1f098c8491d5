// Formula verifier for the points games (EZPoints, Points24, GeneralPoints).
//
// Accepted language (ASCII only; anything else is a syntax error):
//   formula := expr [ "=" [ integer ] ]        whitespace (space, \t, \n, \r) anywhere
//   expr    := term { ("+" | "-") term }       left associative
//   term    := factor { ("*" | "/") factor }   left associative, binds tighter
//   factor  := integer | "(" expr ")"
//   integer := one or more digits ("007" is 7)
// Rule choices:
//   * No unary plus or minus, no decimal point, no implicit multiplication:
//     "-3", "1.5", "2(3)" are syntax errors.
//   * Two numbers one after another ("1 2", or the digits the points games
//     render with a space between two number actions) are a syntax error; a
//     number is only ever one run of digits.
//   * The optional trailing "= N" is accepted and ignored: the verdict is about
//     the expression left of "=". N is not counted as a card.
//   * Parentheses nested deeper than kMaxDepth are a syntax error (bounds the
//     recursion; 500 levels are fine).
//   * Arithmetic is exact rational on int64 with overflow detection. A literal
//     that does not fit in int64 poisons its subexpression with "overflow" and
//     the formula reports no numbers (they did not tokenize as int64).
// Outcome precedence when several apply (first wins):
//   syntax_error > division_by_zero > overflow > unknown_number > card_count
//   > wrong_value / correct.
// unknown_number: some number is not the value of any card. card_count: every
// number is a card value but the multiset differs (a card used twice or left
// unused). wrong_value: the cards are used exactly once but the value differs
// from the target.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rational.h"

namespace vlrl {

enum class Outcome : int {
    correct = 0,
    wrong_value = 1,
    unknown_number = 2,
    card_count = 3,
    syntax_error = 4,
    division_by_zero = 5,
    overflow = 6,
};

const char* outcome_name(Outcome outcome);

constexpr int kMaxDepth = 1000;

struct Evaluation {
    Outcome status = Outcome::syntax_error;  // correct means "evaluated fine"
    Rational value;                          // valid when status == correct
    std::vector<int64_t> numbers;            // literals in order; empty if not tokenized
};

struct Verdict {
    Outcome outcome = Outcome::syntax_error;
    bool has_value = false;
    Rational value;
    std::vector<int64_t> numbers;
};

// Buffers reused across calls so that verifying many formulas allocates nothing
// once they have grown (one per thread; not shared between threads).
struct VerifyScratch {
    std::vector<int64_t> numbers;
    std::vector<int64_t> sorted_cards;
    std::vector<int64_t> sorted_numbers;
};

// Parses and evaluates; status is correct, syntax_error, division_by_zero or overflow.
Evaluation evaluate(const char* text, size_t length);

// Allocation-free core of verify: numbers land in scratch.numbers.
Outcome verify_into(const char* text, size_t length, const int64_t* values, size_t n_values,
                    int64_t target, VerifyScratch& scratch, Rational* value_out);

Verdict verify(const char* text, size_t length, const int64_t* values, size_t n_values,
               int64_t target);

inline Verdict verify(const std::string& text, const std::vector<int64_t>& values,
                      int64_t target) {
    return verify(text.data(), text.size(), values.data(), values.size(), target);
}

}  // namespace vlrl
