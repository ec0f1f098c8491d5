// NumberLine (SPEC section 1, dissertation Appendix C.1).
//
// State: target x and current y in [0, n_max], x != y at reset (both uniform,
// y uniform over the n_max values other than x). Actions: 0 "+", 1 "-",
// clamped at the bounds. Reward: +1 when y reaches x (terminated); otherwise
// -1 when the move does not bring y closer to x (a move blocked at a bound
// included), else 0. Truncated after T = 2 * n_max steps with no extra
// penalty beyond that step's own reward.
#pragma once

#include <cstdlib>

#include "batch.h"

namespace vlrl {

class NumberLineBatch final : public GameBatch {
  public:
    NumberLineBatch(int num_envs, uint64_t seed, AutoReset auto_reset, int n_max)
        : GameBatch(num_envs, seed, auto_reset), n_max_(n_max) {
        if (n_max < 1) throw std::invalid_argument("NumberLine needs n_max >= 1");
        target_.assign(static_cast<size_t>(num_envs), 0);
        current_.assign(static_cast<size_t>(num_envs), 0);
        reset(nullptr);
    }

    std::string game() const override { return "NumberLine"; }
    const std::vector<std::string>& action_names() const override {
        static const std::vector<std::string> names = {"+", "-"};
        return names;
    }

    int n_max() const { return n_max_; }
    int max_steps() const { return 2 * n_max_; }
    const std::vector<int32_t>& target() const { return target_; }
    const std::vector<int32_t>& current() const { return current_; }

  protected:
    void reset_env(int i) override {
        Rng& rng = rng_[static_cast<size_t>(i)];
        const int x = static_cast<int>(rng.below(static_cast<uint64_t>(n_max_) + 1));
        int y = static_cast<int>(rng.below(static_cast<uint64_t>(n_max_)));
        if (y >= x) ++y;
        target_[static_cast<size_t>(i)] = x;
        current_[static_cast<size_t>(i)] = y;
    }

    float step_env(int i, int action, bool& terminated, bool& truncated) override {
        const size_t u = static_cast<size_t>(i);
        const int x = target_[u];
        const int y = current_[u];
        int next = action == 0 ? y + 1 : y - 1;
        if (next < 0) next = 0;
        if (next > n_max_) next = n_max_;
        current_[u] = next;
        float reward = 0.0f;
        if (next == x) {
            reward = 1.0f;
            terminated = true;
        } else if (std::abs(x - next) >= std::abs(x - y)) {
            reward = -1.0f;
        }
        truncated = !terminated && elapsed_[u] >= max_steps();
        return reward;
    }

    void legal_env(int, uint8_t* mask_row) const override {
        mask_row[0] = 1;
        mask_row[1] = 1;
    }

  private:
    int n_max_;
    std::vector<int32_t> target_;
    std::vector<int32_t> current_;
};

}  // namespace vlrl
