"""The prompt cache's bookkeeping and the n-gram draft policy, without a model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from services.inference.promptcache import MIN_REUSE_TOKENS, MIN_ROOM_TOKENS, Entry, PromptCache, options_key
from services.inference.speculation import DraftPolicy

GREEDY = options_key({"max_length": 100, "do_sample": False})


class Rewindable:
    def __init__(self) -> None:
        self.rewound_to: int | None = None
        self.appended: list[list[int]] = []

    def rewind_to(self, n: int) -> None:
        self.rewound_to = n

    def append_tokens(self, tokens) -> None:
        self.appended.append([int(t) for t in tokens])


def entry(tokens, *, model="m", options=GREEDY, capacity=1000, nbytes=10) -> Entry:
    return Entry(model, options, Rewindable(), np.asarray(tokens, dtype=np.int32), capacity, nbytes)


def cache(entries=4, max_bytes=100) -> PromptCache:
    return PromptCache(max_entries=entries, max_bytes=max_bytes, headroom=0)


def test_a_kept_generators_room_grows_with_its_prompt_between_a_floor_and_the_headroom_setting():
    prompts = PromptCache(max_entries=4, max_bytes=100, headroom=1024)
    assert prompts.room(SimpleNamespace(prompt=[1] * 40)) == MIN_ROOM_TOKENS
    assert prompts.room(SimpleNamespace(prompt=[1] * 600)) == 600
    assert prompts.room(SimpleNamespace(prompt=[1] * 5000)) == 1024
    assert PromptCache(max_entries=4, max_bytes=100, headroom=64).room(SimpleNamespace(prompt=[1] * 40)) == 64


def test_where_only_prefilled_kv_is_reusable_the_answer_is_prefilled_again_and_two_tokens_at_least():
    prompts = cache()
    made = entry(range(300))  # a 200-token prompt and its 100-token answer
    made.reusable = 200
    prompts.put(made)
    assert prompts.find("m", GREEDY, list(range(280)) + [7], need=400).reuse == 200
    assert prompts.find("m", GREEDY, list(range(150)), need=400).reuse == 148


def test_settling_prefills_a_kept_answer_again_in_chunks_that_never_leave_one_token():
    prompts = cache()
    made = entry(range(300))  # a 200-token prompt and its 100-token answer
    made.reusable = 200
    prompts.put(made)
    prompts.settle(99)
    assert (made.generator.rewound_to, made.generator.appended[-1], made.reusable) == (200, list(range(200, 298)), 298)
    assert prompts.unsettled() is made
    prompts.settle(99)
    assert made.reusable == 300 and prompts.unsettled() is None
    assert prompts.find("m", GREEDY, list(range(300)) + [5, 6, 7], need=400).reuse == 300


def test_the_longest_shared_prefix_wins_and_is_rewound_to():
    prompts = cache()
    short, long = entry(list(range(50)) + [7] * 10), entry(list(range(80)) + [9] * 10)
    prompts.put(short)
    prompts.put(long)
    found = prompts.find("m", GREEDY, list(range(100)), need=200)
    assert found is long and found.reuse == 80
    prompts.take(found)
    assert long.generator.rewound_to == 80 and len(prompts) == 1


def test_a_repeated_prompt_still_prefills_its_last_token():
    prompts = cache()
    prompts.put(entry(list(range(60)) + [5, 6]))
    assert prompts.find("m", GREEDY, list(range(60)), need=100).reuse == 59


def test_short_prefixes_other_models_other_options_and_too_little_room_are_misses():
    prompts = cache()
    prompts.put(entry(list(range(200)), capacity=300))
    assert prompts.find("m", GREEDY, list(range(MIN_REUSE_TOKENS - 1)) + [-1], need=100) is None
    assert prompts.find("other", GREEDY, list(range(100)), need=100) is None
    assert prompts.find("m", options_key({"do_sample": True, "temperature": 0.7}), list(range(100)), need=100) is None
    assert prompts.find("m", GREEDY, list(range(100)), need=301) is None
    assert prompts.find("m", GREEDY, list(range(100)), need=300).reuse == 99


def test_a_drafting_generator_never_serves_a_request_that_reads_its_logits():
    prompts = cache()
    drafting = entry(list(range(100)))
    drafting.speculative = True
    prompts.put(drafting)
    assert prompts.find("m", GREEDY, list(range(100)), need=100, drafts=False) is None
    assert prompts.find("m", GREEDY, list(range(100)), need=100) is drafting


def test_seeded_sampling_is_never_cached_and_greedy_ignores_the_seed():
    assert options_key({"do_sample": True, "random_seed": 3, "max_length": 9}) is None
    assert options_key({"do_sample": False, "random_seed": 3, "max_length": 9}) == GREEDY


def test_the_least_recently_used_entries_go_first_beyond_the_count_or_the_bytes():
    prompts = cache(entries=2, max_bytes=100)
    first, second, third = (entry([i] * 40, nbytes=30) for i in range(3))
    for each in (first, second, third):
        prompts.put(each)
    assert prompts.find("m", GREEDY, [0] * 40, need=10) is None
    assert prompts.find("m", GREEDY, [1] * 40, need=10) is second
    big = entry([3] * 40, nbytes=80)
    prompts.put(big)
    assert len(prompts) == 1 and prompts.nbytes == 80
    # An entry larger than the whole budget is not kept at all.
    prompts.put(entry([4] * 40, nbytes=101))
    assert len(prompts) == 1


def test_a_taken_entry_returns_as_the_most_recently_used():
    prompts = cache(entries=2)
    older, newer = entry([1] * 40), entry([2] * 40)
    prompts.put(older)
    prompts.put(newer)
    prompts.take(prompts.find("m", GREEDY, [1] * 41, need=10))
    prompts.put(older)
    prompts.put(entry([3] * 40))
    assert prompts.find("m", GREEDY, [2] * 41, need=10) is None
    assert prompts.find("m", GREEDY, [1] * 41, need=10) is older


def test_unloading_a_model_forgets_its_entries():
    prompts = cache()
    prompts.put(entry([1] * 40, model="a"))
    prompts.put(entry([1] * 40, model="b"))
    prompts.drop_model("a")
    assert len(prompts) == 1 and prompts.nbytes == 10


def test_no_entries_or_no_bytes_means_no_cache():
    for prompts in (cache(entries=0), cache(max_bytes=0)):
        prompts.put(entry([1] * 40))
        assert len(prompts) == 0 and prompts.find("m", GREEDY, [1] * 41, need=1) is None


class Candidate:
    def __init__(self, prompt_tokens: int = 100, **fields) -> None:
        self.model_id, self.prompt, self.model = "m", [1] * prompt_tokens, SimpleNamespace(steps_agree=True)
        self.guidance, self.score_prompt, self.processor, self.top_logprobs = None, False, None, None
        self.__dict__.update(fields)


def test_drafts_only_for_long_prompts_with_untouched_logits():
    policy = DraftPolicy(enabled=True)
    assert policy.choose(Candidate())
    assert not policy.choose(Candidate(prompt_tokens=10))
    assert not policy.choose(Candidate(top_logprobs=0))
    assert not policy.choose(Candidate(guidance=("regex", "a+")))
    assert not policy.choose(Candidate(model=SimpleNamespace(steps_agree=False)))
    assert not DraftPolicy(enabled=False).choose(Candidate())


def test_drafts_that_did_not_pay_back_off_exponentially_and_are_tried_again():
    policy = DraftPolicy(enabled=True)
    slower = {"rounds": 10, "observed_speedup": 0.8}
    policy.observe("m", slower)
    assert [policy.choose(Candidate()) for _ in range(2)] == [False, True]
    policy.observe("m", slower)
    assert [policy.choose(Candidate()) for _ in range(3)] == [False, False, True]
    policy.observe("m", slower)
    # Asking does not use up a skip; only a request that starts does.
    assert [policy.allows(Candidate()) for _ in range(3)] == [False, False, False]
    assert [policy.choose(Candidate()) for _ in range(5)] == [False, False, False, False, True]
    policy.observe("m", {"rounds": 10, "observed_speedup": 1.5})
    policy.observe("m", {"rounds": 1, "observed_speedup": 0.1})  # too few rounds to judge
    assert policy.choose(Candidate())
