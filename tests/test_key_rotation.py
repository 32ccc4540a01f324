"""Key rotation: an ``auth.keys`` entry may hold several secrets, all of them that one
key name; a runtime moved to the new secret keeps its running calls (they are the key
name's); the old secret stops working once it is removed."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from proxy.config import parse_config
from proxy.demo.scripted_upstream import ScriptedReply
from proxy.errors import ConfigError

OLD, NEW = "old-secret-0123456789", "new-secret-0123456789"
PLAIN = ScriptedReply(content=["Sure."])


async def _turn(url: str, secret: str, call_id: str) -> int:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/chat/completions", json=body,
                             headers={"X-Call-Id": call_id, "Authorization": f"Bearer {secret}"}) as r:
            await r.read()
            return r.status


async def test_a_call_begun_under_the_old_secret_continues_under_the_new(stack: Any) -> None:
    keys = {"keys": [{"name": "ims", "key": [OLD, NEW], "scopes": ["relay"]}]}
    s = await stack([PLAIN] * 4, auth=keys)
    assert await _turn(s.url, OLD, "rot-1") == 200
    assert await _turn(s.url, NEW, "rot-1") == 200  # the same call, the same key name: no 403
    record = await s.registry.find("rot-1")
    assert record is not None and record.owner == "ims"


async def test_a_removed_secret_is_refused(stack: Any) -> None:
    s = await stack([PLAIN] * 2, auth={"keys": [{"name": "ims", "key": [NEW], "scopes": ["relay"]}]})
    assert await _turn(s.url, OLD, "rot-2") == 401
    assert await _turn(s.url, NEW, "rot-2") == 200


def test_secrets_are_checked() -> None:
    with pytest.raises(ConfigError, match="same secret"):
        parse_config({"auth": {"keys": [{"name": "a", "key": [OLD, OLD], "scopes": ["relay"]}]}})
    with pytest.raises(ConfigError, match=r"auth.keys\[0\].key"):
        parse_config({"auth": {"keys": [{"name": "a", "key": ["short"], "scopes": ["relay"]}]}})
    with pytest.raises(ConfigError, match="at least one secret"):
        parse_config({"auth": {"keys": [{"name": "a", "key": [], "scopes": ["relay"]}]}})
