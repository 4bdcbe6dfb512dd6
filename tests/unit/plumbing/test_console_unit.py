"""A quiet console, in-process: where a warning comes from and how it is printed. (Each warning once,
the user's options, no library advisories, in fresh interpreters: tests/e2e/plumbing/test_console.py.)"""

from __future__ import annotations

from plumbing.console import format_warning, warning_source


def test_warning_source_is_the_package_under_site_packages():
    assert warning_source("/x/lib/python3.11/site-packages/torch/nn/modules/module.py") == "torch"
    assert warning_source("/usr/lib/python3/dist-packages/numpy/core/x.py") == "numpy"
    assert warning_source("/x/site-packages/six.py") == "six"
    assert warning_source("/repo/learner/driver/loop.py") == "loop"
    assert (
        format_warning(UserWarning("first line\nsecond"), UserWarning, "/s/site-packages/peft/a.py", 3)
        == "warning (peft): first line\n"
    )
