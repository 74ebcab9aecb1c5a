"""Shared helpers for the trio_playout tests."""

from __future__ import annotations

from collections.abc import Sequence

import trio_playout as tp


def outputs(history: Sequence[tp.ChatItem], call_id: str) -> list[tp.FunctionCallOutput]:
    return [i for i in history if isinstance(i, tp.FunctionCallOutput) and i.call_id == call_id]


def assistant_messages(history: Sequence[tp.ChatItem]) -> list[tp.ChatMessage]:
    return [i for i in history if isinstance(i, tp.ChatMessage) and i.role == "assistant"]
