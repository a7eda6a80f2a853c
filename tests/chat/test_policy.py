"""The server's policy, decided in one place: which system prompt, how long a reply."""

from __future__ import annotations

from xiaoq.chat import policy

from tests.api.helpers import make_settings


def test_system_prompt_none_is_the_default_and_empty_is_none() -> None:
    s = make_settings(system_prompt="DEFAULT")
    assert policy.system_prompt(s, None) == "DEFAULT"
    assert policy.system_prompt(s, "") == "" and policy.system_prompt(s, "mine") == "mine"
    user = [{"role": "user", "content": "hi"}]
    assert policy.with_default_system(s, user) == [{"role": "system", "content": "DEFAULT"}, *user]
    own = [{"role": "system", "content": ""}, *user]
    assert policy.with_default_system(s, own) == own


def test_max_tokens_capped_defaulted_and_shrunk_to_the_room() -> None:
    s = make_settings(default_max_tokens=512, max_tokens=100)
    assert policy.default_max_tokens(s) == 100
    assert policy.max_tokens(s, 5000) == 100 and policy.max_tokens(s, 7) == 7
    assert policy.max_tokens(s, None) == 100 and policy.max_tokens(s, None, room=30) == 30
    assert policy.max_tokens(s, None, room=0) == 100  # no room: the engine reports context_length_exceeded
    assert policy.max_tokens(s, 500, room=30) == 100  # an explicit ask is never shrunk silently
