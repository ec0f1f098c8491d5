// NumberLine (SPEC section 1, dissertation Appendix C.1).
//
// State: target x and current y in [0, n_max], x != y at reset (both uniform,
// y uniform over the n_max values other than x). Actions: 0 "+", 1 "-",
// clamped at the bounds. Reward: +1 when y reaches x (terminated); otherwise
// -1 when the move does not bring y closer to x (a move blocked at a bound
// included), else 0. Truncated after T = 2 * n_max steps with no extra
// penalty beyond that step's own reward.
#pragma once

#include <algorithm>
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

    void step(const int32_t* actions, float* rewards, uint8_t* terminated,
              uint8_t* truncated) override {
        step_all(*this, actions, rewards, terminated, truncated);
    }

  protected:
    friend class GameBatch;  // step_all calls step_env directly

    void reset_env(int i) override {
        Rng& rng = rng_[static_cast<size_t>(i)];
        const int x = static_cast<int>(rng.below(static_cast<uint64_t>(n_max_) + 1));
        int y = static_cast<int>(rng.below(static_cast<uint64_t>(n_max_)));
        if (y >= x) ++y;
        target_[static_cast<size_t>(i)] = x;
        current_[static_cast<size_t>(i)] = y;
    }

    float step_env(int i, int action, bool& terminated, bool& truncated) override {
        // Written without data-dependent branches: random actions would make them
        // unpredictable, and they cost more than the arithmetic.
        const size_t u = static_cast<size_t>(i);
        const int x = target_[u];
        const int y = current_[u];
        const int next = std::min(std::max(y + 1 - 2 * action, 0), n_max_);  // 0 "+", 1 "-"
        current_[u] = next;
        const int reached = next == x;
        const int closer = std::abs(x - next) < std::abs(x - y);
        terminated = reached != 0;
        truncated = !reached && elapsed_[u] >= max_steps();
        // +1 on reaching the target, 0 for a move closer, -1 otherwise.
        return static_cast<float>(reached ? 1 : closer - 1);
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
