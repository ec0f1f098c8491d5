// Depth-first search over pairwise combinations with a memo of dead states.
#include "solver.h"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

#include "rational.h"

namespace vlrl {
namespace {

enum class Op : uint8_t { leaf, add, sub, mul, div };

struct Node {
    Op op;
    int left;
    int right;
    int64_t leaf_value;
};

struct Item {
    Rational value;
    int node;
};

int precedence(Op op) {
    switch (op) {
        case Op::add:
        case Op::sub: return 1;
        case Op::mul:
        case Op::div: return 2;
        default: return 3;
    }
}

class Search {
  public:
    Search(int64_t target, bool want_formula) : target_{target, 1}, want_formula_(want_formula) {}

    bool run(const std::vector<int64_t>& values, std::string* formula_out) {
        std::vector<Item> items;
        for (int64_t v : values) {
            nodes_.push_back({Op::leaf, -1, -1, v});
            items.push_back({{v, 1}, static_cast<int>(nodes_.size()) - 1});
        }
        int root = -1;
        if (!dfs(items, root)) return false;
        if (want_formula_ && formula_out != nullptr) *formula_out = render(root);
        return true;
    }

  private:
    // Key of a multiset of values: a dead state stays dead whatever the order.
    std::string key_of(const std::vector<Item>& items) const {
        std::vector<Rational> vals;
        vals.reserve(items.size());
        for (const Item& it : items) vals.push_back(it.value);
        std::sort(vals.begin(), vals.end(), [](const Rational& a, const Rational& b) {
            return a.num != b.num ? a.num < b.num : a.den < b.den;
        });
        std::string key(vals.size() * sizeof(Rational), '\0');
        for (size_t i = 0; i < vals.size(); ++i) {
            std::copy(reinterpret_cast<const char*>(&vals[i]),
                      reinterpret_cast<const char*>(&vals[i]) + sizeof(Rational),
                      key.begin() + static_cast<std::ptrdiff_t>(i * sizeof(Rational)));
        }
        return key;
    }

    bool dfs(std::vector<Item>& items, int& root) {
        const size_t n = items.size();
        if (n == 1) {
            if (rat_equal(items[0].value, target_)) {
                root = items[0].node;
                return true;
            }
            return false;
        }
        // Memoising pays off only for the larger hands; 2-3 items are cheap.
        std::string key;
        if (n >= 3) {
            key = key_of(items);
            if (dead_.count(key) != 0) return false;
        }
        for (size_t i = 0; i < n; ++i) {
            for (size_t j = i + 1; j < n; ++j) {
                const Item a = items[i];
                const Item b = items[j];
                const bool same = rat_equal(a.value, b.value);
                std::vector<Item> rest;
                rest.reserve(n - 1);
                for (size_t k = 0; k < n; ++k) {
                    if (k != i && k != j) rest.push_back(items[k]);
                }
                rest.push_back({});
                // (op, left, right): commutative ops once, others both ways
                // unless the two values are equal.
                const struct {
                    Op op;
                    bool swap;
                } moves[6] = {{Op::add, false}, {Op::mul, false}, {Op::sub, false},
                              {Op::sub, true},  {Op::div, false}, {Op::div, true}};
                for (const auto& move : moves) {
                    if (move.swap && same) continue;
                    const Item& lhs = move.swap ? b : a;
                    const Item& rhs = move.swap ? a : b;
                    Rational out;
                    ArithStatus st;
                    switch (move.op) {
                        case Op::add: st = rat_add(lhs.value, rhs.value, out); break;
                        case Op::sub: st = rat_sub(lhs.value, rhs.value, out); break;
                        case Op::mul: st = rat_mul(lhs.value, rhs.value, out); break;
                        default: st = rat_div(lhs.value, rhs.value, out); break;
                    }
                    if (st != ArithStatus::ok) continue;
                    nodes_.push_back({move.op, lhs.node, rhs.node, 0});
                    rest.back() = {out, static_cast<int>(nodes_.size()) - 1};
                    if (dfs(rest, root)) return true;
                    nodes_.pop_back();
                }
            }
        }
        if (n >= 3) dead_.insert(std::move(key));
        return false;
    }

    std::string render(int index) const {
        const Node& node = nodes_[static_cast<size_t>(index)];
        if (node.op == Op::leaf) return std::to_string(node.leaf_value);
        const Node& l = nodes_[static_cast<size_t>(node.left)];
        const Node& r = nodes_[static_cast<size_t>(node.right)];
        std::string left = render(node.left);
        std::string right = render(node.right);
        const int pl = precedence(l.op);
        const int pr = precedence(r.op);
        bool wrap_left = false;
        bool wrap_right = false;
        char symbol = '+';
        switch (node.op) {
            case Op::add: symbol = '+'; break;
            case Op::sub: symbol = '-'; wrap_right = pr == 1; break;
            case Op::mul: symbol = '*'; wrap_left = pl == 1; wrap_right = pr == 1; break;
            case Op::div: symbol = '/'; wrap_left = pl == 1; wrap_right = pr <= 2; break;
            default: break;
        }
        if (wrap_left) left = "(" + left + ")";
        if (wrap_right) right = "(" + right + ")";
        return left + symbol + right;
    }

    Rational target_;
    bool want_formula_;
    std::vector<Node> nodes_;
    std::unordered_set<std::string> dead_;
};

void check_hand(const std::vector<int64_t>& values) {
    if (values.empty()) throw std::invalid_argument("solve: the hand is empty");
    if (values.size() > kMaxSolverCards) {
        throw std::invalid_argument("solve: at most 6 card values are supported, got " +
                                    std::to_string(values.size()));
    }
    for (int64_t v : values) {
        if (v < 0) throw std::invalid_argument("solve: card values must be >= 0, got " +
                                               std::to_string(v));
        if (v == INT64_MAX) throw std::invalid_argument("solve: card value too large");
    }
}

}  // namespace

bool solve(const std::vector<int64_t>& values, int64_t target, std::string* formula_out) {
    check_hand(values);
    if (target == INT64_MIN) return false;  // no reduced rational can equal it
    Search search(target, formula_out != nullptr);
    return search.run(values, formula_out);
}

std::pair<int64_t, int64_t> count_solvable(int64_t low, int64_t high, int n_cards,
                                           int64_t target) {
    if (n_cards < 1 || static_cast<size_t>(n_cards) > kMaxSolverCards) {
        throw std::invalid_argument("count_solvable: n_cards must be in 1..6");
    }
    if (low < 0 || high < low) {
        throw std::invalid_argument("count_solvable: need 0 <= low <= high");
    }
    if (high - low > 1000) throw std::invalid_argument("count_solvable: value range too wide");
    std::vector<int64_t> hand(static_cast<size_t>(n_cards), low);
    int64_t solvable = 0;
    int64_t total = 0;
    // Enumerate non-decreasing sequences = multisets.
    for (;;) {
        ++total;
        if (solve(hand, target, nullptr)) ++solvable;
        int pos = n_cards - 1;
        while (pos >= 0 && hand[static_cast<size_t>(pos)] == high) --pos;
        if (pos < 0) break;
        const int64_t next = hand[static_cast<size_t>(pos)] + 1;
        for (int k = pos; k < n_cards; ++k) hand[static_cast<size_t>(k)] = next;
    }
    return {solvable, total};
}

}  // namespace vlrl
