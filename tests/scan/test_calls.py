"""The call graph: function summaries from pass 1, followed by the checks in pass 2."""

from __future__ import annotations

import ast
import dataclasses
import pickle
import textwrap

from pooldoctor.scan.calls import CallGraph, FunctionSummary, combine, relevant, summaries


def summarise(text: str, module: str = "mysite.tasks", package: bool = False) -> CallGraph:
    tree = ast.parse(textwrap.dedent(text))
    file = module.replace(".", "/") + ("/__init__.py" if package else ".py")
    return combine([summaries(tree, module, file, package)])


def test_imports_are_resolved_to_qualified_names() -> None:
    graph = summarise(
        """\
        import mysite.billing as billing
        import mysite.mail
        from . import reports
        from .services import sync_orders as sync
        from ..shared.util import helper

        import asyncio


        async def main():
            await sync()
            await reports.build()
            billing.charge()
            mysite.mail.send()
            helper()
            await asyncio.sleep(1)
            print("done")
        """,
        module="mysite.shop.tasks",
    )
    main = graph.get("mysite.shop.tasks.main")

    assert main is not None
    assert set(main.callees) == {
        "mysite.shop.services.sync_orders",
        "mysite.shop.reports.build",
        "mysite.billing.charge",
        "mysite.mail.send",
        "mysite.shared.util.helper",
    }


def test_relative_import_in_a_package_init_is_from_the_package() -> None:
    graph = summarise(
        "from .services import load\n\ndef run():\n    load()\n", "mysite.shop", package=True
    )
    run = graph.get("mysite.shop.run")

    assert run is not None and run.callees == ("mysite.shop.services.load",)


def test_methods_and_nested_functions_are_summarised() -> None:
    graph = summarise(
        """\
        class Sync:
            async def run(self):
                return await self.load()

            async def load(self):
                return await Order.objects.aget(pk=1)


        def task():
            async def main():
                await Sync().run()
            return main
        """
    )

    assert graph.get("mysite.tasks.Sync.run").callees == ("mysite.tasks.Sync.load",)  # type: ignore[union-attr]
    reach = graph.reaches_async_orm(["mysite.tasks.Sync.run"])
    assert reach is not None
    assert (reach.what, reach.where, reach.via) == (
        "Order.objects.aget",
        "mysite/tasks.py:6",
        "run() → load()",
    )
    # A nested function is summarised on its own; defining it is not calling it.
    assert graph.get("mysite.tasks.task.main") is not None
    assert graph.get("mysite.tasks.task").callees == ()  # type: ignore[union-attr]


def test_cleanup_is_told_apart_by_where_it_runs() -> None:
    graph = summarise(
        """\
        def in_finally():
            try:
                return Order.objects.count()
            finally:
                connections.close_all()


        def after():
            n = Order.objects.count()
            close_old_connections()
            return n


        async def on_executor():
            await sync_to_async(close_old_connections)()
        """
    )

    assert graph.get("mysite.tasks.in_finally").closes == "finally"  # type: ignore[union-attr]
    assert graph.get("mysite.tasks.after").closes == "body"  # type: ignore[union-attr]
    on_executor = graph.get("mysite.tasks.on_executor")
    assert on_executor is not None and on_executor.cleans_executor and not on_executor.closes


def test_sync_to_async_is_followed_to_sync_orm_only_when_thread_sensitive() -> None:
    graph = summarise(
        """\
        def rows():
            return list(Order.objects.all())


        async def sensitive():
            return await sync_to_async(rows)()


        async def insensitive():
            return await sync_to_async(rows, thread_sensitive=False)()


        async def plain():
            return rows()
        """
    )

    reach = graph.reaches_async_orm(["mysite.tasks.sensitive"])
    assert reach is not None and reach.via == "sensitive() → rows()"
    # thread_sensitive=False runs on the loop's executor: PD305's, not the async ORM's thread.
    assert graph.reaches_async_orm(["mysite.tasks.insensitive"]) is None
    # A plain call of sync ORM code from a coroutine is not async ORM use.
    assert graph.reaches_async_orm(["mysite.tasks.plain"]) is None
    assert graph.reaches_sync_orm(["mysite.tasks.plain"]) is not None


def test_depth_is_bounded() -> None:
    chain = "\n".join(f"async def f{i}():\n    await f{i + 1}()\n" for i in range(6))
    graph = summarise(chain + "async def f6():\n    await Order.objects.acount()\n")

    assert graph.reaches_async_orm(["mysite.tasks.f2"]) is not None  # f2 → … → f6: 4 calls
    assert graph.reaches_async_orm(["mysite.tasks.f1"]) is None  # 5 calls
    assert graph.reaches_async_orm(["mysite.tasks.f1"], depth=5) is not None


def test_a_unique_tail_finds_a_function_scanned_from_above_the_import_root() -> None:
    graph = summarise("async def load():\n    await Order.objects.aget()\n", "src.mysite.svc")

    assert graph.get("mysite.svc.load") is not None
    assert graph.get("svc.load") is not None
    assert graph.get("other.load") is None


def test_overlay_and_first_summary_win() -> None:
    first = FunctionSummary("m.f", "m.py", 1, async_orm="X.objects.aget", async_orm_line=2)
    second = dataclasses.replace(first, file="other/m.py")
    graph = combine([[first], [second]])

    assert graph.get("m.f") == first
    overlay = graph.with_functions([dataclasses.replace(first, async_orm="")])
    assert overlay.get("m.f").async_orm == ""  # type: ignore[union-attr]
    assert len(overlay) == 2


def test_summaries_are_small_and_tree_free() -> None:
    # Pass 1 may run in worker processes: summaries travel pickled, and hold no syntax tree.
    [summary] = summaries(ast.parse("async def f():\n    await g()\n"), "m", "m.py", package=False)
    values = dataclasses.astuple(summary)

    assert not any(isinstance(v, ast.AST) for v in values)
    assert pickle.loads(pickle.dumps(summary)) == summary


def test_only_modules_that_may_matter_are_summarised() -> None:
    assert relevant("async def f(): ...")
    assert relevant("sync_to_async(load)")
    assert relevant("connections.close_all()")
    assert not relevant("def double(x):\n    return x * 2\n")
    # Plain ORM modules are many and are parsed in pass 1 only if something else needs them.
    assert not relevant("def load():\n    return Order.objects.get()\n")
