"""`rootbox info`: what this host offers rootless containers."""

import json
import os


def test_info_text(rootbox):
    r = rootbox("info")
    assert r.rc == 0, r
    low = r.out.lower()
    assert "kernel" in low and os.uname().release in r.out, r
    assert "cgroup" in low, r
    assert "mapping" in low, f"no uid mapping mode:{r}"
    assert any(w in low for w in ("single", "subid", "subordinate", "identity")), f"no uid mapping mode:{r}"


def test_info_json(rootbox):
    r = rootbox("info", "--json")
    assert r.rc == 0, r
    info = json.loads(r.out)
    assert isinstance(info, dict) and info, r
    assert os.uname().release in r.out, r


def test_help_and_version(rootbox, bins):
    from util import run

    for b in (bins.rootbox, bins.runtime):
        r = run([b, "--help"])
        assert r.rc == 0 and "usage" in r.out.lower(), r
        r = run([b, "--version"])
        assert r.rc == 0 and r.out.strip(), r
