"""The plumbing every worker shares (the bottom layer of the project): the error hierarchy with its
exit codes (``plumbing.errors``), calling workers on Ray or in-process (``plumbing.remote``), the one
module that imports Ray's exception classes (``plumbing.ray_errors``), seeds (``plumbing.seeds``), a
quiet console (``plumbing.console``) and the base of every config section (``plumbing.config``).

May import: nothing else of the project. Ray only in ``plumbing.remote`` and ``plumbing.ray_errors``,
and only when a Ray object is handled.
"""
