"""The page may play audio from blob: URLs (spoken answers fetched with the API key) and nothing
else may come from blob:, least of all scripts."""

from __future__ import annotations

from xiaoq.api.web import CONTENT_SECURITY_POLICY


def test_blob_is_allowed_for_media_only() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";") if d.strip())
    assert directives["media-src"] == "'self' blob:"
    assert [name for name, value in directives.items() if "blob:" in value] == ["media-src"]
    assert directives["script-src"] == "'self'"
