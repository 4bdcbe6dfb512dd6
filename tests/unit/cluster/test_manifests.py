"""The KubeRay manifests in cluster/ are accepted by the ray.io/v1 CRDs and agree with the project.

Every RayJob and RayCluster in cluster/*.yaml is validated against the CRD schemas vendored in
tests/unit/cluster/kuberay/ (source and version in its README; strictly: an unknown field is an error, as `kubectl
apply`'s default
--validate=strict has it, where the CRD alone would silently drop it). The other tests check
what a schema cannot: Ray versions, the image tag, the entrypoint's config, GPUs, the run volume.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from learner.config import Config, load_config

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "cluster"
SCHEMA_DIR = Path(__file__).parent / "kuberay"
SCHEMA_FILES = {"RayJob": "rayjob.v1.schema.json", "RayCluster": "raycluster.v1.schema.json"}
PRESET = CLUSTER / "sd_turbo_aesthetic.yaml"  # what raycluster.yaml is sized for (it has no entrypoint)
GPU = "nvidia.com/gpu"


def _manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(CLUSTER.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in SCHEMA_FILES:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


MANIFESTS = _manifests()
RAYJOBS = [(name, doc) for name, doc in MANIFESTS if doc["kind"] == "RayJob"]
by_manifest = pytest.mark.parametrize("doc", [d for _, d in MANIFESTS], ids=[n for n, _ in MANIFESTS])
by_rayjob = pytest.mark.parametrize("doc", [d for _, d in RAYJOBS], ids=[n for n, _ in RAYJOBS])


def _pyproject_field(pattern: str) -> str:
    # A regex, not tomllib: the project supports Python 3.10, which has no tomllib.
    (value,) = re.findall(pattern, (REPO / "pyproject.toml").read_text(), re.M)
    return value


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def _pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(group name, pod spec) of the head and every worker group."""
    spec = _cluster_spec(doc)
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    pods += [(g["groupName"], g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])]
    return pods


def _entrypoint_args(doc: dict) -> dict[str, str]:
    """`python -m learner.main --config X --run-dir Y` -> {'--config': X, '--run-dir': Y}."""
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "learner.main"], f"entrypoint is not learner.main: {argv}"
    return dict(zip(argv[3::2], argv[4::2]))


def _config_of(doc: dict) -> Config:
    path = _entrypoint_args(doc)["--config"] if doc["kind"] == "RayJob" else PRESET
    return load_config(str(REPO / path))


# ---------------------------------------------------------------- CRD schema validation


def _strict(schema):
    """Copy of a CRD schema in which an object that lists its properties rejects unlisted ones."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":  # a map of field name -> schema; a field may itself be named 'properties'
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        else:
            out[key] = _strict(value)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft7Validator]:
    return {
        kind: jsonschema.Draft7Validator(_strict(json.loads((SCHEMA_DIR / name).read_text())))
        for kind, name in SCHEMA_FILES.items()
    }


def _errors(validators, doc: dict) -> list[str]:
    errors = validators[doc["kind"]].iter_errors(doc)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def test_cluster_holds_a_rayjob_and_a_raycluster():
    assert {doc["kind"] for _, doc in MANIFESTS} == {"RayJob", "RayCluster"}, [n for n, _ in MANIFESTS]


@by_manifest
def test_manifest_matches_crd_schema(validators, doc):
    assert doc["apiVersion"] == "ray.io/v1"
    assert _errors(validators, doc) == []


@by_manifest
@pytest.mark.parametrize(
    "field, value",
    [("replicas", "six"), ("maxReplicas", 6.5), ("rayStartParams", {"num-cpus": 0})],
    ids=["replicas-str", "maxReplicas-float", "rayStartParams-int-value"],
)
def test_wrong_field_type_fails_validation(validators, doc, field, value):
    # Proves the validation is live: the same manifest with one mistyped field is rejected.
    broken = copy.deepcopy(doc)
    _cluster_spec(broken)["workerGroupSpecs"][0][field] = value
    errors = _errors(validators, broken)
    assert errors and all(field in e for e in errors), errors


@by_manifest
def test_unknown_field_fails_validation(validators, doc):
    broken = copy.deepcopy(doc)
    _cluster_spec(broken)["workerGroupSpecs"][0]["minReplica"] = 1  # typo of minReplicas
    assert any("minReplica" in e for e in _errors(validators, broken))


# ---------------------------------------------------------------- agreement with the project


def test_ray_version_is_pinned_installed_and_in_every_manifest():
    pin = _pyproject_field(r'^\s*"ray\[default\]==([^"]+)",?$')  # pyproject.toml: "ray[default]==2.60.0"
    assert ray.__version__ == pin, "the installed Ray is not the pinned one"
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"^ARG RAY_VERSION={re.escape(pin)}$", dockerfile, re.M), "cluster/Dockerfile's RAY_VERSION"
    for name, doc in MANIFESTS:
        assert _cluster_spec(doc)["rayVersion"] == pin, name


@by_rayjob
def test_entrypoint_config_exists_and_validates(doc):
    config_path = REPO / _entrypoint_args(doc)["--config"]
    assert config_path.is_file(), f"{config_path} does not exist"
    config = load_config(str(config_path))
    assert config.ray.enabled and config.ray.address is None  # joins the job's cluster through RAY_ADDRESS


def test_image_is_the_documented_tag():
    name, version = _pyproject_field(r'^name = "(.+)"$'), _pyproject_field(r'^version = "(.+)"$')
    tag = f"{name}:{version}"  # sdpo-ray:0.1.0
    build = f"docker build -f cluster/Dockerfile -t {tag} ."
    assert build in (CLUSTER / "Dockerfile").read_text(), f"cluster/Dockerfile should document `{build}`"
    assert build in (CLUSTER / "README.md").read_text(), f"cluster/README.md should document `{build}`"
    for manifest, doc in MANIFESTS:
        for group, pod in _pod_specs(doc):
            for container in pod["containers"]:
                assert container["image"] == tag, f"{manifest} {group}/{container['name']}"


@by_manifest
def test_gpu_workers_request_gpus(doc):
    head, *workers = _pod_specs(doc)
    assert workers, "no worker group"
    assert all(GPU not in c["resources"].get("limits", {}) for c in head[1]["containers"]), "the head holds no GPU"
    for group, pod in workers:
        (container,) = pod["containers"]
        resources = container["resources"]
        assert int(resources["limits"][GPU]) >= 1, group
        assert resources["requests"] == resources["limits"], f"{group}: requests must equal limits"


def _gpus_needed(config: Config) -> int:
    """GPUs Ray needs for the config's actors: an actor asking >= 1 GPU holds whole GPUs alone;
    fractional asks share GPUs, packed first-fit. Preset: 4 policy workers x 0.9, reward 0.1 beside
    one of them: 4."""
    asks = [config.rollout.num_gpus] * config.rollout.num_actors
    asks += [config.reward.num_gpus] * config.reward.num_servers + [
        config.learner.num_gpus
    ] * config.learner.num_workers
    whole = sum(math.ceil(a) for a in asks if a >= 1)
    free: list[float] = []  # spare capacity of each shared GPU
    for ask in sorted((a for a in asks if 0 < a < 1), reverse=True):
        slot = next((i for i, f in enumerate(free) if f >= ask - 1e-9), None)
        if slot is None:
            free.append(1.0 - ask)
        else:
            free[slot] -= ask
    return whole + len(free)


@by_manifest
def test_workers_fit_the_config(doc):
    config = _config_of(doc)
    spec = _cluster_spec(doc)
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", "actors must not land on the head"
    gpus = cpus = 0.0
    for group in spec["workerGroupSpecs"]:
        pods = group["maxReplicas"] if spec.get("enableInTreeAutoscaling") else group["replicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpus += pods * int(limits.get(GPU, 0))
        cpus += pods * float(limits["cpu"])
    assert _gpus_needed(config) <= gpus
    cpus_needed = (
        config.rollout.num_actors * config.rollout.num_cpus
        + config.reward.num_servers * config.reward.num_cpus
        + config.learner.num_workers * config.learner.num_cpus
    )
    assert cpus_needed <= cpus


def test_gpus_needed_packs_fractions():
    config = load_config(str(PRESET))
    assert _gpus_needed(config) == 4  # 4 x 0.9, and 0.1 beside one of them
    disaggregated = load_config("sd_turbo_disaggregated")
    assert _gpus_needed(disaggregated) == 6  # 4 rollout x 1 + learner 1 whole, 0.25 on a sixth GPU
    shared = load_config(
        "sd_turbo_disaggregated", ["reward.num_servers=4", "learner.num_gpus=0.5", "rollout.num_gpus=0.5"]
    )
    assert (
        _gpus_needed(shared) == 4
    )  # five 0.5 + four 0.25 = 3.5 GPUs of asks: 0.5+0.5 | 0.5+0.5 | 0.5+0.25+0.25 | 0.25+0.25


def _run_volume() -> dict:
    (pvc,) = [d for d in yaml.safe_load_all((CLUSTER / "pvc.yaml").read_text()) if d]
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "head and workers on different nodes mount it at once"
    return pvc


@by_manifest
def test_every_pod_mounts_the_run_volume(doc):
    claim = _run_volume()["metadata"]["name"]
    for group, pod in _pod_specs(doc):
        volumes = {v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim}
        for container in pod["containers"]:
            mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in volumes]
            assert mounts == ["/mnt/runs"], f"{group}/{container['name']} must mount {claim} at /mnt/runs"
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["RAY_USAGE_STATS_ENABLED"] == "0", group
            assert env["HF_HOME"].startswith("/mnt/runs/"), f"{group}: the HF cache belongs on the run volume"
            assert container["workingDir"] == "/app", f"{group}: relative --config paths resolve in /app"


@by_rayjob
def test_rayjob_retries_resume_and_clean_up(doc):
    spec = doc["spec"]
    assert Path(_entrypoint_args(doc)["--run-dir"]).is_relative_to("/mnt/runs"), "the run dir must be on the volume"
    assert spec["backoffLimit"] >= 1, "a failed driver should be retried (and resume from the run dir)"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0


@by_rayjob
def test_job_runtime_env_merges_with_the_drivers(doc, monkeypatch):
    # learner.main's ray.init passes a runtime_env of its own; Ray refuses (ValueError in ray.init)
    # to merge it with a job runtime_env that sets the same key or env var, which would kill the
    # driver on every attempt. Capture what the driver passes and merge it the way ray.init does.
    from ray.runtime_env.runtime_env import _merge_runtime_env

    from learner.driver import connect

    class Captured(Exception):
        pass

    def capture(**kwargs):
        raise Captured(kwargs.get("runtime_env") or {})

    monkeypatch.setattr(ray, "init", capture)
    with pytest.raises(Captured) as driver:
        connect.init_ray(_config_of(doc))
    job_env = yaml.safe_load(doc["spec"].get("runtimeEnvYAML") or "{}")
    assert isinstance(job_env, dict)
    assert _merge_runtime_env(job_env, driver.value.args[0]) is not None, (job_env, driver.value.args[0])
