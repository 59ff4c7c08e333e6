"""`llamacy batch --ray` and llamacy.ray on a real two-node local Ray cluster, no mocks.

The scenarios (tests/ray_scenarios.py) run in one child process inside a network namespace of its
own with only loopback up -- Ray picks the machine's primary address otherwise, and tests must not
send traffic anywhere. Deselect with `-m "not ray"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    pytest.importorskip("ray")
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs Linux, root, unshare and ip for a loopback-only network namespace")
    work = tmp_path_factory.mktemp("ray")
    script = f"ip link set lo up && exec {sys.executable} {HERE / 'ray_scenarios.py'} {work}"
    r = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=900)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("FINDINGS ")), None)
    assert r.returncode == 0 and line, f"scenarios failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return json.loads(line[len("FINDINGS "):])


def test_ray_run_equals_the_local_run(findings):
    assert findings["cli_returncode"] == 0, findings["cli_stderr"]
    assert findings["cli_equal"] and findings["cli_duplicates"] == 0 and findings["n"] == 28


def test_a_killed_actor_loses_nothing(findings):
    assert findings["kill_killed"], "no actor was killed"
    assert findings["kill_facts"]["nodes"] == 2 and findings["kill_facts"]["actors_lost"] == 1
    assert findings["kill_equal"] and findings["kill_duplicates"] == 0


def test_a_killed_driver_resumes(findings):
    assert 6 <= findings["driver_written_before_kill"] < findings["n"]
    assert findings["driver_rerun_returncode"] == 0
    assert findings["driver_equal"] and findings["driver_duplicates"] == 0


def test_a_node_with_another_file_is_named(findings):
    assert findings["mismatch_error"] and "is not the driver's file" in findings["mismatch_error"]
    assert "node " in findings["mismatch_error"]


def test_ray_data_map_batches(findings):
    assert findings["data_equal"] and findings["data_chat_equal"]
    assert {"text", "finish_reason", "prompt_tokens", "completion_tokens"} <= set(findings["data_columns"])


def test_unreachable_cluster_and_missing_ray_are_one_line(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Once\n")
    model = HERE / "data" / "stories260K.gguf"
    r = subprocess.run([sys.executable, "-m", "llamacy", "batch", "-m", str(model), str(src), "-o",
                        str(tmp_path / "o.jsonl"), "--ray", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("llamacy: error: cannot reach the Ray cluster at 127.0.0.1:1")
    assert r.stderr.count("\n") == 1
    code = ("import sys; sys.modules['ray'] = None\n"  # an environment without Ray: the import fails
            "from llamacy._cli import main\n"
            f"sys.exit(main(['batch', '-m', {str(model)!r}, {str(src)!r}, '-o', {str(tmp_path / 'p.jsonl')!r}, "
            "'--ray']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'pip install "llamacy[ray]"' in r.stderr and r.stderr.count("\n") == 1
