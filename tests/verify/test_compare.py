"""verify.compare: two reports with the same results compare equal whatever their timings and source hashes; any
other difference is found and named by its place."""

import json
import math

from verify.compare import compare_files, differences, main, normalised

REPORT = {"profile": "tiny", "meta": {"seconds": 3.0, "base_dir": "/a/base-0123456789-0123456789abcdef", "runs": 4},
          "claims": [{"id": "gate3.sparsity", "status": "REPRODUCED", "numbers": {"x": 0.5, "y": math.nan},
                      "runs": [{"run": "rl-0123456789-0123456789abcdef"}], "notes": ["run rl-0123456789-0123456789abcdef"]}]}


def _write(path, report):
    path.write_text(json.dumps(report))
    return path


def test_timings_paths_and_source_hashes_are_ignored(tmp_path):
    other = json.loads(json.dumps(REPORT))
    other["meta"].update(seconds=99.0, base_dir="/b")
    other["claims"][0]["runs"][0]["run"] = "rl-fedcba9876-0123456789abcdef"
    other["claims"][0]["notes"][0] = "run rl-fedcba9876-0123456789abcdef"
    assert compare_files(_write(tmp_path / "a.json", REPORT), _write(tmp_path / "b.json", other)) == []
    assert normalised(REPORT)["claims"][0]["runs"][0]["run"] == "rl-<src>-0123456789abcdef"


def test_a_changed_number_status_or_run_config_is_named(tmp_path):
    other = json.loads(json.dumps(REPORT))
    other["claims"][0]["numbers"]["x"] = 0.5000001
    other["claims"][0]["status"] = "INCONCLUSIVE"
    other["claims"][0]["runs"][0]["run"] = "rl-0123456789-ffffffffffffffff"
    other["meta"]["runs"] = 5
    diff = differences(normalised(REPORT), normalised(other))
    assert {d.split(":")[0] for d in diff} == {"/meta/runs", "/claims[gate3.sparsity]/status",
                                               "/claims[gate3.sparsity]/numbers/x",
                                               "/claims[gate3.sparsity]/runs[0]/run"}


def test_main_exit_codes(tmp_path, capsys):
    a = _write(tmp_path / "a.json", REPORT)
    assert main([str(a), str(a)]) == 0 and "identical results (1 claims)" in capsys.readouterr().out
    b = json.loads(json.dumps(REPORT))
    b["claims"] = []
    assert main([str(a), str(_write(tmp_path / "b.json", b))]) == 1
    assert main([str(a), str(tmp_path / "missing.json")]) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert main([str(a), str(tmp_path / "bad.json")]) == 2
