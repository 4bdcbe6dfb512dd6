"""Config section consumed by the reward service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plumbing.config import Section


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # Ray takes these types and no others


class PipSpec(_Spec):
    packages: list[str] | str = Field(description="pip requirements, or the path of a requirements.txt on the driver.")
    pip_check: bool = Field(False, description="Run `pip check` after the install.")
    pip_version: str | None = Field(None, description="pip version specifier for the environment, e.g. '==24.0'.")
    pip_install_options: list[str] | None = Field(
        None, description="Options of `pip install` (Ray's default: --disable-pip-version-check --no-cache-dir)."
    )


class UvSpec(_Spec):
    packages: list[str] = Field(description="Requirements installed with `uv pip install`.")
    uv_check: bool = Field(False, description="Run `uv pip check` after the install.")
    uv_version: str | None = Field(None, description="uv version specifier, e.g. '==0.4.0'.")
    uv_pip_install_options: list[str] | None = Field(
        None, description="Options of `uv pip install` (Ray's default: --no-cache)."
    )


class ContainerSpec(_Spec):
    image: str = Field(min_length=1, description="Container image the reward servers run in (podman on the nodes).")
    run_options: list[str] = Field(default_factory=list, description="Extra `podman run` options.")
    worker_path: str | None = Field(None, description="Path of Ray's default_worker.py inside the image.")


class SetupSpec(_Spec):
    setup_timeout_seconds: int = Field(
        600, ge=-1, le=86_400, description="Give up building the environment after this many seconds (-1: never)."
    )

    @model_validator(mode="after")
    def _timeout(self) -> "SetupSpec":
        if self.setup_timeout_seconds <= 0 and self.setup_timeout_seconds != -1:
            raise ValueError("setup_timeout_seconds must be positive, or -1 for no limit")
        return self


_ENV_BUILDERS = ("pip", "uv", "conda")  # each builds the interpreter's environment: at most one
_IMAGE_COMPANIONS = {"env_vars", "config"}  # Ray runs image_uri / container with these fields only


class RuntimeEnvConfig(_Spec):
    """Ray's runtime_env of the reward-server actors (keys as Ray 2.60 spells them), so that a reward
    whose dependencies conflict with the project's runs in its own environment while the rollout and
    learner actors stay in the job's. Needs Ray (ray.enabled); the job's own runtime_env still applies
    to every field set nowhere here (Ray merges env_vars, any other field here replaces the job's)."""

    pip: list[str] | str | PipSpec | None = Field(
        None,
        description="pip requirements installed into a virtualenv on top of the job's packages (or a requirements.txt "
        "path, or Ray's dict form).",
    )
    uv: list[str] | str | UvSpec | None = Field(None, description="As `pip`, installed with uv.")
    conda: str | dict[str, Any] | None = Field(
        None, description="A conda environment's name or prefix, an environment.yaml path, or its contents."
    )
    py_executable: str | None = Field(
        None,
        description="The interpreter (or command) that runs the reward servers, e.g. /envs/imagereward/bin/python of a "
        "prepared virtualenv with the same Ray.",
    )
    py_modules: list[str] | None = Field(
        None,
        description="Local package directories, .py files or .whl files (uploaded by the driver), or remote URIs, put "
        "on the servers' PYTHONPATH.",
    )
    working_dir: str | None = Field(
        None,
        description="A local directory (uploaded by the driver) or archive URI the servers run in, also on their "
        "PYTHONPATH.",
    )
    excludes: list[str] | None = Field(
        None, description="gitignore-style patterns left out of the uploaded py_modules and working_dir."
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables of the reward servers (values are strings: quote numbers in YAML).",
    )
    image_uri: str | None = Field(
        None, description="Container image the reward servers run in (only with env_vars and config)."
    )
    container: ContainerSpec | None = Field(
        None, description="Ray's older container form (only with env_vars and config)."
    )
    config: SetupSpec | None = Field(
        None,
        description="How Ray builds the environment: its setup timeout (Ray's eager_install applies to a job's "
        "runtime_env only).",
    )

    @field_validator("pip", "uv", "conda", mode="before")
    @classmethod
    def _one_of_ray_forms(cls, value: Any, info) -> Any:
        """One clear error for the field's form (Ray takes a list, a file path or a mapping), not one per form."""
        if value is None or isinstance(value, str):
            return value
        if info.field_name == "conda":
            if not isinstance(value, dict):
                raise ValueError(
                    f"must be an environment name or path, or an environment.yaml mapping, not {type(value).__name__}"
                )
            return value
        if isinstance(value, list):
            bad = [v for v in value if not isinstance(v, str)]
            if bad:
                raise ValueError(f"requirements are strings, not {bad[0]!r}")
            return value
        if isinstance(value, dict):
            spec = PipSpec if info.field_name == "pip" else UvSpec
            try:
                return spec.model_validate(value)
            except ValidationError as err:
                first = err.errors()[0]
                msg = (
                    "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
                )
                raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {msg}") from None
        raise ValueError(
            f"must be a list of requirements, a requirements-file path, or {{packages: [...]}}, not "
            f"{type(value).__name__}"
        )

    @field_validator("env_vars", mode="before")
    @classmethod
    def _string_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, v in value.items():
                if not isinstance(v, str):
                    raise ValueError(
                        f'{key}: environment values are strings, not {type(v).__name__} (quote it: {key}: "{v}")'
                    )
        return value

    @model_validator(mode="after")
    def _fields_combine(self) -> "RuntimeEnvConfig":
        given = set(self.to_ray())
        if not given:
            fields = "pip, uv, conda, py_executable, py_modules, working_dir, env_vars, image_uri, container"
            raise ValueError(f"set at least one field ({fields}), or leave runtime_env out")
        builders = sorted(given & set(_ENV_BUILDERS))
        if len(builders) > 1:
            raise ValueError(
                f"{' and '.join(builders)} cannot be combined (each builds the environment); list pip packages inside "
                "a conda environment instead"
            )
        if builders and self.py_executable:
            raise ValueError(f"py_executable names a prepared interpreter; {builders[0]} builds one: use one of them")
        for image in ("image_uri", "container"):
            if image in given and given - _IMAGE_COMPANIONS - {image}:
                others = sorted(given - _IMAGE_COMPANIONS - {image})
                raise ValueError(
                    f"{image} runs the servers in a container and combines only with env_vars and config, not {others}"
                )
        if self.excludes is not None and not (self.py_modules or self.working_dir):
            raise ValueError("excludes applies to the uploaded py_modules and working_dir; neither is set")
        for key in self.env_vars:
            if not key or "=" in key:
                raise ValueError(f"env_vars: '{key}' is not an environment variable name")
        return self

    def to_ray(self) -> dict[str, Any]:
        """The runtime_env dict Ray takes (unset fields left out)."""
        out = self.model_dump(exclude_none=True)
        if not out.get("env_vars"):
            out.pop("env_vars", None)
        return out

    @property
    def changes_code(self) -> bool:
        """Whether the servers may import other code than the driver (anything beyond env_vars and config)."""
        return bool(set(self.to_ray()) - {"env_vars", "config"})

    def local_paths(self) -> list[tuple[str, str]]:
        """(field, path) of every entry that names a path on the driver's machine (not a URI)."""
        entries = [("py_modules", m) for m in self.py_modules or []] + (
            [("working_dir", self.working_dir)] if self.working_dir else []
        )
        for field in ("pip", "uv"):
            value = getattr(self, field)
            packages = value.packages if isinstance(value, (PipSpec, UvSpec)) else value
            if isinstance(packages, str):
                entries.append((field, packages))  # a requirements file
        return [(field, path) for field, path in entries if "://" not in path]


class RewardConfig(Section):  # frozen, unknown keys refused, every float finite
    name: str = Field(
        "jpeg_compressibility",
        description="Registered reward name (`python -m rewards list`), or 'weighted' for the weighted sum in "
        "`weights`.",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="With name 'weighted': reward name -> weight w_k of r = sum_k w_k r_k."
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Reward name -> keyword options of its factory, e.g. {aesthetic: {head: /path/head.pth}}.",
    )
    modules: tuple[str, ...] = Field(
        (),
        description="Python modules imported on the reward servers (and on the driver, unless runtime_env brings "
        "code) first: your own rewards, registered with @register_reward.",
    )
    runtime_env: RuntimeEnvConfig | None = Field(
        None,
        description="Ray runtime_env of the reward servers only (pip, uv, conda, py_executable, py_modules, "
        "working_dir, env_vars, image_uri, ...): a reward with conflicting dependencies runs in its own environment. "
        "Needs ray.enabled; the servers then import `modules` and check reward names and options themselves "
        "(rewards/README.md).",
    )
    num_servers: int = Field(1, ge=1, le=4096, description="Reward-server actors in the pool.")
    num_cpus: float = Field(0.25, gt=0, le=4096, description="CPUs reserved per reward server.")
    num_gpus: float = Field(0.0, ge=0, le=4096, description="GPU fraction per reward server.")
    batch_size: int = Field(
        32,
        ge=1,
        le=65536,
        description="Images gathered (across rollout chunks) into one server call, and the most one model call scores.",
    )
    timeout_s: float = Field(
        300.0, gt=0, le=86_400, description="A reward call not answered in this time is retried on another server."
    )
    start_timeout_s: float = Field(
        1800.0,
        gt=0,
        le=86_400,
        description="On Ray: the reward servers must be up (environment built, model loaded) within this many "
        "seconds, or the run ends with exit 1 naming them (an interpreter in reward.runtime_env that cannot start is "
        "otherwise retried by Ray without end).",
    )
    max_retries: int = Field(
        2, ge=0, le=1000, description="Retries of a failed or timed-out reward call before its pairs are dropped."
    )
    max_restarts: int = Field(
        3, ge=0, le=1_000_000, description="Times Ray restarts a crashed reward server (it rebuilds its model)."
    )
    max_dropped_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Stop the run when more than this fraction of an epoch's pairs lack a valid reward.",
    )

    @model_validator(mode="after")
    def _weighted_needs_weights(self) -> "RewardConfig":
        if (self.name == "weighted") != bool(self.weights):
            raise ValueError("reward.weights is used exactly when reward.name is 'weighted'")
        return self

    @property
    def reward_names(self) -> list[str]:
        return sorted(self.weights) if self.name == "weighted" else [self.name]
