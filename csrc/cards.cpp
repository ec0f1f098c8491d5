#include "cards.h"

#include <stdexcept>

#include "solver.h"

namespace vlrl {

FaceRule parse_face_rule(const std::string& name) {
    if (name == "10") return FaceRule::ten;
    if (name == "11-12-13") return FaceRule::eleven_twelve_thirteen;
    throw std::invalid_argument("face_rule must be \"10\" or \"11-12-13\", got \"" + name + "\"");
}

Sampling parse_sampling(const std::string& name) {
    if (name == "deck") return Sampling::deck;
    if (name == "at_least_one_face") return Sampling::at_least_one_face;
    if (name == "with_replacement") return Sampling::with_replacement;
    throw std::invalid_argument(
        "sampling must be \"deck\", \"at_least_one_face\" or \"with_replacement\", got \"" + name +
        "\"");
}

SuitFilter parse_suit_filter(const std::string& name) {
    if (name == "all") return SuitFilter::all;
    if (name == "black") return SuitFilter::black;
    if (name == "red") return SuitFilter::red;
    throw std::invalid_argument("suits must be \"all\", \"black\" or \"red\", got \"" + name + "\"");
}

namespace {

bool has_face(const Card* hand, int n_cards) {
    for (int i = 0; i < n_cards; ++i) {
        if (is_face(hand[i].rank)) return true;
    }
    return false;
}

}  // namespace

std::vector<Card> draw_hand(Rng& rng, int n_cards, Sampling sampling, SuitFilter suits) {
    if (n_cards < 1) throw std::invalid_argument("n_cards must be >= 1");
    std::vector<Card> hand(static_cast<size_t>(n_cards));
    draw_hand_into(rng, n_cards, sampling, suits, hand.data());
    return hand;
}

void draw_hand_into(Rng& rng, int n_cards, Sampling sampling, SuitFilter suits, Card* hand) {
    int first = 0;
    int last = kNumSuits - 1;
    if (suits == SuitFilter::black) last = 1;
    if (suits == SuitFilter::red) first = 2;
    if (n_cards < 1) throw std::invalid_argument("n_cards must be >= 1");
    if (sampling == Sampling::with_replacement) {
        // Card k of the suit-major deck, without building the deck (Points24 resets).
        const uint64_t size = static_cast<uint64_t>((last - first + 1) * kNumRanks);
        for (int i = 0; i < n_cards; ++i) {
            const int k = static_cast<int>(rng.below(size));
            hand[i] = {static_cast<int8_t>(k % kNumRanks), static_cast<int8_t>(first + k / kNumRanks)};
        }
        return;
    }
    Card deck[kNumRanks * kNumSuits];  // on the stack
    int size = 0;
    for (int s = first; s <= last; ++s) {
        for (int r = 0; r < kNumRanks; ++r) deck[size++] = {static_cast<int8_t>(r), static_cast<int8_t>(s)};
    }
    if (n_cards > size) {
        throw std::invalid_argument("n_cards = " + std::to_string(n_cards) +
                                    " exceeds the deck of " + std::to_string(size) + " cards");
    }
    for (;;) {
        // Partial Fisher-Yates: the first n_cards slots become the hand. Starting
        // from a permuted deck instead of a fresh one still gives a uniform draw.
        for (int i = 0; i < n_cards; ++i) {
            const int j = i + static_cast<int>(rng.below(static_cast<uint64_t>(size - i)));
            std::swap(deck[i], deck[j]);
            hand[i] = deck[i];
        }
        if (sampling == Sampling::deck || has_face(hand, n_cards)) return;
    }
}

std::vector<Card> draw_solvable_hand(Rng& rng, int n_cards, Sampling sampling, SuitFilter suits,
                                     FaceRule rule, int64_t target) {
    if (n_cards > static_cast<int>(kMaxSolverCards)) {
        throw std::invalid_argument("solvable sampling supports at most 6 cards");
    }
    std::vector<int64_t> values(static_cast<size_t>(n_cards));
    for (int attempt = 0; attempt < kMaxSolvableAttempts; ++attempt) {
        std::vector<Card> hand = draw_hand(rng, n_cards, sampling, suits);
        for (int i = 0; i < n_cards; ++i) values[static_cast<size_t>(i)] = card_value(hand[static_cast<size_t>(i)].rank, rule);
        if (solve(values, target, nullptr)) return hand;
    }
    throw std::runtime_error("no hand solvable to target " + std::to_string(target) + " found in " +
                             std::to_string(kMaxSolvableAttempts) + " draws");
}

std::vector<Card> sample_hand(uint64_t seed, int n_cards, Sampling sampling, SuitFilter suits,
                              FaceRule rule, bool require_solvable, int64_t target) {
    Rng rng(seed);
    if (require_solvable) return draw_solvable_hand(rng, n_cards, sampling, suits, rule, target);
    return draw_hand(rng, n_cards, sampling, suits);
}

}  // namespace vlrl
