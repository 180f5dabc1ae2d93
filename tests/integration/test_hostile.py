"""Hostile images (issue 12, part 2): every case of the corpus in hostile.py is loaded with
`rootbox load` (and run with `rootbox run --rm`, which unpacks its layers) into ONE store, in
turn. Each must give a clear error naming the bad thing (or be neutralised), write nothing
outside the store, leave nothing half-written in it, and leave it usable: a good image
loaded before the corpus still runs after every case."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import pytest

import hostile
import imagebuild as ib
from util import run

GOOD = "good/busybox:1"


class Corpus:
    """The shared store, its canary and the good image."""

    def __init__(self, bins, root: pathlib.Path, xdg):
        self.bins = bins
        self.root = root
        self.store = root / "store"
        self.canary = root / "canary"
        self.canary.mkdir()
        (self.canary / "keep").write_text("untouched\n")
        self.xdg = xdg

    def rb(self, *args, env=None, **kw):
        e = {"XDG_RUNTIME_DIR": self.xdg, "ROOTBOX_ROOT": str(self.store)}
        e.update(env or {})
        return run([self.bins.rootbox, *map(str, args)], env=e, **kw)


@pytest.fixture(scope="module")
def corpus(bins, tmp_path_factory):
    root = pathlib.Path(tempfile.mkdtemp(prefix="rbhostile-", dir="/tmp"))
    xdg = tempfile.mkdtemp(prefix="rbxdg-", dir="/tmp")
    os.chmod(xdg, 0o700)
    c = Corpus(bins, root, xdg)
    ib.write_docker_archive(root / "good.tar", ib.busybox_image(), [GOOD])
    r = c.rb("load", "-i", root / "good.tar")
    assert r.rc == 0, r
    r = c.rb("run", "--rm", GOOD, "echo", "ok")
    assert r.rc == 0 and r.out == "ok\n", r
    yield c
    shutil.rmtree(c.store / "containers", ignore_errors=True)
    c.rb("image", "prune", "-a")
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(xdg, ignore_errors=True)


def _tree(d: pathlib.Path):
    return sorted((str(p.relative_to(d)), p.lstat().st_mode, p.lstat().st_size) for p in d.rglob("*"))


@pytest.mark.parametrize("name", hostile.NAMES)
def test_hostile_image(corpus, tmp_path, name):
    case = hostile.BY_NAME[name]
    canary_before = _tree(corpus.canary)
    passwd = pathlib.Path("/etc/passwd").read_bytes()
    work = tmp_path / "case"
    work.mkdir()
    archive = case.build(work, str(corpus.canary))
    env = case.env or {}
    if corpus.rb("image", "inspect", hostile.REF).rc == 0:  # a failed case before this one
        corpus.rb("rmi", "-f", hostile.REF)
    r = corpus.rb("load", "-i", archive, env=env, timeout=60)
    if case.load_error is not None:
        assert r.rc != 0, f"{name}: hostile archive loaded:{r}"
        assert r.err.startswith("rootbox: ") and case.load_error in r.err, r
        assert "panicked" not in r.err, r
        # Nothing of it was added to the store's index.
        assert corpus.rb("image", "inspect", hostile.REF).rc != 0
    else:
        assert r.rc == 0, f"{name}: load failed:{r}"
        diff_ids = json.loads(corpus.rb("image", "inspect", hostile.REF).out)[0]["RootFS"]["Layers"]
        r = corpus.rb("run", "--rm", hostile.REF, "true", env=env, timeout=60)
        if case.run_error is not None:
            assert r.rc == 125, f"{name}: hostile image ran:{r}"
            assert case.run_error in r.err, r
            assert "panicked" not in r.err, r
            # The bad layer is not in the cache, not even half-written.
            hexes = {d[7:] for d in diff_ids[1:]}
            cached = {p.name for p in corpus.store.glob("layers/*/*") if p.is_dir()}
            assert not hexes & cached, f"a bad layer was kept: {hexes & cached}"
        else:
            assert r.rc == 0, f"{name}: a neutralised case must run:{r}"
        assert corpus.rb("rmi", hostile.REF).rc == 0
    # Nothing outside the store changed, nothing is left half-written inside it.
    assert _tree(corpus.canary) == canary_before, f"{name} wrote to the canary directory"
    assert pathlib.Path("/etc/passwd").read_bytes() == passwd
    assert [p for p in tmp_path.rglob("pwned*")] == []
    assert [p for p in corpus.root.glob("pwned*")] == []
    assert list(corpus.store.glob("layers/*/.tmp-*")) == []
    assert list((corpus.store / "tmp").iterdir()) == []
    assert list((corpus.store / "containers").iterdir()) == []
    # The store stays usable.
    r = corpus.rb("run", "--rm", GOOD, "cat", "/etc/layer2")
    assert r.rc == 0 and r.out == "layer 2\n", f"after {name}:{r}"


def test_huge_env_count_is_clear(corpus, tmp_path):
    """A config with 100 000 environment variables (2 MB, under the JSON limit) loads; running
    it either works or fails with the kernel's reason (E2BIG), never a crash."""
    env = [f"V{i}=x" for i in range(100_000)]
    img = hostile.Oci([hostile.base_layer()], config_edit=lambda c: c["config"]["Env"].extend(env))
    archive = img.write(tmp_path / "env.tar")
    r = corpus.rb("load", "-i", archive, timeout=60)
    assert r.rc == 0, r
    # (`env`, not a shell: busybox sh takes minutes to import 100 000 variables.)
    r = corpus.rb("run", "--rm", hostile.REF, "env", timeout=60)
    if r.rc == 0:
        assert len(r.lines) >= 100_000 and "V99999=x" in r.lines, r.out[-200:]
    else:
        assert "Argument list too long" in r.err or "E2BIG" in r.err, r
        assert "panicked" not in r.err, r
    assert corpus.rb("rmi", hostile.REF).rc == 0
    assert list((corpus.store / "containers").iterdir()) == []


def test_bad_limit_values_are_named(corpus, tmp_path):
    img = hostile.Oci([hostile.base_layer(), ib.Layer().file("limit-test", b"unique").bytes()])
    r = corpus.rb("load", "-i", img.write(tmp_path / "x.tar"))
    assert r.rc == 0, r
    for var, value in (("ROOTBOX_MAX_LAYER_SIZE", "lots"), ("ROOTBOX_MAX_LAYER_ENTRIES", "-1")):
        r = corpus.rb("run", "--rm", hostile.REF, "true", env={var: value})
        assert r.rc == 125 and f"{var}={value!r}".replace("'", '"') in r.err, r
    assert corpus.rb("run", "--rm", hostile.REF, "true").rc == 0
    assert corpus.rb("rmi", hostile.REF).rc == 0
