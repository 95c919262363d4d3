"""How the saver stores: appends of O(new data), list channels as deltas, rewrites only for prune and delete_for_runs."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from langgraph.checkpoint.base import empty_checkpoint

from agents_persist.langgraph import Checkpointer

ROOT = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


def _put(saver: Checkpointer, parent: Optional[Dict[str, Any]], values: Dict[str, Any], changed: List[str]) -> Dict[str, Any]:
    """Put a checkpoint of ``values`` after ``parent`` (None: the first), ``changed`` being its new channel versions."""
    previous = saver.get_tuple(parent) if parent is not None else None
    versions = dict(previous.checkpoint["channel_versions"]) if previous is not None else {}
    for channel in changed:
        versions[channel] = saver.get_next_version(versions.get(channel), None)
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = dict(values)
    checkpoint["channel_versions"] = versions
    return saver.put(parent or ROOT, checkpoint, {"source": "loop", "step": len(versions)}, {c: versions[c] for c in changed})


def _logs(saver: Checkpointer) -> Dict[str, int]:
    """Length of every log of the saver's store (checkpoint logs end in /c, item logs hold /i/)."""
    return {info.thread_id[len(saver.prefix) :]: info.message_count for info in saver.backend.iter_threads(saver.prefix)}


def test_each_put_appends_one_record_and_only_the_new_items(make_saver: Callable[..., Checkpointer]) -> None:
    saver = make_saver()
    config = _put(saver, None, {"messages": ["m0"], "config": {"big": "x" * 1000}}, ["messages", "config"])
    messages = ["m0"]
    for i in range(1, 6):
        messages = messages + [f"m{i}"]
        config = _put(saver, config, {"messages": messages, "config": {"big": "x" * 1000}}, ["messages"])
    logs = _logs(saver)
    items = [count for name, count in logs.items() if "/i/" in name]
    assert logs["t//c"] == 6 and items == [6]
    # the unchanged channel is stored once, in the first record; later ones say where it is
    records = saver.backend.load_messages(saver._log_key("t", ""))
    assert [sorted(r.content["vals"]) for r in records] == [["config", "messages"]] + [["messages"]] * 5
    assert all(sorted(r.content["locs"]) == ["config"] for r in records[1:])
    fresh = make_saver().get_tuple(ROOT)
    assert fresh is not None and fresh.checkpoint["channel_values"] == {"messages": messages, "config": {"big": "x" * 1000}}


def test_a_list_changed_in_the_middle_is_stored_from_the_difference(make_saver: Callable[..., Checkpointer]) -> None:
    saver = make_saver()
    config = _put(saver, None, {"messages": ["a", "b", "c", "d"]}, ["messages"])
    config = _put(saver, config, {"messages": ["a", "b", "X", "d", "e"]}, ["messages"])
    assert [count for name, count in _logs(saver).items() if "/i/" in name] == [7]  # 4 + "X", "d", "e"
    latest = make_saver().get_tuple(ROOT)
    assert latest is not None and latest.checkpoint["channel_values"]["messages"] == ["a", "b", "X", "d", "e"]
    first = make_saver().get_tuple(latest.parent_config)  # type: ignore[arg-type]
    assert first is not None and first.checkpoint["channel_values"]["messages"] == ["a", "b", "c", "d"]


def test_a_thread_deleted_under_a_writer_is_stored_whole_again(make_saver: Callable[..., Checkpointer]) -> None:
    writer = make_saver()
    config = _put(writer, None, {"messages": ["a", "b"]}, ["messages"])
    make_saver().delete_thread("t")
    _put(writer, config, {"messages": ["a", "b", "c"]}, ["messages"])
    latest = make_saver().get_tuple(ROOT)
    assert latest is not None and latest.checkpoint["channel_values"]["messages"] == ["a", "b", "c"]


def test_prune_keeps_the_latest_readable_and_drops_unused_item_logs(make_saver: Callable[..., Checkpointer]) -> None:
    saver = make_saver()
    config = _put(saver, None, {"messages": ["a"], "other": 1}, ["messages", "other"])
    config = _put(saver, config, {"messages": ["a", "b"], "other": 1}, ["messages"])
    _put(make_saver(), None, {"messages": ["z"]}, ["messages"])  # another saver: a second item log, then pruned away
    config = _put(saver, config, {"messages": ["a", "b", "c"], "other": 1}, ["messages"])
    saver.put_writes(config, [("messages", ["d"])], "task-1")
    saver.prune(["t"])
    logs = _logs(saver)
    assert logs["t//c"] == 2 and len([name for name in logs if "/i/" in name]) == 1
    latest = make_saver().get_tuple(ROOT)
    assert latest is not None and latest.checkpoint["channel_values"] == {"messages": ["a", "b", "c"], "other": 1}
    assert [w[1:] for w in latest.pending_writes or []] == [("messages", ["d"])]
    assert len(list(saver.list(ROOT))) == 1
    # the saver that pruned goes on appending deltas
    _put(saver, config, {"messages": ["a", "b", "c", "e"], "other": 1}, ["messages"])
    assert make_saver().get_tuple(ROOT).checkpoint["channel_values"]["messages"] == ["a", "b", "c", "e"]  # type: ignore[union-attr]
