"""Verifiable-reward tasks over a small character vocabulary.

Every sequence has one static layout: a prompt region of ``prompt_len`` tokens, left-padded,
starting with BOS, then a completion region of ``completion_len`` tokens ending with EOS and
right-padded. A completion is either a plain answer ("46") or, in the off-policy demonstration
format used for SFT, a worked scratchpad in parentheses followed by the answer ("(2+4=6,1+3=4)46").
The verifier strips an optional leading scratchpad and compares the rest with the true answer.

Tasks are data: add an entry to ``TASKS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PAD, BOS, EOS = 0, 1, 2
CHARS = "0123456789+*%=,:()abcdefghijklmnopqrstuvwxyz"
VOCAB = ["<pad>", "<bos>", "<eos>"] + list(CHARS)
VOCAB_SIZE = len(VOCAB)
_CHAR_ID = {c: i + 3 for i, c in enumerate(CHARS)}


def encode(text: str) -> list[int]:
    """Token ids of ``text``; a character outside the vocabulary is refused by name."""
    try:
        return [_CHAR_ID[c] for c in text]
    except KeyError as e:
        raise ValueError(f"Character {e.args[0]!r} is not in the task vocabulary.") from None


def decode(ids) -> str:
    """Text of a completion: stops at the first EOS, skips PAD/BOS."""
    out = []
    for t in np.asarray(ids).tolist():
        if t == EOS:
            break
        if t >= 3:
            out.append(CHARS[t - 3])
    return "".join(out)


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    scratchpad: str  # worked steps, shown only in the demonstration format


@dataclass(frozen=True)
class Task:
    """A verifiable task: a seeded generator, a wrong-answer generator (for the noisy corpus)."""

    name: str
    generate: Callable[[np.random.Generator, int], Problem]
    corrupt: Callable[[np.random.Generator, Problem, int], str]
    max_lengths: Callable[[int], tuple[int, int]]  # size -> (longest prompt, longest demonstration)

    def verify(self, problem: Problem, completion: str) -> bool:
        """True iff the completion, with an optional leading '(...)' scratchpad removed, equals the answer."""
        text = completion
        if text.startswith("("):
            close = text.find(")")
            if close < 0:
                return False
            text = text[close + 1 :]
        return text == problem.answer

    def demonstration(self, problem: Problem) -> str:
        """Off-policy SFT target: worked scratchpad, then the answer."""
        return f"({problem.scratchpad}){problem.answer}"


def _digits(rng, n):
    return "".join(str(d) for d in rng.integers(0, 10, n))


def _gen_add(rng, size):
    """``size``-digit plus max(1, size-1)-digit addition; the scratchpad adds digit by digit with carries."""
    nb = max(1, size - 1)
    a, b = int(_digits(rng, size)), int(_digits(rng, nb))
    sa, sb = str(a).zfill(size), str(b).zfill(size)
    steps, carry = [], 0
    for da, db in zip(reversed(sa), reversed(sb)):
        s = int(da) + int(db) + carry
        steps.append(f"{da}+{db}{'+1' if carry else ''}={s}")
        carry = s // 10
    return Problem(f"{sa}+{sb}=", str(a + b), ",".join(steps))


def _corrupt_number(rng, problem, size):
    true = int(problem.answer)
    while True:
        wrong = true + int(rng.choice([-1, 1])) * int(rng.integers(1, 10 ** max(1, size // 2 + 1)))
        if wrong >= 0 and wrong != true:
            return str(wrong)


def _gen_mod(rng, size):
    m = [5, 7, 9][size % 3]
    a, b = int(rng.integers(0, 10)), int(rng.integers(0, 10))
    return Problem(f"m{m}:{a}*{b}=", str((a * b) % m), str(a * b))


def _corrupt_mod(rng, problem, size):
    m = int(problem.prompt[1])
    wrong = (int(problem.answer) + int(rng.integers(1, m))) % m
    return str(wrong)


def _gen_sort(rng, size):
    s = _digits(rng, size + 1)
    return Problem(f"s:{s}=", "".join(sorted(s)), "".join(sorted(s, reverse=True)))


def _gen_rev(rng, size):
    letters = "abcdefghij"
    s = "".join(letters[i] for i in rng.integers(0, len(letters), size + 1))
    return Problem(f"r:{s}=", s[::-1], ",".join(s[::-1]))


def _corrupt_perm(rng, problem, size):
    ans = problem.answer
    if len(set(ans)) == 1:
        alphabet = "0123456789" if ans[0].isdigit() else "abcdefghij"
        return ans[:-1] + alphabet[(alphabet.index(ans[-1]) + 1) % len(alphabet)]
    while True:
        wrong = "".join(rng.permutation(list(ans)))
        if wrong != ans:
            return wrong


TASKS: dict[str, Task] = {
    "add": Task("add", _gen_add, _corrupt_number, lambda s: (2 * s + 2, 10 * s + 2)),
    "mod": Task("mod", _gen_mod, _corrupt_mod, lambda s: (7, 5)),
    "sort": Task("sort", _gen_sort, _corrupt_perm, lambda s: (s + 4, 2 * s + 4)),
    "rev": Task("rev", _gen_rev, _corrupt_perm, lambda s: (s + 4, 3 * s + 4)),
}


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is refused with the known ones."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; known tasks: {', '.join(TASKS)}.")
    return TASKS[name]


def layout_lengths(task_names, size: int) -> tuple[int, int]:
    """(prompt_len, completion_len) for every task at this size: BOS + longest prompt, longest demonstration + EOS."""
    lengths = [get_task(n).max_lengths(size) for n in task_names]
    return max(p for p, _ in lengths) + 1, max(c for _, c in lengths) + 1


def encode_prompt(prompt: str, prompt_len: int) -> np.ndarray:
    """Left-padded prompt region: PAD..., BOS, prompt characters."""
    ids = [BOS] + encode(prompt)
    if len(ids) > prompt_len:
        raise ValueError(f"Prompt {prompt!r} is longer than prompt_len={prompt_len}.")
    return np.array([PAD] * (prompt_len - len(ids)) + ids, dtype=np.int32)


def encode_completion(text: str, completion_len: int) -> np.ndarray:
    """Right-padded completion region: characters, EOS, PAD..."""
    ids = encode(text) + [EOS]
    if len(ids) > completion_len:
        raise ValueError(f"Completion {text!r} is longer than completion_len={completion_len}.")
    return np.array(ids + [PAD] * (completion_len - len(ids)), dtype=np.int32)


def make_problems(task_name: str, n: int, size: int, seed: int) -> list[Problem]:
    """``n`` problems of one task from a seeded generator."""
    rng = np.random.default_rng(seed)
    task = get_task(task_name)
    return [task.generate(rng, size) for _ in range(n)]


def encode_answer(answer: str, answer_len: int) -> np.ndarray:
    """Answer tokens followed by EOS and PAD, the target the on-device verifier compares against."""
    return encode_completion(answer, answer_len)


OPEN, CLOSE = _CHAR_ID["("], _CHAR_ID[")"]
