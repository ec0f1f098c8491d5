// Blackjack with Gymnasium Blackjack-v1's rules (sab = False).
//
// Infinite deck: every card's rank is uniform over A..K (values 1..10, J/Q/K
// = 10), suits uniform (they only matter for rendering). Reset deals the
// dealer two cards, then the player two (gymnasium's order). Actions: 0
// "stand", 1 "hit". Hit: one more card; a bust ends the episode with -1,
// otherwise reward 0. Stand: the dealer draws while its sum is below 17
// (an ace counts 11 when that keeps the sum <= 21), then +1 win, 0 draw, -1
// loss (a bust scores 0 points). With natural = true a winning two-card 21
// pays +1.5. No time limit: the episode ends on stand or bust.
#pragma once

#include "batch.h"
#include "cards.h"

namespace vlrl {

constexpr int kMaxHandCards = 24;  // 21 aces + 1 for the player; the dealer stops by 17 cards

class BlackjackBatch final : public GameBatch {
  public:
    BlackjackBatch(int num_envs, uint64_t seed, AutoReset auto_reset, bool natural)
        : GameBatch(num_envs, seed, auto_reset), natural_(natural) {
        const size_t n = static_cast<size_t>(num_envs) * kMaxHandCards;
        player_cards_.assign(n, -1);
        player_suits_.assign(n, -1);
        dealer_cards_.assign(n, -1);
        dealer_suits_.assign(n, -1);
        n_player_.assign(static_cast<size_t>(num_envs), 0);
        n_dealer_.assign(static_cast<size_t>(num_envs), 0);
        player_hand_.assign(static_cast<size_t>(num_envs), {});
        dealer_hand_.assign(static_cast<size_t>(num_envs), {});
        reset(nullptr);
    }

    std::string game() const override { return "Blackjack"; }
    const std::vector<std::string>& action_names() const override {
        static const std::vector<std::string> names = {"stand", "hit"};
        return names;
    }

    const std::vector<int8_t>& player_cards() const { return player_cards_; }
    const std::vector<int8_t>& player_suits() const { return player_suits_; }
    const std::vector<int8_t>& dealer_cards() const { return dealer_cards_; }
    const std::vector<int8_t>& dealer_suits() const { return dealer_suits_; }
    const std::vector<int32_t>& n_player() const { return n_player_; }
    const std::vector<int32_t>& n_dealer() const { return n_dealer_; }

    // Sums with an ace counted as 11 when that keeps the hand at or below 21.
    int player_sum(int i) const { return hand_sum(player_hand_[static_cast<size_t>(i)]); }
    int dealer_sum(int i) const { return hand_sum(dealer_hand_[static_cast<size_t>(i)]); }
    bool usable_ace(int i) const {
        const HandTotal& h = player_hand_[static_cast<size_t>(i)];
        return h.has_ace && h.raw + 10 <= 21;
    }
    int dealer_showing(int i) const {
        return card_value(dealer_cards_[static_cast<size_t>(i) * kMaxHandCards], FaceRule::ten);
    }

    void step(const int32_t* actions, float* rewards, uint8_t* terminated,
              uint8_t* truncated) override {
        step_all(*this, actions, rewards, terminated, truncated);
    }

  protected:
    friend class GameBatch;  // step_all calls step_env directly

    void reset_env(int i) override {
        const size_t u = static_cast<size_t>(i);
        // Only the slots the last hands used hold cards; the rest are still -1.
        const size_t base = u * kMaxHandCards;
        for (size_t c = 0; c < static_cast<size_t>(n_player_[u]); ++c) {
            player_cards_[base + c] = -1;
            player_suits_[base + c] = -1;
        }
        for (size_t c = 0; c < static_cast<size_t>(n_dealer_[u]); ++c) {
            dealer_cards_[base + c] = -1;
            dealer_suits_[base + c] = -1;
        }
        n_player_[u] = 0;
        n_dealer_[u] = 0;
        player_hand_[u] = {};
        dealer_hand_[u] = {};
        draw_dealer(i);
        draw_dealer(i);
        draw_player(i);
        draw_player(i);
    }

    float step_env(int i, int action, bool& terminated, bool&) override {
        if (action == 1) {
            draw_player(i);
            if (player_sum(i) > 21) {
                terminated = true;
                return -1.0f;
            }
            return 0.0f;
        }
        terminated = true;
        while (dealer_sum(i) < 17) draw_dealer(i);
        const int player_score = score(player_sum(i));
        const int dealer_score = score(dealer_sum(i));
        float reward = static_cast<float>((player_score > dealer_score) - (player_score < dealer_score));
        if (natural_ && reward == 1.0f && n_player_[static_cast<size_t>(i)] == 2 &&
            player_sum(i) == 21) {
            reward = 1.5f;
        }
        return reward;
    }

    void legal_env(int, uint8_t* mask_row) const override {
        mask_row[0] = 1;
        mask_row[1] = 1;
    }

  private:
    static int score(int sum) { return sum > 21 ? 0 : sum; }

    struct HandTotal {
        int32_t raw = 0;        // aces counted as 1
        uint8_t has_ace = 0;
    };

    static int hand_sum(const HandTotal& h) {
        return h.has_ace && h.raw + 10 <= 21 ? h.raw + 10 : h.raw;
    }

    void draw_player(int i) {
        draw(i, player_cards_, player_suits_, n_player_, player_hand_[static_cast<size_t>(i)]);
    }
    void draw_dealer(int i) {
        draw(i, dealer_cards_, dealer_suits_, n_dealer_, dealer_hand_[static_cast<size_t>(i)]);
    }

    void draw(int i, std::vector<int8_t>& cards, std::vector<int8_t>& suits,
              std::vector<int32_t>& counts, HandTotal& total) {
        const size_t u = static_cast<size_t>(i);
        Rng& rng = rng_[u];
        // One draw of the 52 cards: rank and suit are each uniform and independent.
        const int card = static_cast<int>(rng.below(kNumRanks * kNumSuits));
        const int rank = card % kNumRanks;
        const int suit = card / kNumRanks;
        // Cannot overflow: the player busts by card 22 and the dealer stops by card 17.
        const size_t slot = u * kMaxHandCards + static_cast<size_t>(counts[u]);
        cards[slot] = static_cast<int8_t>(rank);
        suits[slot] = static_cast<int8_t>(suit);
        ++counts[u];
        const int value = card_value(rank, FaceRule::ten);
        total.raw += value;
        total.has_ace |= value == 1;
    }

    bool natural_;
    std::vector<int8_t> player_cards_;
    std::vector<int8_t> player_suits_;
    std::vector<int8_t> dealer_cards_;
    std::vector<int8_t> dealer_suits_;
    std::vector<int32_t> n_player_;
    std::vector<int32_t> n_dealer_;
    std::vector<HandTotal> player_hand_;
    std::vector<HandTotal> dealer_hand_;
};

}  // namespace vlrl
