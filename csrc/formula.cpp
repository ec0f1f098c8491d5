// Tokenizer, recursive-descent parser and exact evaluator; rules in formula.h.
//
// The lexer runs on the fly (no token array) and the caller's scratch buffers
// receive the numbers, so the common case allocates nothing.
#include "formula.h"

#include <algorithm>

namespace vlrl {

const char* outcome_name(Outcome outcome) {
    switch (outcome) {
        case Outcome::correct: return "correct";
        case Outcome::wrong_value: return "wrong_value";
        case Outcome::unknown_number: return "unknown_number";
        case Outcome::card_count: return "card_count";
        case Outcome::syntax_error: return "syntax_error";
        case Outcome::division_by_zero: return "division_by_zero";
        case Outcome::overflow: return "overflow";
    }
    return "syntax_error";
}

namespace {

enum class Tok : uint8_t { number, plus, minus, star, slash, lparen, rparen, equals, end, invalid };

// Value with the evaluation status of the subexpression that produced it.
// Status order: ok < overflow < division_by_zero (the higher one wins).
enum class EvalStatus : uint8_t { ok = 0, overflow = 1, division_by_zero = 2 };

struct Value {
    EvalStatus status;
    Rational r;
};

Value combine(const Value& a, const Value& b, Tok op) {
    const EvalStatus worst = std::max(a.status, b.status);
    if (worst != EvalStatus::ok) return {worst, {}};
    Rational out;
    ArithStatus st;
    switch (op) {
        case Tok::plus: st = rat_add(a.r, b.r, out); break;
        case Tok::minus: st = rat_sub(a.r, b.r, out); break;
        case Tok::star: st = rat_mul(a.r, b.r, out); break;
        default: st = rat_div(a.r, b.r, out); break;
    }
    if (st == ArithStatus::division_by_zero) return {EvalStatus::division_by_zero, {}};
    if (st == ArithStatus::overflow) return {EvalStatus::overflow, {}};
    return {EvalStatus::ok, out};
}

// Lexer + parser + evaluator. A syntax error stops parsing (it outranks every
// evaluation status); evaluation errors flow up as Value::status. After a
// syntax error the rest of the text is still lexed, because the numbers (left
// of the first "=") and the "illegal character" verdict cover the whole text.
class Parser {
  public:
    Parser(const char* text, size_t length, std::vector<int64_t>& numbers)
        : text_(text), length_(length), numbers_(numbers) {
        numbers_.clear();
        advance();
    }

    // Returns false on a syntax error. Afterwards numbers_ holds the formula's
    // numbers (empty when a character was invalid or a literal overflowed).
    bool parse_formula(Value& out) {
        bool ok = parse_expr(out, 0);
        if (ok && kind_ == Tok::equals) {
            advance();
            if (kind_ == Tok::number) advance();  // the claimed result is ignored
        }
        ok = ok && kind_ == Tok::end;
        while (kind_ != Tok::end) advance();  // lex the remainder for numbers/validity
        if (invalid_char_ || literal_overflow_) numbers_.clear();
        return ok && !invalid_char_;
    }

  private:
    static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

    void advance() {
        if (kind_ == Tok::equals) seen_equals_ = true;
        while (pos_ < length_ && is_space(text_[pos_])) ++pos_;
        if (pos_ >= length_) {
            kind_ = Tok::end;
            return;
        }
        const char c = text_[pos_];
        if (c >= '0' && c <= '9') {
            int64_t value = 0;
            bool overflow = false;
            while (pos_ < length_ && text_[pos_] >= '0' && text_[pos_] <= '9') {
                const int64_t digit = text_[pos_] - '0';
                if (!overflow) {
                    if (value > (INT64_MAX - digit) / 10) {
                        overflow = true;
                    } else {
                        value = value * 10 + digit;
                    }
                }
                ++pos_;
            }
            kind_ = Tok::number;
            number_ = value;
            number_overflow_ = overflow;
            if (!seen_equals_) {
                literal_overflow_ |= overflow;
                if (!literal_overflow_) numbers_.push_back(value);
            }
            return;
        }
        ++pos_;
        switch (c) {
            case '+': kind_ = Tok::plus; return;
            case '-': kind_ = Tok::minus; return;
            case '*': kind_ = Tok::star; return;
            case '/': kind_ = Tok::slash; return;
            case '(': kind_ = Tok::lparen; return;
            case ')': kind_ = Tok::rparen; return;
            case '=': kind_ = Tok::equals; return;
            default:
                kind_ = Tok::invalid;
                invalid_char_ = true;
                return;
        }
    }

    bool parse_expr(Value& out, int depth) {
        if (!parse_term(out, depth)) return false;
        while (kind_ == Tok::plus || kind_ == Tok::minus) {
            const Tok op = kind_;
            advance();
            Value rhs;
            if (!parse_term(rhs, depth)) return false;
            out = combine(out, rhs, op);
        }
        return true;
    }

    bool parse_term(Value& out, int depth) {
        if (!parse_factor(out, depth)) return false;
        while (kind_ == Tok::star || kind_ == Tok::slash) {
            const Tok op = kind_;
            advance();
            Value rhs;
            if (!parse_factor(rhs, depth)) return false;
            out = combine(out, rhs, op);
        }
        return true;
    }

    bool parse_factor(Value& out, int depth) {
        if (kind_ == Tok::number) {
            if (number_overflow_) {
                out = {EvalStatus::overflow, {}};
            } else {
                out = {EvalStatus::ok, {number_, 1}};
            }
            advance();
            return true;
        }
        if (kind_ == Tok::lparen) {
            if (depth + 1 > kMaxDepth) return false;
            advance();
            if (!parse_expr(out, depth + 1)) return false;
            if (kind_ != Tok::rparen) return false;
            advance();
            return true;
        }
        return false;
    }

    const char* text_;
    size_t length_;
    size_t pos_ = 0;
    Tok kind_ = Tok::end;
    int64_t number_ = 0;
    bool number_overflow_ = false;
    bool seen_equals_ = false;
    bool literal_overflow_ = false;
    bool invalid_char_ = false;
    std::vector<int64_t>& numbers_;
};

// Parses into scratch numbers; returns syntax_error, division_by_zero,
// overflow, or correct (= evaluated) with the value.
Outcome evaluate_into(const char* text, size_t length, std::vector<int64_t>& numbers,
                      Rational& value_out) {
    Parser parser(text, length, numbers);
    Value value{EvalStatus::ok, {}};
    if (!parser.parse_formula(value)) return Outcome::syntax_error;
    switch (value.status) {
        case EvalStatus::ok: value_out = value.r; return Outcome::correct;
        case EvalStatus::overflow: return Outcome::overflow;
        default: return Outcome::division_by_zero;
    }
}

}  // namespace

Evaluation evaluate(const char* text, size_t length) {
    Evaluation result;
    result.status = evaluate_into(text, length, result.numbers, result.value);
    return result;
}

Outcome verify_into(const char* text, size_t length, const int64_t* values, size_t n_values,
                    int64_t target, VerifyScratch& scratch, Rational* value_out) {
    Rational value;
    const Outcome status = evaluate_into(text, length, scratch.numbers, value);
    if (status != Outcome::correct) return status;
    if (value_out != nullptr) *value_out = value;

    const std::vector<int64_t>& numbers = scratch.numbers;
    if (n_values <= 32 && numbers.size() <= 64) {
        // Small hands (every real one): linear scans beat sorting.
        for (int64_t number : numbers) {
            bool known = false;
            for (size_t c = 0; c < n_values && !known; ++c) known = values[c] == number;
            if (!known) return Outcome::unknown_number;
        }
        if (numbers.size() != n_values) return Outcome::card_count;
        uint32_t used = 0;
        for (int64_t number : numbers) {
            size_t c = 0;
            while (c < n_values && (((used >> c) & 1U) != 0 || values[c] != number)) ++c;
            if (c == n_values) return Outcome::card_count;  // this value already used up
            used |= 1U << c;
        }
    } else {
        scratch.sorted_cards.assign(values, values + n_values);
        std::sort(scratch.sorted_cards.begin(), scratch.sorted_cards.end());
        for (int64_t number : numbers) {
            if (!std::binary_search(scratch.sorted_cards.begin(), scratch.sorted_cards.end(),
                                    number)) {
                return Outcome::unknown_number;
            }
        }
        scratch.sorted_numbers.assign(numbers.begin(), numbers.end());
        std::sort(scratch.sorted_numbers.begin(), scratch.sorted_numbers.end());
        if (scratch.sorted_numbers != scratch.sorted_cards) return Outcome::card_count;
    }
    return value.den == 1 && value.num == target ? Outcome::correct : Outcome::wrong_value;
}

Verdict verify(const char* text, size_t length, const int64_t* values, size_t n_values,
               int64_t target) {
    VerifyScratch scratch;
    Verdict verdict;
    verdict.outcome = verify_into(text, length, values, n_values, target, scratch, &verdict.value);
    verdict.numbers = std::move(scratch.numbers);
    verdict.has_value = verdict.outcome == Outcome::correct ||
                        verdict.outcome == Outcome::wrong_value ||
                        verdict.outcome == Outcome::unknown_number ||
                        verdict.outcome == Outcome::card_count;
    return verdict;
}

}  // namespace vlrl
