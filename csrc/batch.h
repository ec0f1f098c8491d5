// Shared machinery of the batched card games: N independent environments held
// as struct-of-arrays, stepped in one call.
//
// Fields every game shares live here (elapsed steps, episode return, done,
// success, one generator per env); each game header adds its own state arrays
// and implements reset_env / step_env / legal_env.
//
// Seeding: env i's generator is seeded with seed + i (unsigned wrap-around) at
// construction, or with seeds[i] when reset() is given a seed array; reset()
// without seeds continues each env's own stream, so successive episodes differ
// and no env's episodes depend on another's actions.
//
// Ending and auto-reset:
//   none       a finished env ignores further actions (reward 0, its final
//              terminated/truncated flags repeated) until reset() is called.
//   next_step  as gymnasium's vector envs by default: the step after an env
//              finishes resets it, ignores its action and returns reward 0,
//              terminated = truncated = false.
//   same_step  the finished env is reset inside the step that ended it; that
//              step's reward/flags/success describe the finished episode,
//              while the state (and elapsed = 0) already shows the new one.
// success[i] is true on the step that ends an episode whose return is > 0
// (the dissertation's success criterion for gym_cards) and false otherwise;
// it is cleared when env i steps again.
//
// Threads: step/reset run without the GIL; one engine must not be stepped from
// two threads at once (separate engines are independent).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "rng.h"

namespace vlrl {

enum class AutoReset : uint8_t { none = 0, next_step = 1, same_step = 2 };

inline AutoReset parse_auto_reset(const std::string& name) {
    if (name == "none") return AutoReset::none;
    if (name == "next_step") return AutoReset::next_step;
    if (name == "same_step") return AutoReset::same_step;
    throw std::invalid_argument("auto_reset must be none, next_step or same_step, got " + name);
}

class GameBatch {
  public:
    GameBatch(int num_envs, uint64_t seed, AutoReset auto_reset)
        : num_envs_(num_envs), auto_reset_(auto_reset) {
        if (num_envs < 1) throw std::invalid_argument("num_envs must be >= 1");
        const size_t n = static_cast<size_t>(num_envs);
        rng_.resize(n);
        elapsed_.assign(n, 0);
        done_.assign(n, 0);
        success_.assign(n, 0);
        last_terminated_.assign(n, 0);
        last_truncated_.assign(n, 0);
        episode_return_.assign(n, 0.0f);
        for (size_t i = 0; i < n; ++i) rng_[i].seed(seed + i);
    }
    virtual ~GameBatch() = default;

    virtual std::string game() const = 0;
    virtual const std::vector<std::string>& action_names() const = 0;
    int num_actions() const { return static_cast<int>(action_names().size()); }
    int num_envs() const { return num_envs_; }

    // Resets every env; seeds may be null (continue each env's stream).
    void reset(const uint64_t* seeds) {
        for (int i = 0; i < num_envs_; ++i) {
            if (seeds != nullptr) rng_[static_cast<size_t>(i)].seed(seeds[i]);
            begin_episode(i);
        }
    }

    // Resets the listed envs only.
    void reset_some(const int64_t* indices, size_t count, const uint64_t* seeds) {
        for (size_t k = 0; k < count; ++k) {
            if (indices[k] < 0 || indices[k] >= num_envs_) {
                throw std::out_of_range("env index " + std::to_string(indices[k]) +
                                        " out of range for num_envs = " + std::to_string(num_envs_));
            }
        }
        for (size_t k = 0; k < count; ++k) {
            const int i = static_cast<int>(indices[k]);
            if (seeds != nullptr) rng_[static_cast<size_t>(i)].seed(seeds[k]);
            begin_episode(i);
        }
    }

    // Throws std::invalid_argument (before touching any env) if an action code
    // is outside [0, num_actions).
    void validate(const int32_t* actions) const {
        const int n_actions = num_actions();
        for (int i = 0; i < num_envs_; ++i) {
            if (actions[i] < 0 || actions[i] >= n_actions) {
                throw std::invalid_argument("action " + std::to_string(actions[i]) + " of env " +
                                            std::to_string(i) + " is not in [0, " +
                                            std::to_string(n_actions) + ")");
            }
        }
    }

    // actions must have been validated. Outputs have num_envs entries.
    virtual void step(const int32_t* actions, float* rewards, uint8_t* terminated,
                      uint8_t* truncated) = 0;

    // mask has num_envs * num_actions entries (row-major).
    void legal_mask(uint8_t* mask) const {
        const size_t a = static_cast<size_t>(num_actions());
        for (int i = 0; i < num_envs_; ++i) legal_env(i, mask + static_cast<size_t>(i) * a);
    }

    const std::vector<int32_t>& elapsed() const { return elapsed_; }
    const std::vector<uint8_t>& success() const { return success_; }
    const std::vector<uint8_t>& done() const { return done_; }
    const std::vector<float>& episode_return() const { return episode_return_; }

  protected:
    // The per-env loop, instantiated for each (final) game class so that its
    // step_env calls are direct and inlinable rather than one virtual call per env.
    template <class Game>
    void step_all(Game& game, const int32_t* actions, float* rewards, uint8_t* terminated,
                  uint8_t* truncated) {
        for (int i = 0; i < num_envs_; ++i) {
            const size_t u = static_cast<size_t>(i);
            if (done_[u]) {
                if (auto_reset_ == AutoReset::next_step) {
                    begin_episode(i);
                    rewards[u] = 0.0f;
                    terminated[u] = 0;
                    truncated[u] = 0;
                } else {
                    rewards[u] = 0.0f;
                    terminated[u] = last_terminated_[u];
                    truncated[u] = last_truncated_[u];
                    success_[u] = 0;
                }
                continue;
            }
            success_[u] = 0;
            ++elapsed_[u];
            bool term = false;
            bool trunc = false;
            const float reward = game.Game::step_env(i, actions[i], term, trunc);
            trunc = trunc && !term;
            rewards[u] = reward;
            terminated[u] = term;
            truncated[u] = trunc;
            episode_return_[u] += reward;
            if (term || trunc) {
                done_[u] = 1;
                last_terminated_[u] = term;
                last_truncated_[u] = trunc;
                const bool won = episode_return_[u] > 0.0f;
                if (auto_reset_ == AutoReset::same_step) begin_episode(i);
                success_[u] = won;
            }
        }
    }

    // Draws a new episode for env i from rng_[i].
    virtual void reset_env(int i) = 0;
    // Applies a validated action; elapsed_[i] already counts this step.
    virtual float step_env(int i, int action, bool& terminated, bool& truncated) = 0;
    virtual void legal_env(int i, uint8_t* mask_row) const = 0;

    void begin_episode(int i) {
        const size_t u = static_cast<size_t>(i);
        elapsed_[u] = 0;
        done_[u] = 0;
        success_[u] = 0;
        last_terminated_[u] = 0;
        last_truncated_[u] = 0;
        episode_return_[u] = 0.0f;
        reset_env(i);
    }

    int num_envs_;
    AutoReset auto_reset_;
    std::vector<Rng> rng_;
    std::vector<int32_t> elapsed_;
    std::vector<uint8_t> done_;
    std::vector<uint8_t> success_;
    std::vector<uint8_t> last_terminated_;
    std::vector<uint8_t> last_truncated_;
    std::vector<float> episode_return_;
};

}  // namespace vlrl
