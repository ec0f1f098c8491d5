"""GeneralPoints: a multi-turn points game with a verifier (dissertation Section 5.4, D.1).

The agent sees four cards (as an image in GP-VL, as text in GP-L) and answers with one
JSON text per turn: the cards it recognised, their numbers and a formula that should
equal the target. The env parses the answer itself (f), checks it with
``vlrl.cards.verify`` and replies with a verifier message; the next prompt is the system
prompt followed by every earlier answer and verifier message (sequential revision).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from vlrl.envs import prompts
from vlrl.envs.cards_env import (
    DEFAULT_IMAGE_SIZE,
    TEXT_CHARSET,
    episode_seed,
    observation_space,
)
from vlrl.envs.parsing import PointsAnswer, parse_points_answer
from vlrl.envs.render import blank_image, cards_renderer
from vlrl.envs.revision import RevisionHistory

from vlrl import cards

# Rewards of the dissertation's Appendix D.1 reward design.
REWARD_CORRECT = 5.0
REWARD_WRONG_VALUE = -1.0
REWARD_TIMEOUT = -1.0
REWARD_NOT_THE_CARDS = -2.0
REWARD_ILLEGAL = -3.0
REWARD_WRONG_RECOGNITION = -1.5

_REWARDS = {
    "correct": REWARD_CORRECT,
    "wrong_value": REWARD_WRONG_VALUE,
    "unknown_number": REWARD_NOT_THE_CARDS,
    "card_count": REWARD_NOT_THE_CARDS,
    "syntax_error": REWARD_ILLEGAL,
    "division_by_zero": REWARD_ILLEGAL,
    "overflow": REWARD_ILLEGAL,
    "no_formula": REWARD_ILLEGAL,
    "wrong_cards": REWARD_WRONG_RECOGNITION,
    "timeout": REWARD_TIMEOUT,
}

MAX_ACTION_LENGTH = 4096
DEFAULT_MAX_VERIFY = 5  # verification steps per hand, the dissertation's default (Appendix D.1)
MIN_CARDS, MAX_CARDS = 2, 6
SAMPLINGS = ("deck", "at_least_one_face", "with_replacement")
SUIT_FILTERS = ("all", "black", "red")
RANDOM_FACE_RULE = "random"  # a fresh general rule each episode: J, Q, K uniform in 1..13


def reward_for(outcome: str) -> float:
    """The reward of one answer's outcome class (verifier outcome or env class)."""
    return _REWARDS[outcome]


class GeneralPointsEnv(gym.Env):
    """GeneralPoints (GP-VL with ``vision=True``, GP-L with ``vision=False``).

    ## Description
    ``num_cards`` cards (four by default) sampled so that a formula reaching ``target``
    exists under the face rule (checked by the solver). Each turn the agent answers with JSON {"cards", "number", "formula"} and
    gets a verifier message; the prompt keeps the whole history of the episode.

    ## Action Space
    Text: the model's whole output. f runs inside ``step``
    (``vlrl.envs.parsing.parse_points_answer``): the answer is the last top-level JSON
    object with a "formula", read by its own keys only, so a ``{"formula": ...}`` nested
    inside it (or inside any decoded object) never counts; broken JSON falls back to
    regular expressions over the text outside the decoded objects (``info["used_fallback"]``).

    ## Observation Space
    Dict(image: Box(0, 255, (S, S, 3), uint8), text: Text). GP-VL: the cards in a 2x2
    grid (other hand sizes: one row) and an empty text; GP-L: a black image and the
    text "Cards: [...]".

    ## Rewards
    +5 correct formula; -1 a legal formula (every card once) with the wrong value;
    -2 a formula whose numbers are not the cards (a number not on them, a card used
    twice or left unused); -3 any other illegal formula (syntax, division by zero,
    overflow, no formula found); GP-VL: -1.5 when the recognised cards are wrong (the
    formula is then not scored); -1 for an answer past ``max_verify`` (not scored).

    ## Episode End
    Terminated on a correct formula; truncated on answer ``max_verify + 1``.

    ## Information
    ``cards`` (rank strings), ``values``, ``solvable``, ``face_rule`` (the episode's),
    ``outcome``, ``turn`` (answers so far), ``verifier_message``, ``used_fallback``,
    ``recognition_correct``, ``formula`` (as read from the answer), ``success`` (a
    correct formula, on the last step).

    ## Arguments
    ``target`` (24), ``num_cards`` (4; 2 to 6: a smaller hand and target make a problem
    a small model can learn), ``face_rule`` ("10", "11-12-13", any "j-q-k" of values
    1..13 such as "7-2-12", or "random": a fresh "j-q-k" each episode, stated in the
    prompt), ``sampling`` ("deck", "at_least_one_face", "with_replacement"), ``suits``
    ("all", "black", "red"), ``max_verify`` (5), ``vision`` (True), ``image_size`` (336),
    ``render_mode``.

    ## Version History
    v0: first version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}
    answer_key = "formula"
    takes_text_action = True
    action_names: list[str] = []

    def __init__(
        self,
        target: int = 24,
        num_cards: int = 4,
        face_rule: str = "10",
        sampling: str = "deck",
        suits: str = "all",
        max_verify: int = DEFAULT_MAX_VERIFY,
        vision: bool = True,
        image_size: int = DEFAULT_IMAGE_SIZE,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if face_rule != RANDOM_FACE_RULE:
            try:
                cards.face_values(face_rule)
            except ValueError as error:
                raise ValueError(f"{error}, or {RANDOM_FACE_RULE!r}") from None
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if suits not in SUIT_FILTERS:
            raise ValueError(f"suits must be one of {SUIT_FILTERS}, got {suits!r}")
        if int(target) < 1:
            raise ValueError(f"target must be a positive integer, got {target!r}")
        if isinstance(num_cards, bool) or not isinstance(num_cards, (int, np.integer)):
            raise ValueError(f"num_cards must be an integer from 2 to 6, got {num_cards!r}")
        if not MIN_CARDS <= int(num_cards) <= MAX_CARDS:
            raise ValueError(f"num_cards must be from 2 to 6, got {num_cards!r}")
        if int(max_verify) < 1:
            raise ValueError(f"max_verify must be at least 1, got {max_verify!r}")
        self.target = int(target)
        self.num_cards = int(num_cards)
        self.face_rule = face_rule
        self._check_solvable()
        # The rule of the current episode (``face_rule`` itself unless it is "random").
        self.episode_face_rule = "10" if face_rule == RANDOM_FACE_RULE else face_rule
        self.sampling = sampling
        self.suits = suits
        self.max_verify = int(max_verify)
        self.vision = bool(vision)
        self.image_size = int(image_size)
        self.render_mode = render_mode
        layout = "grid" if self.num_cards == 4 else "row"
        self.renderer = cards_renderer(self.image_size, self.num_cards, layout)
        self.observation_space = observation_space(self.image_size)
        self.action_space = spaces.Text(
            max_length=MAX_ACTION_LENGTH,
            min_length=0,
            charset=TEXT_CHARSET,
        )
        self.cards: list[str] = []
        self.card_suits: list[str] = []
        self.values: list[int] = []
        self.solution: str | None = None
        self.turn = 0
        self.history = RevisionHistory()
        self._image = blank_image(self.image_size)
        self._done = False

    # ------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.face_rule == RANDOM_FACE_RULE:
            low, high = cards.FACE_VALUE_RANGE
            drawn = self.np_random.integers(low, high + 1, size=3)
            self.episode_face_rule = cards.face_rule_name([int(v) for v in drawn])
        hand = cards.sample_hand(
            episode_seed(self.np_random),
            n_cards=self.num_cards,
            sampling=self.sampling,
            suits=self.suits,
            face_rule=self.episode_face_rule,
            solvable_target=self.target,
        )
        self.cards = [rank for rank, _ in hand]
        self.card_suits = [suit for _, suit in hand]
        self.values = [cards.card_value(rank, self.episode_face_rule) for rank in self.cards]
        self.solution = cards.solve(self.values, self.target)
        self.turn = 0
        self._done = False
        self.history.reset(self.system_prompt(cot=True))
        if self.vision:
            ranks = np.array([[cards.RANKS.index(r) for r in self.cards]])
            suits = np.array([[cards.SUITS.index(s) for s in self.card_suits]])
            self._image = self.renderer.render(ranks, suits)[0]
        else:
            self._image = blank_image(self.image_size)
        info = self._base_info()
        info.update(
            outcome="", turn=0, verifier_message="", used_fallback=False, formula="", success=False
        )
        return self._observation(), info

    def step(self, action):
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        text = self._as_text(action)
        self.turn += 1
        answer = parse_points_answer(text)
        recognised = self._recognised(answer)
        value = None
        detail = None
        if self.turn > self.max_verify:
            outcome = "timeout"
        elif self.vision and not recognised:
            outcome = "wrong_cards"
        elif not answer.formula:
            outcome = "no_formula"
        else:
            verdict = cards.verify(answer.formula, self.values, self.target)
            outcome = verdict.outcome
            value = verdict.value
            if outcome == "card_count":
                detail = self._card_count_detail(verdict.numbers)
        reward = reward_for(outcome)
        terminated = outcome == "correct"
        truncated = outcome == "timeout"
        message = prompts.general_points_verifier_message(outcome, self.target, value, detail)
        self.history.add(text, message)
        self._done = terminated or truncated
        info = self._base_info()
        info.update(
            outcome=outcome,
            turn=self.turn,
            verifier_message=message,
            used_fallback=answer.used_fallback,
            recognition_correct=recognised,
            formula=answer.formula,
            success=terminated,
        )
        return self._observation(), reward, terminated, truncated, info

    def render(self):
        return self._image if self.render_mode == "rgb_array" else None

    # ------------------------------------------------------------- agent facing

    def system_prompt(self, cot: bool = True) -> str:
        """v_0^in for the current hand."""
        shown = None if self.vision else self.cards
        return prompts.general_points_prompt(
            shown, self.target, self.episode_face_rule, cot, n_cards=self.num_cards
        )

    def prompt(self, cot: bool = True) -> str:
        """The system prompt followed by every earlier answer and verifier message."""
        return RevisionHistory(self.system_prompt(cot), list(self.history.turns)).render()

    def state_key(self) -> tuple:
        """A hashable key of the state the agent answers in: the hand (ranks and suits) and
        the number of answers given so far (the revision history's texts are left out)."""
        return (tuple(self.cards), tuple(self.card_suits), self.turn)

    def expert_response(self, cot: bool = True) -> str:
        """The solver's answer: true cards and numbers and a correct formula."""
        if self.solution is None:  # cannot happen: hands are drawn solvable
            raise RuntimeError("the current hand has no solution")
        return prompts.general_points_expert(
            self.cards, self.values, self.solution, self.target, cot
        )

    # ----------------------------------------------------------------- helpers

    def _check_solvable(self) -> None:
        """Refuse a (num_cards, target) pair no hand can reach: the sampler would
        otherwise search 100,000 hands at the first reset and fail there."""
        if self.face_rule == RANDOM_FACE_RULE:
            high = cards.FACE_VALUE_RANGE[1]
        else:
            high = max(10, *cards.face_values(self.face_rule))
        solvable, _ = cards.count_solvable(1, high, self.num_cards, self.target)
        if solvable == 0:
            raise ValueError(
                f"no hand of {self.num_cards} cards reaches target {self.target} under "
                f"face rule {self.face_rule!r}; choose a smaller target or more cards"
            )

    @staticmethod
    def _as_text(action: Any) -> str:
        if isinstance(action, str):
            return action
        if isinstance(action, bytes):
            return action.decode("utf-8", errors="replace")
        raise TypeError(
            f"GeneralPoints takes the model's text as action, got {type(action).__name__}"
        )

    def _recognised(self, answer: PointsAnswer) -> bool:
        if answer.cards is None:
            return False
        return Counter(answer.cards) == Counter(self.cards)

    def _card_count_detail(self, numbers: tuple[int, ...]) -> str:
        used = Counter(int(n) for n in numbers)
        available = Counter(self.values)
        return "reused" if any(used[v] > available[v] for v in used) else "unused"

    def _observation(self) -> dict[str, Any]:
        text = "" if self.vision else "Cards: [" + ", ".join(f"'{c}'" for c in self.cards) + "]"
        return {"image": self._image.copy(), "text": text}

    def _base_info(self) -> dict[str, Any]:
        return {
            "cards": list(self.cards),
            "values": list(self.values),
            "solvable": self.solution is not None,
            "face_rule": self.episode_face_rule,
        }
