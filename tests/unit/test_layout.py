"""The folder tree is the architecture: imports point one way and never in a circle.

Every import statement of every project module counts, including those inside functions (an import
hidden in a function is still an import). Run alone: ``python -m pytest tests/unit/test_layout.py``.

    plumbing  what every worker shares: errors and exit codes, Ray or in-process calls, Ray's
              exception classes, seeds, the console, the config base (bottom: imports nothing else
              of the project)
    shapes    the shapes task: dataset, pixel metric, reward model, committed weights (may import
              plumbing)
    actors    the policy side (may import plumbing and shapes)
    rewards   reward models, servers and their pool (may import plumbing and shapes; never actors,
              and actors never rewards)
    learner   algo -> worker -> driver -> main (and evaluate, the other command), with config and run
              beside them (may import all of the above); worker, run and driver each keep the config
              sections they consume in their `config` module, which imports only the section base,
              and learner.config composes them into the one tree
    scripts   offline scripts: training the shapes models, equivalence checks (may import anything;
              no package above imports them; the tests use scripts/equivalence/common.py)

Ray at the edges: only the plumbing's call layer (and the one module that imports Ray's exception
classes), the reward pool and the driver import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("plumbing", "shapes", "actors", "rewards", "learner", "scripts")

# module prefix -> project prefixes it may import (besides itself)
ALLOWED = {
    "plumbing": ("plumbing",),
    "shapes": ("shapes", "plumbing"),
    "actors": ("actors", "plumbing", "shapes"),
    "rewards": ("rewards", "plumbing", "shapes"),
    "learner.algo": ("learner.algo", "actors.similarity", "plumbing.seeds", "plumbing.errors"),
    "learner.config": (
        "learner.config",
        "learner.algo",
        "learner.worker.config",
        "learner.run.config",
        "learner.driver.config",
        "plumbing",
        "shapes",
        "actors",
        "rewards.config",
    ),
    # a sub-package's config sections: the section base only, so composing the tree pulls in no worker or driver
    "learner.worker.config": ("plumbing.config",),
    "learner.run.config": ("plumbing.config",),
    "learner.driver.config": ("plumbing.config",),
    "learner.worker": ("learner.worker", "learner.algo", "plumbing", "shapes", "actors"),
    "learner.run": ("learner.run", "learner.config", "plumbing", "shapes", "actors"),
    "learner.driver": (
        "learner.driver",
        "learner.worker",
        "learner.algo",
        "learner.run",
        "learner.config",
        "plumbing",
        "shapes",
        "actors",
        "rewards",
    ),
    "learner.main": ("learner", "plumbing", "shapes", "actors", "rewards"),
    "learner.evaluate": ("learner", "plumbing", "shapes", "actors", "rewards"),  # a second command, beside main
    "learner": ("learner",),  # the package docstring module
    "scripts": PACKAGES,  # offline scripts may import anything
}
# modules that may import ray: Ray at the edges only
RAY_ALLOWED = ("plumbing.remote", "plumbing.ray_errors", "rewards.pool", "learner.driver")
# the one module that imports Ray's exception classes (every other module asks it)
RAY_ERRORS = "plumbing.ray_errors"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {m: {i for i in imports_of(p) if i in mods and i != m} for m, p in mods.items()}


def _rule(module: str) -> tuple[str, ...]:
    key = max((k for k in ALLOWED if module == k or module.startswith(k + ".")), key=len)
    return ALLOWED[key]


def test_dependencies_point_one_way():
    bad = []
    for module, deps in graph().items():
        allowed = _rule(module)
        for dep in deps:
            if dep.split(".")[0] == module.split(".")[0] == "learner" and dep == "learner":
                continue
            if not any(dep == a or dep.startswith(a + ".") for a in allowed):
                bad.append(f"{module} imports {dep}")
    assert not bad, "imports against the layout:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_ray_only_at_the_edges():
    offenders = sorted(
        m
        for m, p in project_modules().items()
        if any(i == "ray" or i.startswith("ray.") for i in imports_of(p))
        and not any(m == a or m.startswith(a + ".") for a in RAY_ALLOWED)
    )
    assert not offenders, f"modules importing ray outside the edges: {offenders}"


def test_every_package_says_what_it_holds_and_may_import():
    for init in [p for pkg in PACKAGES for p in (REPO / pkg).rglob("__init__.py")]:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc) > 40, f"{init.relative_to(REPO)} has no docstring saying what the package holds"
        assert "import" in doc, f"{init.relative_to(REPO)}'s docstring does not say what it may import"


def test_actors_and_rewards_do_not_import_each_other():
    g = graph()
    crossing = sorted(
        f"{m} imports {d}"
        for m, deps in g.items()
        for d in deps
        if {m.split(".")[0], d.split(".")[0]} == {"actors", "rewards"}
    )
    assert not crossing, "actors and rewards import each other:\n" + "\n".join(crossing)


def test_ray_exceptions_imported_in_one_place():
    """Only plumbing.ray_errors names ray.exceptions in an import (other modules call ray_errors())."""
    offenders = sorted(
        m
        for m, p in project_modules().items()
        if m != RAY_ERRORS and any(i == "ray.exceptions" or i.startswith("ray.exceptions.") for i in imports_of(p))
    )
    assert not offenders, f"modules importing ray.exceptions themselves (use {RAY_ERRORS}): {offenders}"
    text = {m: p.read_text() for m, p in project_modules().items() if not m.startswith("plumbing.")}
    spelled = sorted(m for m, t in text.items() if "from ray.exceptions import" in t or "import ray.exceptions" in t)
    assert not spelled, f"modules outside plumbing/ importing ray.exceptions: {spelled}"
