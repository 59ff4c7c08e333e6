"""Ray scenarios on a real two-node local cluster (ray.cluster_utils.Cluster), run by
tests/test_ray.py inside a network namespace with only loopback up (Ray would otherwise bind the
machine's primary address). Prints one JSON object of findings; the tests assert on them.

    unshare -n sh -c 'ip link set lo up && python tests/ray_scenarios.py WORKDIR'
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def records(path: Path) -> dict:
    out: dict = {}
    dup = 0
    for line in path.read_text().splitlines():
        r = json.loads(line)
        dup += r["id"] in out
        out[r["id"]] = r
    return {"records": out, "duplicates": dup}


def main(work: Path) -> None:
    import ray
    from conftest import STORIES_GGUF, llama_weights, vocab_metadata, write_gguf
    from ray.cluster_utils import Cluster

    from llamacy._batch import run
    from llamacy._quants import GGMLType

    found: dict = {}
    work.mkdir(parents=True, exist_ok=True)
    # a model slow enough (~390 tok/s) that a run lasts seconds and actors hold work when killed
    tensors, meta = llama_weights(GGMLType.Q8_0, dim=1024, n_layers=6, n_heads=8, n_kv_heads=4, ffn=2816, vocab=512)
    slow = write_gguf(work / "slow.gguf", tensors, {**meta, **vocab_metadata(STORIES_GGUF)})
    src = work / "in.jsonl"
    rows = [{"id": f"p{i}", "prompt": f"Once upon a time number {i}"} for i in range(24)]
    rows += [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Tell story {i}"}]} for i in range(4)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    opts = dict(parallel=4, n_ctx=256, seed=7, defaults={"max_tokens": 48, "temperature": 0.7})

    t0 = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    addr = cluster.address
    found["cluster_seconds"] = round(time.time() - t0, 1)

    # 1. the local run, then the same job on Ray through the CLI: equal texts, every id once
    run(str(slow), str(src), work / "local.jsonl", workers=1, **opts)
    local = records(work / "local.jsonl")["records"]
    r = subprocess.run([sys.executable, "-m", "llamacy", "batch", "-m", str(slow), str(src), "-o",
                        str(work / "ray.jsonl"), "--ray", addr, "--parallel", "4", "-c", "256", "-s", "7", "-n", "48",
                        "--temp", "0.7", "--quiet"], capture_output=True, text=True, timeout=600)
    found["cli_returncode"], found["cli_stderr"] = r.returncode, r.stderr[-2000:]
    on_ray = records(work / "ray.jsonl")
    texts = {k: v["text"] for k, v in local.items()}
    found["cli_equal"] = {k: v["text"] for k, v in on_ray["records"].items()} == texts
    found["cli_duplicates"] = on_ray["duplicates"]
    found["n"] = len(local)

    # 2. an actor killed mid-run: its chunks go to the other actor, every id written once
    ray.init(address=addr, namespace="llamacy", ignore_reinit_error=True, log_to_driver=False)
    killed: list[str] = []

    def kill_one(rec: dict) -> None:
        if killed:
            return
        names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                       if a["namespace"] == "llamacy" and a["name"].startswith("llamacy-batch-"))
        if len(names) >= 2:
            ray.kill(ray.get_actor(names[-1], namespace="llamacy"))
            killed.append(names[-1])

    s = run(str(slow), str(src), work / "kill.jsonl", workers=1, ray=addr, on_record=kill_one, **opts)
    k = records(work / "kill.jsonl")
    found["kill_killed"] = killed
    found["kill_facts"] = s.ray
    found["kill_equal"] = {i: v["text"] for i, v in k["records"].items()} == {i: v["text"] for i, v in local.items()}
    found["kill_duplicates"] = k["duplicates"]

    # 3. the driver killed with SIGKILL mid-run, then rerun: nothing lost or duplicated
    out = work / "driver.jsonl"
    cmd = [sys.executable, "-m", "llamacy", "batch", "-m", str(slow), str(src), "-o", str(out), "--ray", addr,
           "--parallel", "4", "-c", "256", "-s", "7", "-n", "48", "--temp", "0.7", "--quiet"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 6):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    found["driver_written_before_kill"] = len(out.read_text().splitlines())
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    d = records(out)
    found["driver_rerun_returncode"] = r.returncode
    found["driver_equal"] = {i: v["text"] for i, v in d["records"].items()} == {i: v["text"] for i, v in local.items()}
    found["driver_duplicates"] = d["duplicates"]

    # 4. an actor whose node has another file refuses to start, naming its node
    from llamacy._ray import BatchWorker, fingerprint

    wrong = dict(fingerprint(str(slow)), size=1)
    actor = ray.remote(BatchWorker).remote(str(slow), wrong, {"n_ctx": 64}, 1, 0, {})
    try:
        ray.get(actor.info.remote())
        found["mismatch_error"] = None
    except Exception as e:  # noqa: BLE001
        found["mismatch_error"] = str(e)[-600:]

    # 5. Ray Data: map_batches with the callable class, prompt and messages rows
    import ray.data

    from llamacy import Llama
    from llamacy.ray import LlamaCompletions

    items = [{"id": i, "prompt": f"Lily and {i} friends"} for i in range(6)]
    ds = ray.data.from_items(items)
    got = ds.map_batches(LlamaCompletions, fn_constructor_kwargs={"model_path": str(STORIES_GGUF), "max_tokens": 16,
                                                                 "temperature": 0.0, "n_ctx": 128},
                         concurrency=2, batch_size=4).take_all()
    chats = ray.data.from_items([{"id": 0, "messages": [{"role": "user", "content": "Hello"}]}]).map_batches(
        LlamaCompletions, fn_constructor_kwargs={"model_path": str(STORIES_GGUF), "max_tokens": 12,
                                                 "temperature": 0.0, "n_ctx": 128}, concurrency=1).take_all()
    with Llama(str(STORIES_GGUF), n_ctx=128, verbose=False) as llm:
        want = {it["id"]: llm(it["prompt"], max_tokens=16, temperature=0, repeat_penalty=1.0)["choices"][0]["text"]
                for it in items}
        want_chat = llm.create_chat_completion([{"role": "user", "content": "Hello"}], max_tokens=12, temperature=0,
                                               repeat_penalty=1.0)["choices"][0]["message"]["content"]
    found["data_equal"] = {int(g["id"]): g["text"] for g in got} == want
    found["data_columns"] = sorted(got[0])
    found["data_chat_equal"] = chats[0]["text"] == want_chat
    ray.shutdown()
    cluster.shutdown()
    found["seconds"] = round(time.time() - t0, 1)
    print("FINDINGS " + json.dumps(found))


if __name__ == "__main__":
    threading.excepthook = lambda args: None
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    main(Path(sys.argv[1]))
