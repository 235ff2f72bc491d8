"""The Python target of imported APScheduler jobs: call the job's function with its
args and kwargs, as APScheduler's executors did.

A workflow made by ``cronstream import apscheduler`` has ``call_job`` as its handler,
and each schedule's input names the function (``func``, APScheduler's ``func_ref``,
which may reach into a class: ``module:Class.method``) with ``args`` and ``kwargs``.
The workflow's input schema pins ``func`` to its one function. A coroutine function
is awaited on the worker's loop; any other runs in a thread, as APScheduler's thread
pool ran it. The function's module must be importable on the workers.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from apscheduler.util import ref_to_obj

from service.worker.targets.base import PermanentFailure, RunContext


async def call_job(ctx: RunContext) -> Any:
    """Run the job ``ctx.input`` names; a missing function fails the run for good."""
    data = ctx.input if isinstance(ctx.input, dict) else {}
    func_ref, args, kwargs = data.get("func"), data.get("args", []), data.get("kwargs", {})
    if not isinstance(func_ref, str) or not isinstance(args, list) or not isinstance(kwargs, dict):
        raise PermanentFailure("input must be {func: 'module:function', args: [...], kwargs: {}}")
    try:
        func = ref_to_obj(func_ref)
    except (LookupError, ValueError, TypeError) as exc:
        raise PermanentFailure(f"cannot find {func_ref}: {exc}") from None
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    return await asyncio.to_thread(func, *args, **kwargs)
