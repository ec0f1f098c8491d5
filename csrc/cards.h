// Playing cards, face-card rules and seeded hand sampling.
//
// Ranks are indices 0..12 for A,2,...,10,J,Q,K; suits are indices 0..3 for
// spades, clubs (black) and hearts, diamonds (red). A card's value is rank+1
// for A..10; J/Q/K are 10 under the "10" face rule and 11/12/13 under
// "11-12-13". Decks are ordered suit-major (all ranks of the first allowed
// suit, then the next) so that a seed picks the same cards everywhere.
//
// Sampling modes:
//   deck               n distinct cards, uniformly without replacement
//   at_least_one_face  as deck, conditioned on a J/Q/K among them (redraw)
//   with_replacement   each card uniformly from the (colour-filtered) deck
// With a solvable target the whole hand is redrawn from the same generator
// until the solver reaches the target (at most kMaxSolvableAttempts draws).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rng.h"

namespace vlrl {

constexpr int kNumRanks = 13;
constexpr int kNumSuits = 4;
constexpr int kMaxSolvableAttempts = 100000;

enum class FaceRule : uint8_t { ten = 0, eleven_twelve_thirteen = 1 };
enum class Sampling : uint8_t { deck = 0, at_least_one_face = 1, with_replacement = 2 };
enum class SuitFilter : uint8_t { all = 0, black = 1, red = 2 };

struct Card {
    int8_t rank;  // 0..12
    int8_t suit;  // 0..3
};

inline int card_value(int rank, FaceRule rule) {
    if (rank >= 10 && rule == FaceRule::ten) return 10;
    return rank + 1;
}

inline bool is_face(int rank) { return rank >= 10; }

FaceRule parse_face_rule(const std::string& name);
Sampling parse_sampling(const std::string& name);
SuitFilter parse_suit_filter(const std::string& name);

// Draws one hand into out[0..n_cards) (no solvability condition, no allocation).
void draw_hand_into(Rng& rng, int n_cards, Sampling sampling, SuitFilter suits, Card* out);

// Draws one hand from rng (no solvability condition). Throws
// std::invalid_argument when n_cards does not fit the deck.
std::vector<Card> draw_hand(Rng& rng, int n_cards, Sampling sampling, SuitFilter suits);

// Draws hands until one is solvable to target under the face rule.
// Throws std::runtime_error when none is found within kMaxSolvableAttempts.
std::vector<Card> draw_solvable_hand(Rng& rng, int n_cards, Sampling sampling, SuitFilter suits,
                                     FaceRule rule, int64_t target);

// Seeded entry point used by the Python facade.
std::vector<Card> sample_hand(uint64_t seed, int n_cards, Sampling sampling, SuitFilter suits,
                              FaceRule rule, bool require_solvable, int64_t target);

}  // namespace vlrl
