"""Work order of the local executor: one compile per compiled program (verify/schedule.py).

The key must join runs that differ only in traced or outside-the-step settings and split runs whose steps
compile differently; the picking rule starts every program once before any second run of it, and a local
pool that follows it never runs two items of one program at once while another program waits."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import verify.execute as execute
from toy_models.config import to_dict
from verify.profiles import get_profile
from verify.schedule import compile_group, pick

P = get_profile("tiny")


def key(spec):
    return compile_group("run", to_dict(spec))


def test_runs_differing_in_seed_rate_or_length_share_a_program():
    a = P.rl(0)
    assert key(a) == key(P.rl(1)) == key(P.rl(0, lr=3e-3)) == key(a.replace(train__max_steps=70, train__target_gain=None))
    assert key(P.sft(0)) == key(P.sft(2, lr=1e-2))
    assert key(a) == key(a.replace(edit__kind="rotate_vo"))  # an edit changes the base weights, not the program


def test_the_static_segment_length_keys_a_program_not_the_evaluation_interval():
    a = P.rl(0).replace(train__eval_every=10, train__checkpoint_every=50)
    assert key(a) == key(a.replace(train__eval_every=20, train__checkpoint_every=10))  # segments of 10 either way
    assert key(a) != key(a.replace(train__eval_every=20, train__checkpoint_every=20))  # segments of 20
    assert key(a) != key(a.replace(train__max_steps=7))  # one segment of 7


def test_method_precision_optimizer_adapter_and_mask_split_programs():
    a = P.rl(0)
    others = [P.sft(0), a.replace(train__precision="fp32"), a.replace(train__optimizer="sgd"),
              a.replace(adapter__kind="lora"), a.replace(mask__kind="principal"), P.rl(0, preset="dapo_clip")]
    keys = [key(a)] + [key(s) for s in others]
    assert len(set(keys)) == len(keys)


def test_pissa_and_milora_share_loras_step_and_bases_key_on_their_shape():
    lora = P.rl(0).replace(adapter__kind="lora")
    assert key(lora) == key(lora.replace(adapter__kind="pissa")) == key(lora.replace(adapter__kind="milora"))
    assert key(lora) != key(lora.replace(adapter__kind="offprincipal"))
    base = to_dict(P.base)
    assert compile_group("base", base) == compile_group("base", to_dict(P.random_base()))


def test_preference_runs_share_a_program_across_seeds_and_rates_and_split_on_their_options():
    dpo = P.spec("dpo", 0)
    assert key(dpo) == key(P.spec("dpo", 1, lr=3e-4))  # the pair set is padded to the pool's rows: same shapes
    assert key(P.rl(0)) == key(P.rl(0).replace(pref__beta=0.5))  # other methods never read the pref section
    others = [P.spec("simpo", 0), dpo.replace(pref__beta=0.5), dpo.replace(pref__label_smoothing=0.1),
              dpo.replace(pref__reference_free=True), dpo.replace(pref__loss_type="ipo"), P.sft(0), P.rl(0)]
    keys = [key(dpo)] + [key(s) for s in others]
    assert len(set(keys)) == len(keys)


def test_pick_starts_new_programs_then_compiled_ones_then_duplicates():
    assert pick(["a", "a", "b"], compiled=set(), compiling={"a"}) == 2  # b's first run before a second a
    assert pick(["a", "b"], compiled={"b"}, compiling={"a"}) == 1  # a compiled b before a duplicate a
    assert pick(["a", "b", "c"], compiled={"a"}, compiling={"b"}) == 2  # new c first
    assert pick(["a", "a"], compiled=set(), compiling={"a"}) == 0  # nothing else: take the duplicate


def test_a_stage_never_compiles_one_program_twice_at_once_when_it_could_wait(monkeypatch):
    """Two workers, plan order a a a b b c: the first a and b start together; no second a or b runs beside its
    first; every item runs once. The control, plan order, starts two a's at once."""
    stage = [("run", {"g": g, "i": i}) for i, g in enumerate("aaabbc")]
    monkeypatch.setattr(execute, "compile_group", lambda kind, data: data["g"])

    def run(order_rule):
        lock, running, clashes, started = threading.Lock(), [], [], []

        def task(kind, data):
            with lock:
                first_of_group = data["g"] not in {d["g"] for d in started}
                if any(d["g"] == data["g"] for d in running) and not done_groups[data["g"]]:
                    clashes.append(data["i"])
                running.append(data)
                started.append(data)
            time.sleep(0.05 if first_of_group else 0.01)  # a first run compiles
            with lock:
                running.remove(data)
                done_groups[data["g"]] = True
            return {"line": ""}

        done_groups = {g: False for g in "abc"}
        monkeypatch.setattr(execute, "_worker_task", task)
        monkeypatch.setattr(execute, "pick", order_rule)
        finished = []
        with ThreadPoolExecutor(2) as pool:
            execute._run_stage(pool, 2, stage, lambda kind, data, result: finished.append(data["i"]))
        return [d["i"] for d in started], clashes, sorted(finished)

    order, clashes, finished = run(pick)
    assert finished == list(range(6)) and sorted(order) == list(range(6))
    assert order[:3] == [0, 3, 5]  # the first run of each program first
    assert clashes == []
    _, control_clashes, _ = run(lambda groups, compiled, compiling: 0)
    assert control_clashes  # plan order runs a second 'a' beside the first while it still compiles
