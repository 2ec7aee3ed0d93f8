"""`edgetl sweep --ray` on real Ray (no mocks): a 2-CPU cluster started with `ray start --head`, then a local Ray
started by the sweep itself. The tiny grid of the fault tests (V1 0.25 at 96 and 128 px, ImageNet weights, a few
photos) must give the in-process sweep's results, resume after workers are killed mid-sweep without redoing
finished units, and mix with in-process runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import FLOWERS, REPO_ROOT, WEIGHTS_DIR, copy_subset
from test_faults import results, stages  # what must not depend on where a unit ran; the traced stages

from edgetl.cli.main import main
from edgetl.measure.results import read_results

FORMATS = "tflite-float32,onnx-float32"  # two runtimes; int8 is the slowest unit to convert
POINTS = ("v1-a0.25-r96", "v1-a0.25-r128")
RAY = Path(sys.executable).with_name("ray")


def sweep_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sweep",
        "--image_dir",
        str(data),
        "--weights_dir",
        str(WEIGHTS_DIR),
        "--backbones",
        "v1",
        "--alphas",
        "0.25",
        "--resolutions",
        "96,128",
        "--formats",
        FORMATS,
        "--how_many_training_steps",
        "100",
        "--calibration_images",
        "12",
        "--min_timed_runs",
        "5",
        "--min_timed_seconds",
        "0",
        "--bottleneck_dir",
        str(out.parent / "bottlenecks"),
        "--output_dir",
        str(out),
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(env: dict, cpus: int = 2, resources: str = "{}"):
    """A real one-node cluster, as `ray start --head` makes one; yields its address. Stopped by its own pid:
    `ray start --block` takes its processes down on SIGTERM (`ray stop` would stop every Ray on the machine)."""
    port = free_port()
    # Its own (short: socket paths) temp dir, so the address file it leaves does not send `auto` to a dead head.
    temp_dir = tempfile.mkdtemp(prefix="ray-head-")
    proc = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={cpus}",
            f"--resources={resources}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("ray start --head failed:\n" + "".join(lines[-30:]))
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_is_running() -> bool:
    from ray._private.services import find_gcs_addresses

    return bool(find_gcs_addresses())


# ---------------------------------------------------------------------------------------------------------
# fast: flags and messages


def test_ray_flags_and_their_errors(tmp_path, capsys):
    from edgetl.cli.main import build_parser
    from edgetl.sweep.ray_tasks import ClusterConfig

    base = ["sweep", "--image_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    assert build_parser().parse_args(base).ray is None
    assert build_parser().parse_args([*base, "--ray"]).ray == "local"
    assert build_parser().parse_args([*base, "--ray", "auto"]).ray == "auto"
    assert main([*base, "--bench_resource", "bench"]) == 2
    assert "--bench_resource names the Ray nodes that measure latency; it needs --ray" in capsys.readouterr().err
    for bad in ({"address": ""}, {"bench_resource": "CPU"}, {"max_retries": -1}):
        with pytest.raises(ValueError):
            ClusterConfig(**bad)


def test_an_unreachable_head_is_one_message_naming_the_fix(tmp_path, capsys):
    args = ["sweep", "--image_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    assert main([*args, "--ray", f"127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Ray head at 127.0.0.1:" in err and "ray start --head" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing is written before the cluster is there"


def test_ray_auto_without_a_cluster_names_the_problem_and_the_fix(tmp_path, capsys, monkeypatch):
    if ray_is_running():
        pytest.skip("a Ray runs on this machine: --ray auto would join it")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no address file left by an earlier `ray start`
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["sweep", "--image_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert "no running Ray cluster found for --ray auto" in err and "ray start --head" in err
    # The address a killed head left behind: one message in seconds, where Ray would retry it for minutes.
    (tmp_path / "ray").mkdir()
    port = free_port()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    assert main(["sweep", "--image_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Ray head at " in err and f":{port} (" in err  # (Ray names the host by its IP)


# ---------------------------------------------------------------------------------------------------------
# slow: real sweeps


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return copy_subset(FLOWERS, tmp_path_factory.mktemp("ray") / "photos", ["daisy", "roses"], 20)


def start_in_process(photos: Path, out: Path) -> subprocess.Popen:
    """The reference: the same sweep without --ray, in a fresh process that must never import Ray."""
    code = (
        "import sys; from edgetl.cli.main import main; code = main(sys.argv[1:]); "
        "print('ray imported:', any(m == 'ray' or m.startswith('ray.') for m in sys.modules)); sys.exit(code)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *sweep_args(photos, out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def finish_in_process(proc: subprocess.Popen) -> None:
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode in (0, 1), stderr[-3000:]
    assert "ray imported: False" in stdout


def _mtimes(out: Path) -> dict[str, int]:
    """Each unit's own output files (sweep_state.json and export.json are rewritten as any unit finishes)."""
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns
        for p in out.glob("points/*/**/*")
        if p.is_file() and p.name not in ("sweep_state.json", "export.json")
    }


@pytest.mark.slow
def test_cluster_sweep_equals_in_process_and_a_killed_worker_costs_only_its_units(photos, tmp_path, monkeypatch):
    from edgetl.pick.pareto import pareto_front, pick

    out, in_process = tmp_path / "run", tmp_path / "in_process" / "run"
    baseline = start_in_process(photos, in_process)  # beside step 1, which leaves CPU idle while it starts
    # 1. `edgetl sweep --ray HEAD` on a 2-CPU cluster whose workers die (SIGKILL) whenever they start converting
    #    onnx-float32; latency measured on the node offering the custom resource `bench`. Token authentication on:
    #    the driver joins with the head's token (~/.ray/auth_token), in a fresh process (Ray reads the mode once).
    token = tmp_path / "ray_auth_token"  # the test's own, not ~/.ray's (a fresh machine has none)
    token.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    with ray_head({**env, "EDGETL_KILL_AT": "convert:onnx-float32"}, cpus=2, resources='{"bench": 1}') as address:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgetl.cli.main",
                *sweep_args(photos, out, "--ray", address, "--bench_resource", "bench"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    finish_in_process(baseline)
    assert {(r.point, r.format) for r in read_results(out)} == {(p, "tflite-float32") for p in POINTS}
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert sum("export onnx-float32 lost" in n and "re-run the same command" in n for n in notes) == 2
    before = _mtimes(out)
    assert not any("onnx" in name for name in before), "a lost unit leaves nothing in the output dir"

    # 2. The same command on a local Ray started by the sweep: only the lost units run.
    trace = tmp_path / "trace.txt"
    monkeypatch.setenv("EDGETL_TRACE", str(trace))  # the local Ray's workers inherit it
    assert main(sweep_args(photos, out, "--ray")) in (0, 3)  # 3: nothing fits the budget
    done = stages(trace)
    assert done.count("convert:onnx-float32") == 2 and done.count("bench:onnx-float32") == 2
    assert not {"features", "head", "convert:tflite-float32", "bench:tflite-float32"} & set(done), done
    assert {k: v for k, v in _mtimes(out).items() if k in before} == before, "finished units were redone"
    assert results(out) == results(in_process)

    # The front and the pick are those of the in-process sweep, given the same latencies.
    reference = {(r.point, r.format): r for r in read_results(in_process)}
    rows = [
        r.__class__(
            **{
                **r.to_dict(),
                **{
                    k: getattr(reference[(r.point, r.format)], k)
                    for k in (
                        "latency_ms_p50",
                        "latency_ms_p90",
                        "latency_ms_p99",
                        "load_ms",
                        "first_inference_ms",
                        "peak_rss_mib",
                    )
                },
            }
        )
        for r in read_results(out)
    ]
    assert {r.identity for r in pareto_front(rows)} == {r.identity for r in pareto_front(list(reference.values()))}
    assert pick(rows).chosen.identity == pick(list(reference.values())).chosen.identity
    hostname = socket.gethostname()
    assert all(r.measured_on.startswith(f"{hostname} (node ") for r in read_results(out))
    report = (out / "report.md").read_text()
    assert f"Latency measured on: {hostname} (node " in report and "different machines" not in report
    units = json.loads((out / "ray_units.json").read_text())["units"]
    assert (
        sorted((u["unit"], u["format"]) for u in units)
        == [("bench", "onnx-float32")] * 2 + [("export", "onnx-float32")] * 2
    )

    # 3. An in-process run of the same command finds everything finished.
    trace.unlink()
    assert main(sweep_args(photos, out)) in (0, 3)  # 3: nothing fits the budget
    assert stages(trace) == ["report"] and results(out) == results(in_process)
