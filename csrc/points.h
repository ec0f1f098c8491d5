// EZPoints and Points24 (SPEC section 1, dissertation Appendix C.1).
//
// Actions: the numbers "1".."10" ("1".."13" under the 11-12-13 face rule),
// then the operators: EZPoints "+", "*", "="; Points24 "+", "-", "*", "/",
// "(", ")", "=". Action code = index into action_names().
//   * A number is legal only when an unused card has that value; it marks the
//     first such card used. An illegal number gives -1 and leaves the state
//     unchanged. Operators are always legal and give 0 ("=" aside).
//   * "=" ends the episode (terminated): +10 when every card is used and the
//     formula equals the target (verify() says "correct"), else -1. "=" is not
//     appended to the formula.
//   * Two number actions in a row do not join into one number: the formula is
//     rendered with a space between them, which the verifier rejects as a
//     syntax error (so "=" then gives -1).
//   * Time limit: T = 5 steps (EZPoints) or 20 (Points24), every step counted,
//     legal or not. The step that reaches T without "=" is truncated and its
//     reward is -1 (replacing the step's own reward: a last illegal action
//     still gives -1, not -2).
// Dealing:
//   EZPoints: face rule "10" only. The first card's rank is uniform over 2..K;
//     the second card's value is uniform over the values v2 in 1..10 with
//     v1 + v2 = 12 or v1 * v2 = 12, its rank uniform over the ranks of that
//     value (10, J, Q, K for 10); suits uniform over the suit filter.
//   Points24: 4 cards (n_cards) by draw_hand (default with replacement, i.e.
//     ranks uniform over A..K, so values may repeat); not always solvable.
// solvable() reports, per env, whether the dealt values reach the target (the
// solver's answer, cached per value multiset).
#pragma once

#include <algorithm>
#include <map>
#include <mutex>

#include "batch.h"
#include "cards.h"
#include "formula.h"
#include "solver.h"

namespace vlrl {

class PointsBatch final : public GameBatch {
  public:
    enum class Kind : uint8_t { ez, p24 };

    PointsBatch(Kind kind, int num_envs, uint64_t seed, AutoReset auto_reset, int64_t target,
                FaceRule face_rule, Sampling sampling, SuitFilter suits, int n_cards)
        : GameBatch(num_envs, seed, auto_reset),
          kind_(kind),
          target_(target),
          face_rule_(face_rule),
          sampling_(sampling),
          suits_(suits),
          n_cards_(kind == Kind::ez ? 2 : n_cards),
          max_steps_(kind == Kind::ez ? 5 : 20) {
        if (kind == Kind::ez && face_rule != FaceRule::ten) {
            throw std::invalid_argument("EZPoints counts J/Q/K as 10; face_rule must be \"10\"");
        }
        if (n_cards_ < 1 || n_cards_ > static_cast<int>(kMaxSolverCards)) {
            throw std::invalid_argument("n_cards must be in 1..6");
        }
        const int max_number = face_rule == FaceRule::ten ? 10 : 13;
        n_numbers_ = max_number;
        for (int v = 1; v <= max_number; ++v) names_.push_back(std::to_string(v));
        if (kind == Kind::ez) {
            operators_ = {'+', '*', '='};
        } else {
            operators_ = {'+', '-', '*', '/', '(', ')', '='};
        }
        for (char op : operators_) names_.push_back(std::string(1, op));
        const size_t n = static_cast<size_t>(num_envs);
        const size_t k = static_cast<size_t>(n_cards_);
        cards_.assign(n * k, 0);
        suits_state_.assign(n * k, 0);
        values_.assign(n * k, 0);
        used_.assign(n * k, 0);
        tokens_.assign(n * static_cast<size_t>(max_steps_), 0);
        n_tokens_.assign(n, 0);
        solvable_.assign(n, 0);
        if (n_cards_ <= 4) dense_.assign(static_cast<size_t>(14 * 14 * 14 * 14), -1);
        reset(nullptr);
    }

    std::string game() const override { return kind_ == Kind::ez ? "EZPoints" : "Points24"; }
    const std::vector<std::string>& action_names() const override { return names_; }

    int n_cards() const { return n_cards_; }
    int max_steps() const { return max_steps_; }
    int64_t target() const { return target_; }
    const std::vector<int8_t>& cards() const { return cards_; }
    const std::vector<int8_t>& suits() const { return suits_state_; }
    const std::vector<int8_t>& values() const { return values_; }
    const std::vector<uint8_t>& used() const { return used_; }
    const std::vector<uint8_t>& solvable() const { return solvable_; }

    // The formula typed so far in env i (no "=").
    std::string formula(int i) const {
        std::string text;
        render_formula(i, text);
        return text;
    }

    void render_formula(int i, std::string& text) const {
        text.clear();
        const size_t base = static_cast<size_t>(i) * static_cast<size_t>(max_steps_);
        bool previous_number = false;
        for (int t = 0; t < n_tokens_[static_cast<size_t>(i)]; ++t) {
            const int code = tokens_[base + static_cast<size_t>(t)];
            if (code < n_numbers_) {
                if (previous_number) text += ' ';
                const int number = code + 1;
                if (number >= 10) text += static_cast<char>('0' + number / 10);
                text += static_cast<char>('0' + number % 10);
                previous_number = true;
            } else {
                text += operators_[static_cast<size_t>(code - n_numbers_)];
                previous_number = false;
            }
        }
    }

    void step(const int32_t* actions, float* rewards, uint8_t* terminated,
              uint8_t* truncated) override {
        step_all(*this, actions, rewards, terminated, truncated);
    }

  protected:
    friend class GameBatch;  // step_all calls step_env directly

    void reset_env(int i) override {
        const size_t u = static_cast<size_t>(i);
        const size_t k = static_cast<size_t>(n_cards_);
        Rng& rng = rng_[u];
        Card hand[kMaxSolverCards];
        if (kind_ == Kind::ez) {
            deal_ez(rng, hand);
        } else {
            draw_hand_into(rng, n_cards_, sampling_, suits_, hand);
        }
        std::vector<int64_t>& vals = hand_values_;
        vals.resize(k);
        for (size_t c = 0; c < k; ++c) {
            cards_[u * k + c] = hand[c].rank;
            suits_state_[u * k + c] = hand[c].suit;
            const int v = card_value(hand[c].rank, face_rule_);
            values_[u * k + c] = static_cast<int8_t>(v);
            used_[u * k + c] = 0;
            vals[c] = v;
        }
        n_tokens_[u] = 0;
        solvable_[u] = is_solvable(vals);  // sorts vals (a scratch copy)
    }

    float step_env(int i, int action, bool& terminated, bool& truncated) override {
        const size_t u = static_cast<size_t>(i);
        const size_t k = static_cast<size_t>(n_cards_);
        float reward = 0.0f;
        if (action < n_numbers_) {
            const int value = action + 1;
            // First unused card with this value, from bit masks built without
            // branches (random actions make per-card branches unpredictable).
            unsigned available = 0;
            for (size_t c = 0; c < k; ++c) {
                available |= static_cast<unsigned>((used_[u * k + c] == 0) &
                                                   (values_[u * k + c] == value))
                             << c;
            }
            const int slot = available == 0 ? -1 : __builtin_ctz(available);
            if (slot < 0) {
                reward = -1.0f;
            } else {
                used_[u * k + static_cast<size_t>(slot)] = 1;
                append(u, action);
            }
        } else if (operators_[static_cast<size_t>(action - n_numbers_)] == '=') {
            render_formula(i, formula_buffer_);
            card_buffer_.resize(k);
            for (size_t c = 0; c < k; ++c) card_buffer_[c] = values_[u * k + c];
            const Outcome outcome = verify_into(formula_buffer_.data(), formula_buffer_.size(),
                                                card_buffer_.data(), k, target_, scratch_, nullptr);
            reward = outcome == Outcome::correct ? 10.0f : -1.0f;
            terminated = true;
        } else {
            append(u, action);
        }
        if (!terminated && elapsed_[u] >= max_steps_) {
            truncated = true;
            reward = -1.0f;
        }
        return reward;
    }

    void legal_env(int i, uint8_t* mask_row) const override {
        const size_t u = static_cast<size_t>(i);
        const size_t k = static_cast<size_t>(n_cards_);
        for (int a = 0; a < n_numbers_; ++a) mask_row[a] = 0;
        for (size_t c = 0; c < k; ++c) {
            if (!used_[u * k + c]) mask_row[values_[u * k + c] - 1] = 1;
        }
        for (size_t o = 0; o < operators_.size(); ++o) mask_row[static_cast<size_t>(n_numbers_) + o] = 1;
    }

  private:
    void append(size_t u, int action) {
        const size_t base = u * static_cast<size_t>(max_steps_);
        // At most one token per step and at most max_steps_ steps: always fits.
        tokens_[base + static_cast<size_t>(n_tokens_[u])] = static_cast<int8_t>(action);
        ++n_tokens_[u];
    }

    void deal_ez(Rng& rng, Card* hand) const {
        const int rank1 = 1 + static_cast<int>(rng.below(12));  // 2..K
        const int v1 = card_value(rank1, FaceRule::ten);
        int candidates[2];
        int n_candidates = 0;
        if (12 - v1 >= 1 && 12 - v1 <= 10) candidates[n_candidates++] = 12 - v1;
        if (12 % v1 == 0 && 12 / v1 >= 1 && 12 / v1 <= 10 && 12 / v1 != 12 - v1) {
            candidates[n_candidates++] = 12 / v1;
        }
        const int v2 = candidates[rng.below(static_cast<uint64_t>(n_candidates))];
        const int rank2 = v2 == 10 ? 9 + static_cast<int>(rng.below(4)) : v2 - 1;
        int first_suit = 0;
        int n_suits = 4;
        if (suits_ == SuitFilter::black) n_suits = 2;
        if (suits_ == SuitFilter::red) {
            first_suit = 2;
            n_suits = 2;
        }
        const int s1 = first_suit + static_cast<int>(rng.below(static_cast<uint64_t>(n_suits)));
        const int s2 = first_suit + static_cast<int>(rng.below(static_cast<uint64_t>(n_suits)));
        hand[0] = {static_cast<int8_t>(rank1), static_cast<int8_t>(s1)};
        hand[1] = {static_cast<int8_t>(rank2), static_cast<int8_t>(s2)};
    }

    uint8_t is_solvable(std::vector<int64_t>& vals) {
        std::sort(vals.begin(), vals.end());
        uint64_t key = 0;
        for (int64_t v : vals) key = key * 14 + static_cast<uint64_t>(v);
        // Dense per-engine table for hands of up to 4 cards (14^4 entries),
        // backed by the shared cache: a reset then costs one array read.
        if (!dense_.empty()) {
            int8_t& slot = dense_[key];
            if (slot < 0) slot = static_cast<int8_t>(solvable_cached(key * 8 + vals.size(), vals, target_));
            return static_cast<uint8_t>(slot);
        }
        return solvable_cached(key * 8 + vals.size(), vals, target_);
    }

    // One cache shared by every engine (most hands repeat across engines and
    // envs); guarded because steps run without the GIL.
    static uint8_t solvable_cached(uint64_t key, const std::vector<int64_t>& vals, int64_t target) {
        static std::mutex mutex;
        static std::map<std::pair<int64_t, uint64_t>, uint8_t> cache;
        {
            std::lock_guard<std::mutex> lock(mutex);
            auto it = cache.find({target, key});
            if (it != cache.end()) return it->second;
        }
        const uint8_t answer = solve(vals, target, nullptr) ? 1 : 0;
        std::lock_guard<std::mutex> lock(mutex);
        cache.emplace(std::make_pair(target, key), answer);
        return answer;
    }

    Kind kind_;
    int64_t target_;
    FaceRule face_rule_;
    Sampling sampling_;
    SuitFilter suits_;
    int n_cards_;
    int max_steps_;
    int n_numbers_ = 10;
    std::vector<char> operators_;
    std::vector<std::string> names_;
    std::vector<int8_t> cards_;
    std::vector<int8_t> suits_state_;
    std::vector<int8_t> values_;
    std::vector<uint8_t> used_;
    std::vector<int8_t> tokens_;
    std::vector<int32_t> n_tokens_;
    std::vector<uint8_t> solvable_;
    std::vector<int8_t> dense_;
    std::string formula_buffer_;
    std::vector<int64_t> card_buffer_;
    std::vector<int64_t> hand_values_;
    VerifyScratch scratch_;
};

}  // namespace vlrl
