// Tokenizer, recursive-descent parser and exact evaluator; rules in formula.h.
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

enum class Tok : uint8_t { number, plus, minus, star, slash, lparen, rparen, equals, end };

struct Token {
    Tok kind;
    bool literal_overflow;  // only for numbers
    int64_t value;          // only for numbers
};

// Value with the evaluation status of the subexpression that produced it.
// Status order: ok < overflow < division_by_zero (the higher one wins).
enum class EvalStatus : uint8_t { ok = 0, overflow = 1, division_by_zero = 2 };

struct Value {
    EvalStatus status;
    Rational r;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Returns false on a character outside the language.
bool tokenize(const char* text, size_t length, std::vector<Token>& tokens) {
    size_t i = 0;
    while (i < length) {
        const char c = text[i];
        if (is_space(c)) {
            ++i;
            continue;
        }
        if (c >= '0' && c <= '9') {
            int64_t value = 0;
            bool overflow = false;
            while (i < length && text[i] >= '0' && text[i] <= '9') {
                const int64_t digit = text[i] - '0';
                if (!overflow) {
                    if (value > (INT64_MAX - digit) / 10) {
                        overflow = true;
                    } else {
                        value = value * 10 + digit;
                    }
                }
                ++i;
            }
            tokens.push_back({Tok::number, overflow, overflow ? 0 : value});
            continue;
        }
        Tok kind;
        switch (c) {
            case '+': kind = Tok::plus; break;
            case '-': kind = Tok::minus; break;
            case '*': kind = Tok::star; break;
            case '/': kind = Tok::slash; break;
            case '(': kind = Tok::lparen; break;
            case ')': kind = Tok::rparen; break;
            case '=': kind = Tok::equals; break;
            default: return false;
        }
        tokens.push_back({kind, false, 0});
        ++i;
    }
    tokens.push_back({Tok::end, false, 0});
    return true;
}

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

// Parses and evaluates at once; a syntax error stops everything (it outranks
// every evaluation status), evaluation errors flow up as Value::status.
class Parser {
  public:
    explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

    bool parse_formula(Value& out) {
        if (!parse_expr(out, 0)) return false;
        if (peek() == Tok::equals) {
            ++pos_;
            if (peek() == Tok::number) ++pos_;  // the claimed result is ignored
        }
        return peek() == Tok::end;
    }

  private:
    Tok peek() const { return tokens_[pos_].kind; }

    bool parse_expr(Value& out, int depth) {
        if (!parse_term(out, depth)) return false;
        while (peek() == Tok::plus || peek() == Tok::minus) {
            const Tok op = peek();
            ++pos_;
            Value rhs;
            if (!parse_term(rhs, depth)) return false;
            out = combine(out, rhs, op);
        }
        return true;
    }

    bool parse_term(Value& out, int depth) {
        if (!parse_factor(out, depth)) return false;
        while (peek() == Tok::star || peek() == Tok::slash) {
            const Tok op = peek();
            ++pos_;
            Value rhs;
            if (!parse_factor(rhs, depth)) return false;
            out = combine(out, rhs, op);
        }
        return true;
    }

    bool parse_factor(Value& out, int depth) {
        const Token& tok = tokens_[pos_];
        if (tok.kind == Tok::number) {
            ++pos_;
            if (tok.literal_overflow) {
                out = {EvalStatus::overflow, {}};
            } else {
                out = {EvalStatus::ok, {tok.value, 1}};
            }
            return true;
        }
        if (tok.kind == Tok::lparen) {
            if (depth + 1 > kMaxDepth) return false;
            ++pos_;
            if (!parse_expr(out, depth + 1)) return false;
            if (peek() != Tok::rparen) return false;
            ++pos_;
            return true;
        }
        return false;
    }

    const std::vector<Token>& tokens_;
    size_t pos_ = 0;
};

}  // namespace

Evaluation evaluate(const char* text, size_t length) {
    Evaluation result;
    std::vector<Token> tokens;
    tokens.reserve(length / 2 + 2);
    if (!tokenize(text, length, tokens)) {
        result.status = Outcome::syntax_error;
        return result;
    }
    // Numbers are the literals left of the first "=": the claimed result of a
    // trailing "= N" is not one of the formula's numbers.
    size_t expression_end = tokens.size();
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i].kind == Tok::equals) {
            expression_end = i;
            break;
        }
    }
    bool any_literal_overflow = false;
    for (size_t i = 0; i < expression_end; ++i) {
        if (tokens[i].kind == Tok::number) any_literal_overflow |= tokens[i].literal_overflow;
    }
    if (!any_literal_overflow) {
        for (size_t i = 0; i < expression_end; ++i) {
            if (tokens[i].kind == Tok::number) result.numbers.push_back(tokens[i].value);
        }
    }
    Parser parser(tokens);
    Value value{EvalStatus::ok, {}};
    if (!parser.parse_formula(value)) {
        result.status = Outcome::syntax_error;
        return result;
    }
    switch (value.status) {
        case EvalStatus::ok:
            result.status = Outcome::correct;
            result.value = value.r;
            break;
        case EvalStatus::overflow: result.status = Outcome::overflow; break;
        case EvalStatus::division_by_zero: result.status = Outcome::division_by_zero; break;
    }
    return result;
}

Verdict verify(const char* text, size_t length, const int64_t* values, size_t n_values,
               int64_t target) {
    Evaluation ev = evaluate(text, length);
    Verdict verdict;
    verdict.numbers = std::move(ev.numbers);
    if (ev.status != Outcome::correct) {
        verdict.outcome = ev.status;
        return verdict;
    }
    verdict.has_value = true;
    verdict.value = ev.value;

    std::vector<int64_t> cards(values, values + n_values);
    std::sort(cards.begin(), cards.end());
    for (int64_t number : verdict.numbers) {
        if (!std::binary_search(cards.begin(), cards.end(), number)) {
            verdict.outcome = Outcome::unknown_number;
            return verdict;
        }
    }
    std::vector<int64_t> used = verdict.numbers;
    std::sort(used.begin(), used.end());
    if (used != cards) {
        verdict.outcome = Outcome::card_count;
        return verdict;
    }
    const bool hit = ev.value.den == 1 && ev.value.num == target;
    verdict.outcome = hit ? Outcome::correct : Outcome::wrong_value;
    return verdict;
}

}  // namespace vlrl
