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

    int player_sum(int i) const { return hand_sum(player_cards_, i, n_player_[static_cast<size_t>(i)]); }
    int dealer_sum(int i) const { return hand_sum(dealer_cards_, i, n_dealer_[static_cast<size_t>(i)]); }
    bool usable_ace(int i) const {
        return has_usable_ace(player_cards_, i, n_player_[static_cast<size_t>(i)]);
    }
    int dealer_showing(int i) const {
        return card_value(dealer_cards_[static_cast<size_t>(i) * kMaxHandCards], FaceRule::ten);
    }

  protected:
    void reset_env(int i) override {
        const size_t u = static_cast<size_t>(i);
        std::fill(player_cards_.begin() + static_cast<std::ptrdiff_t>(u * kMaxHandCards),
                  player_cards_.begin() + static_cast<std::ptrdiff_t>((u + 1) * kMaxHandCards), -1);
        std::fill(player_suits_.begin() + static_cast<std::ptrdiff_t>(u * kMaxHandCards),
                  player_suits_.begin() + static_cast<std::ptrdiff_t>((u + 1) * kMaxHandCards), -1);
        std::fill(dealer_cards_.begin() + static_cast<std::ptrdiff_t>(u * kMaxHandCards),
                  dealer_cards_.begin() + static_cast<std::ptrdiff_t>((u + 1) * kMaxHandCards), -1);
        std::fill(dealer_suits_.begin() + static_cast<std::ptrdiff_t>(u * kMaxHandCards),
                  dealer_suits_.begin() + static_cast<std::ptrdiff_t>((u + 1) * kMaxHandCards), -1);
        n_player_[u] = 0;
        n_dealer_[u] = 0;
        draw(i, dealer_cards_, dealer_suits_, n_dealer_);
        draw(i, dealer_cards_, dealer_suits_, n_dealer_);
        draw(i, player_cards_, player_suits_, n_player_);
        draw(i, player_cards_, player_suits_, n_player_);
    }

    float step_env(int i, int action, bool& terminated, bool&) override {
        if (action == 1) {
            draw(i, player_cards_, player_suits_, n_player_);
            if (player_sum(i) > 21) {
                terminated = true;
                return -1.0f;
            }
            return 0.0f;
        }
        terminated = true;
        while (dealer_sum(i) < 17) draw(i, dealer_cards_, dealer_suits_, n_dealer_);
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

    static int raw_sum(const std::vector<int8_t>& cards, int i, int count, bool& has_ace) {
        int total = 0;
        has_ace = false;
        const size_t base = static_cast<size_t>(i) * kMaxHandCards;
        for (int c = 0; c < count; ++c) {
            const int v = card_value(cards[base + static_cast<size_t>(c)], FaceRule::ten);
            has_ace |= v == 1;
            total += v;
        }
        return total;
    }

    static bool has_usable_ace(const std::vector<int8_t>& cards, int i, int count) {
        bool has_ace = false;
        const int total = raw_sum(cards, i, count, has_ace);
        return has_ace && total + 10 <= 21;
    }

    static int hand_sum(const std::vector<int8_t>& cards, int i, int count) {
        bool has_ace = false;
        const int total = raw_sum(cards, i, count, has_ace);
        return has_ace && total + 10 <= 21 ? total + 10 : total;
    }

    void draw(int i, std::vector<int8_t>& cards, std::vector<int8_t>& suits,
              std::vector<int32_t>& counts) {
        const size_t u = static_cast<size_t>(i);
        Rng& rng = rng_[u];
        const int rank = static_cast<int>(rng.below(kNumRanks));
        const int suit = static_cast<int>(rng.below(kNumSuits));
        // Cannot overflow: the player busts by card 22 and the dealer stops by card 17.
        const size_t slot = u * kMaxHandCards + static_cast<size_t>(counts[u]);
        cards[slot] = static_cast<int8_t>(rank);
        suits[slot] = static_cast<int8_t>(suit);
        ++counts[u];
    }

    bool natural_;
    std::vector<int8_t> player_cards_;
    std::vector<int8_t> player_suits_;
    std::vector<int8_t> dealer_cards_;
    std::vector<int8_t> dealer_suits_;
    std::vector<int32_t> n_player_;
    std::vector<int32_t> n_dealer_;
};

}  // namespace vlrl
